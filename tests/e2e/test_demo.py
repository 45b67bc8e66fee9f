"""``agensbus demo``: the replay meets the engine's tasks, joins the services' events into the
engine's records, writes its report, and reproduces ``agensbus simulate`` number for number
where it should (sequential learning; the fixed arm at any concurrency)."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.demo.report import PLOTS, write_report
from services.demo.results import ArmResult, trajectory_record
from services.demo.run import DemoConfig, DemoResult, run_demo
from services.demo.tasks import epoch_submissions
from services.policy import PAPER_REWARD, trajectory_completed
from services.policy.arms import PolicyName, policy_setup
from services.runtime.settings import Settings
from services.sim.engine import Engine, EpochReport, TrajectoryRecord
from services.sim.loader import load_scenario
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario
from services.sim.world import World
from tests.e2e.support import PNG_MAGIC, small_scenario


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_scenario(tmp_path_factory.mktemp("scenario"), per_class=3)


def simulate(
    scenario: Scenario, arm: PolicyName, epochs: int, oracle: Oracle | None = None
) -> tuple[list[EpochReport], list[TrajectoryRecord]]:
    """What ``agensbus simulate --policy ARM --seed 0`` computes."""
    engine = Engine(scenario, policy_setup(scenario, arm), seed=0, oracle=oracle)
    records: list[TrajectoryRecord] = []
    return engine.run(epochs, on_trajectory=records.append), records


def as_json(reports: list[EpochReport]) -> list[dict[str, Any]]:
    # Through JSON and back, as metrics.json holds them (floats round-trip exactly).
    data: list[dict[str, Any]] = json.loads(json.dumps([dataclasses.asdict(r) for r in reports]))
    return data


def test_the_demo_submits_the_engines_tasks_in_its_order() -> None:
    scenario = load_scenario("security-advisories")
    _, records = simulate(scenario, "fixed", 1)
    events = epoch_submissions(scenario, 0, 1, tenant="acme")
    assert [e.task_id for e in events] == [r.state.task_id for r in records]
    for event, record in zip(events, records, strict=True):
        task_class = scenario.classes[record.task_class]
        assert event.task_class == task_class.name
        assert event.goal == task_class.description == record.state.handoff.goal
        assert event.features == task_class.features
        assert event.tenant == "acme"
        assert event.rollouts == 1 and event.budget is None
    assert epoch_submissions(scenario, 0, 2) != events


def test_the_services_events_make_the_engines_records() -> None:
    scenario = load_scenario("security-advisories")
    oracle = Oracle(scenario, PAPER_REWARD)
    _, records = simulate(scenario, "paper", 1, oracle)
    world = World(scenario, 0)
    rebuilt = []
    for record in records:
        state = record.state
        completed = trajectory_completed(state, record.termination, "default", 0)
        reward = record.judgement.to_event(task_id=state.task_id)
        rebuilt.append(trajectory_record(1, completed, reward, world, oracle))
    assert rebuilt == records
    assert any(r.skips for r in rebuilt), "the paper arm skips: the count must be exercised"
    assert EpochReport.of(1, rebuilt) == EpochReport.of(1, records)


def engine_result(scenario: Scenario, tmp_path: Path, epochs: int) -> DemoResult:
    """A demo result made from engine runs, to exercise the report without a broker."""
    oracle = Oracle(scenario, PAPER_REWARD)
    arms = []
    for arm in ("fixed", "paper"):
        reports, records = simulate(scenario, arm, epochs, oracle)
        n = len(records)
        walls = [1.0] * epochs
        arms.append(ArmResult(n, n, n, n, n, 2.0, walls, arm, reports, records, 0, 0))
    config = DemoConfig(scenario=scenario.name, out=tmp_path, epochs=epochs)
    return DemoResult(config, scenario, oracle, "test broker", arms, 5.0)


def test_the_report_holds_every_number(tmp_path: Path) -> None:
    scenario = load_scenario("security-advisories")
    result = engine_result(scenario, tmp_path, epochs=4)
    data = write_report(result, tmp_path)

    assert json.loads((tmp_path / "metrics.json").read_text()) == data
    assert data["settings"]["epochs"] == 4 and data["settings"]["arms"] == ["fixed", "paper"]
    for arm in result.arms:
        metrics = data["arms"][arm.arm]
        assert metrics["submitted"] == metrics["completed"] == 240
        assert [e["wall_s"] for e in metrics["epochs"]] == [1.0] * 4
        epochs = [{k: v for k, v in e.items() if k != "wall_s"} for e in metrics["epochs"]]
        assert epochs == as_json(arm.epochs)
        plateau = metrics["plateau"]
        assert plateau["epochs"] == [2, 3, 4]
        assert plateau["true_quality"] == pytest.approx(
            sum(r.true_quality for r in arm.epochs[1:]) / 3
        )
        # Per class: the mean over the plateau's trajectories of that class.
        c1 = [r for r in arm.records if r.epoch >= 2 and r.task_class == "C1"]
        assert plateau["per_class"]["C1"]["tokens_per_trajectory"] == pytest.approx(
            sum(r.state.tokens_used for r in c1) / len(c1)
        )
        assert set(plateau["per_class"]) == set(scenario.classes)
    assert set(data["oracle"]) == set(scenario.classes)

    for name in PLOTS:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Arm fixed: per epoch", "## Arm paper: per epoch", "## Per class"):
        assert heading in report
    for name in PLOTS:
        assert f"]({name})" in report
    # A row of the paper arm's table, as printed.
    first = result.arms[1].epochs[0]
    assert f"| 1 | {first.true_quality:.3f} | {first.judge_score:.3f} |" in report


def test_bad_arms_are_a_usage_error() -> None:
    outcome = CliRunner().invoke(cli, ["demo", "--arms", "fixed,clever"])
    assert outcome.exit_code == 2
    assert "--arms: unknown arm 'clever'" in outcome.output


def test_sequential_replay_reproduces_simulate(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    """With one task in flight and a snapshot after every backup, each task is routed with
    the policy that learned from all the tasks before it, as in the in-process engine."""
    out = tmp_path / "report"
    arguments = ["demo", "--scenario", str(scenario_file), "--epochs", "2", "--seed", "0"]
    arguments += ["--arms", "paper,fixed", "--concurrency", "1", "--json", "--out", str(out)]
    outcome = CliRunner().invoke(cli, [*arguments, "--kafka-bootstrap", kafka_bootstrap])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.stdout)
    assert data == json.loads((out / "metrics.json").read_text())
    scenario = load_scenario(scenario_file)
    expected = {arm: simulate(scenario, arm, 2)[0] for arm in ("paper", "fixed")}
    for arm, reports in expected.items():
        epochs = data["arms"][arm]["epochs"]
        assert [{k: v for k, v in e.items() if k != "wall_s"} for e in epochs] == as_json(reports)
        assert data["arms"][arm]["submitted"] == data["arms"][arm]["completed"] == 48
        assert data["arms"][arm]["backed_up"] == 48
    # The learned arm chose differently from the fixed one, so the comparison above tested
    # that every task saw the policy learned so far.
    assert expected["paper"] != expected["fixed"]
    assert (out / "report.md").is_file() and (out / "logs" / "paper" / "router.log").is_file()


def test_the_fixed_arm_matches_simulate_at_any_concurrency(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    scenario = load_scenario(scenario_file)
    config = DemoConfig(
        scenario=str(scenario_file),
        out=tmp_path,
        epochs=2,
        arms=("fixed",),
        concurrency=16,
        settings=Settings(kafka_bootstrap=kafka_bootstrap),
    )
    (arm,) = run_demo(config, scenario).arms
    reports, _ = simulate(scenario, "fixed", 2)
    assert arm.epochs == reports
