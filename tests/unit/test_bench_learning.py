"""The learning benchmark: statistics, arms, the harness and its command."""

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.bench._stats import Estimate, t95
from services.bench.learning import (
    Shift,
    fixed_pipeline_gap,
    reclassed,
    recovered_after,
    run_arm,
    run_learning_bench,
    scenario_spec,
    shifted,
    warm_graph,
)
from services.bench.report import interval, learning_report
from services.cli.bench import bench
from services.policy import PAPER_REWARD, PolicyGraph
from services.policy.arms import ARMS, arm_named
from services.sim.loader import load_scenario
from services.sim.oracle import Oracle

SCENARIO = load_scenario("security-advisories")
OTHER = load_scenario("distributed-systems")


def test_estimate_uses_students_t() -> None:
    estimate = Estimate.of([1.0, 2.0, 3.0, 4.0, 5.0])
    half = t95(4) * (2.5 / 5) ** 0.5
    assert estimate.mean == 3.0
    assert estimate.ci_low == pytest.approx(3.0 - half)
    assert estimate.ci_high == pytest.approx(3.0 + half)
    assert Estimate.of([0.4]).as_dict() == {"mean": 0.4, "ci_low": 0.4, "ci_high": 0.4}
    assert t95(100) == 1.96


def test_arm_names_compose_switches() -> None:
    arm = arm_named("paper+optimistic_prior+node_visit_once")
    assert arm.selection.untried_score is not None
    assert arm.reward.node_visit_once
    assert arm.selection.c_min == ARMS["paper"].selection.c_min
    warm = arm_named("paper+next_in_plan+warm_prior")
    assert warm.cold_twin == "paper+next_in_plan"
    with pytest.raises(KeyError, match="unknown arm"):
        arm_named("paper+no_such_switch")


def test_fixed_arm_never_adapts() -> None:
    oracle = Oracle(SCENARIO, PAPER_REWARD)
    run, graph = run_arm(SCENARIO, ARMS["fixed"], 0, 2, oracle)
    # The same pipeline every epoch: the same expected regret, no skips.
    assert run.epochs[0].regret == pytest.approx(run.epochs[1].regret, abs=1e-12)
    assert run.epochs[0].skip_share == run.epochs[1].skip_share == 0.0
    # It learns (the graph fills) but never acts on it.
    assert graph.total_node_visits > 0


def test_fixed_pipeline_gap_is_quality_of_oracle_minus_fixed() -> None:
    gaps = fixed_pipeline_gap(Oracle(SCENARIO, PAPER_REWARD), SCENARIO)
    # C6: the best reward path drops cells and loses quality the pipeline has.
    assert gaps["C6"] < 0 < gaps["C2"]


def test_reclassed_warm_start_offers_every_class_the_source() -> None:
    arm = arm_named("paper+class_fold+warm_prior")
    oracle = Oracle(OTHER, PAPER_REWARD)
    _, source = run_arm(OTHER, arm_named("paper+class_fold"), 0, 1, oracle)
    assert all("task_class=D" in s for s in source.signatures)
    moved = reclassed(source, "C3")
    assert all(s.endswith("|task_class=C3") for s in moved.signatures)
    assert moved.total_node_visits == source.total_node_visits
    start = warm_graph(source, arm, ["C1", "C3"])
    # Halved counts, offered to both classes.
    assert start.total_node_visits == pytest.approx(source.total_node_visits, rel=0.05)


def test_warm_graph_scales_counts() -> None:
    source = PolicyGraph()
    sig = "v1|straightforward|1000000|c1.u9.r5.e1"
    source.backup(source.batch([(sig, "a", False)] * 10, [0.5] * 10, [100] * 10))
    assert warm_graph(source, ARMS["warm"], []).edge(sig, "a").visits == 10
    assert warm_graph(source, ARMS["agensbus-warm"], []).edge(sig, "a").visits == 5


def test_bench_reports_every_number_with_intervals() -> None:
    arms = [ARMS["fixed"], ARMS["paper"], ARMS["warm"]]
    result = run_learning_bench(
        SCENARIO, arms, seeds=2, epochs=2, source=OTHER, clock=time.perf_counter
    )
    data = json.loads(json.dumps(result.as_dict()))
    assert set(data["arms"]) == {"fixed", "paper", "warm"}
    for arm in data["arms"].values():
        for key in ("cumulative_regret", "plateau_quality", "tokens_per_trajectory"):
            assert set(arm[key]) == {"mean", "ci_low", "ci_high"}
            assert arm[key]["ci_low"] <= arm[key]["mean"] <= arm[key]["ci_high"]
        assert set(arm["per_class"]) == set(SCENARIO.classes)
        assert len(arm["per_epoch"]["regret"]) == 2
    assert [(w["warm"], w["cold"]) for w in data["warm_start"]] == [("warm", "paper")]
    assert data["arms"]["fixed"]["cumulative_regret"]["ci_low"] == pytest.approx(
        data["arms"]["fixed"]["cumulative_regret"]["ci_high"]
    )
    # Warm and cold meet the same tasks: their runs differ only by where they start.
    assert len(data["runs"]["warm"]) == len(data["runs"]["paper"]) == 2
    assert "regret_at_most_0.6x_paper" not in data["targets"]


def test_command_writes_json_and_plots(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench,
        ["learning", "--seeds", "2", "--epochs", "1", "--arms", "fixed,paper", "--out",
         str(tmp_path), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert json.loads((tmp_path / "learning.json").read_text()) == data
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "per_class.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--through-kafka", "--arms", "paper,warm"], "takes no warm arms"),
        (["--through-kafka", "--epochs", "2", "--shift-at", "2"], "no --shift-at"),
        (["--arms", "paper,bogus"], "unknown arm"),
        (["--scenario", "nowhere"], "unknown scenario"),
        (["--shift-to", "distributed-systems"], "--shift-to needs --shift-at"),
        (["--epochs", "4", "--shift-at", "2", "--shift-to", "nowhere"], "unknown scenario"),
        (["--epochs", "4", "--shift-at", "3", "--shift-to", "distributed-systems"], "at most 2"),
    ],
)
def test_user_errors_exit_two(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(bench, ["learning", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_shifted_world_changes_gain_and_price_only() -> None:
    after = shifted(scenario_spec("security-advisories"))
    before_class, after_class = SCENARIO.task_class("C2"), after.task_class("C2")
    strong = "solver.evidence_first@strong"
    balanced = "verifier@balanced"
    assert after_class.costs[balanced].tokens_out.mean == pytest.approx(
        2 * before_class.costs[balanced].tokens_out.mean
    )
    assert after_class.costs[strong].tokens_out.mean == before_class.costs[strong].tokens_out.mean
    slot, index = before_class.locate(strong)
    assert after_class.gains[slot, index] == pytest.approx(before_class.gains[slot, index] - 0.15)


def test_recovery_counts_trajectories_until_the_window_earns_enough() -> None:
    earned = [(0.1, 1.0)] * 5 + [(1.0, 1.0)] * 30
    assert recovered_after(earned, 20) == 5 + 18  # 18 good of 20 reach 90%
    assert recovered_after([(0.5, 1.0)] * 40, 20) is None


def test_a_shift_reports_recovery_per_seed() -> None:
    after = shifted(scenario_spec("security-advisories"))
    shift = Shift(2, after, Oracle(after, PAPER_REWARD))
    result = run_learning_bench(
        SCENARIO, [ARMS["fixed"]], seeds=2, epochs=3, source=None, shift=shift,
        clock=time.perf_counter,
    )  # fmt: skip
    recovery = result.arms["fixed"].recovery
    assert len(recovery) == 2
    assert result.as_dict()["shift_epoch"] == 2


def test_a_shift_to_another_scenario_runs_its_tasks_and_reports_its_classes(
    tmp_path: Path,
) -> None:
    args = ["learning", "--seeds", "1", "--epochs", "4", "--arms", "fixed", "--shift-at", "2"]
    args += ["--shift-to", "distributed-systems", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    epochs = data["runs"]["fixed"][0]["epochs"]
    assert set(epochs[0]["per_class"]) == set(SCENARIO.classes)
    assert set(epochs[1]["per_class"]) == set(OTHER.classes)
    assert set(data["arms"]["fixed"]["per_class"]) == set(OTHER.classes)
    assert "--shift-to distributed-systems" in (tmp_path / "report.md").read_text()


def test_warm_row_prices_a_start_at_the_cold_plateau() -> None:
    result = run_learning_bench(
        SCENARIO, [ARMS["warm"]], seeds=2, epochs=4, source=OTHER, clock=time.perf_counter
    )
    row = result.warm[0]
    expected = [
        1.0 - r.plateau_of("tokens_per_trajectory") * r.trajectories / r.total_tokens
        for r in result.runs["paper"]
    ]
    assert row.savings_at_cold_plateau.mean == pytest.approx(sum(expected) / 2)
    assert "token_savings_at_cold_plateau" in result.as_dict()["warm_start"][0]


def test_report_holds_the_tables_and_the_command() -> None:
    result = run_learning_bench(
        SCENARIO, [ARMS["fixed"], ARMS["paper"], ARMS["warm"]], seeds=2, epochs=2,
        source=OTHER, clock=time.perf_counter,
    )  # fmt: skip
    page = learning_report(result, "agensbus bench learning --seeds 2", ["curves.png"])
    assert "```\nagensbus bench learning --seeds 2\n```" in page
    paper = result.arms["paper"]
    assert (
        f"| `paper` | {interval(paper.cumulative_regret, 1)} | "
        f"{interval(paper.plateau_quality, 3)} |"
    ) in page
    c2 = " | ".join(interval(a.per_class["C2"], 3) for a in result.arms.values())
    assert f"| C2 * | {c2} |" in page  # C2 is a class where coordination matters
    assert f"| `warm` | `paper` | {interval(result.warm[0].savings, 3)} |" in page
    assert "![curves.png](curves.png)" in page
    verdict = "met" if result.targets()["warm_saves_30pct_tokens"] else "**not met**"
    assert f"- {verdict}: `warm` saves at least 30% of its cold twin's tokens" in page


def test_command_writes_a_report_that_reruns_identically(tmp_path: Path) -> None:
    args = ["learning", "--seeds", "2", "--epochs", "1", "--arms", "fixed, paper", "--out"]
    pages = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = CliRunner().invoke(bench, [*args, str(out)])
        assert result.exit_code == 0, result.output
        pages.append((out / "report.md").read_text())
    # No timing in the page: the same command on the same code writes the same page.
    assert pages[0].replace(str(tmp_path / "a"), "OUT") == pages[1].replace(
        str(tmp_path / "b"), "OUT"
    )
    assert (
        "agensbus bench learning --scenario security-advisories --seeds 2 --epochs 1 "
        f"--arms fixed,paper --out {tmp_path / 'a'}"
    ) in pages[0]
    assert "![per_class.png](per_class.png)" in pages[0]


def test_the_rare_class_scenario_counts_the_skips_of_its_fatal_verifier() -> None:
    # docs/learning.md measures the fatal-skip share on this file: keep it loadable
    rare = load_scenario(str(Path(__file__).parents[1] / "data/scenarios/rare-fatal-skip.yaml"))
    counts = {name: c.count for name, c in rare.classes.items()}
    assert [counts[name] for name in ("R1", "R2", "R3", "R4")] == [2, 3, 1, 2]
    result = run_learning_bench(
        rare, [ARMS["paper"]], seeds=1, epochs=3, source=None, clock=time.perf_counter
    )
    skips = result.arms["paper"].late_skip_share
    assert set(skips) == set(rare.classes)
    assert all(0.0 <= share <= 1.0 for cells in skips.values() for share in cells.values())
    assert any(cells.get("verifier", 0.0) > 0.0 for cells in skips.values())
