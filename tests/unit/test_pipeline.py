"""Pipeline files: the shipped paper pipeline is the paper's pool, every problem of a file is
one line naming it, defaults lead their cell, protected cells are never offered a skip (in
every arm, simulated end to end), and scenarios name the pipeline they simulate."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from schemas.records import Budget, Regime, Role, TaskFeatures
from services.cli import cli
from services.learner.metrics import LearnerMetrics
from services.pipeline import PipelineError, load_pipeline, parse_pipeline, shipped_pipelines
from services.policy import candidate_actions, fixed_pipeline, paper_pool, start_state
from services.policy.arms import ARMS
from services.policy.trajectory import PolicySetup
from services.sim import Engine, ScenarioError, load_scenario, parse_scenario

REPORTS = Path(__file__).resolve().parents[2] / "services" / "sim" / "scenarios"


def three_cells() -> dict[str, Any]:
    """A pipeline of one's own: a retriever, a two-model drafter, a checker."""
    return {
        "name": "triage",
        "description": "three cells of a team's own",
        "cells": [
            {"name": "lookup", "role": "memory"},
            {
                "name": "drafter",
                "role": "solver",
                "variants": [
                    {"protocol": "concise", "model": "small"},
                    {"protocol": "concise", "model": "large"},
                ],
            },
            {"name": "checker", "role": "verifier"},
            {"name": "closer", "role": "evaluator"},
        ],
        "plan": ["lookup", "drafter", "checker", "closer"],
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(yaml.safe_dump(data), "mine.yaml")
    lines = str(caught.value).splitlines()
    assert all(line.startswith("mine.yaml: ") for line in lines)
    return [line.removeprefix("mine.yaml: ") for line in lines]


def test_the_shipped_paper_pipeline_is_the_papers_pool() -> None:
    assert "paper" in shipped_pipelines()
    paper = load_pipeline("paper")
    assert paper.pool == paper_pool()
    assert paper.protected == frozenset()
    assert paper.budget == Budget()
    assert paper.classes == {}
    assert paper.baseline["solver"] == "solver.chain_of_thought@balanced"


def test_a_pipeline_of_ones_own() -> None:
    data = three_cells()
    data["protected"] = ["checker"]
    data["budget"] = {"max_steps": 8, "max_tokens": 9000}
    data["classes"] = [{"name": "urgent", "features": {"verification_need": 0.9}}]
    found = parse_pipeline(yaml.safe_dump(data), "mine.yaml")
    assert found.pool.plan_for(Regime.HIGH_RISK) == ("lookup", "drafter", "checker", "closer")
    assert found.pool.cells["drafter"].role is Role.SOLVER
    assert found.protected == {"checker"}
    assert found.budget == Budget(max_steps=8, max_tokens=9000)
    assert found.classes["urgent"].regime is Regime.HIGH_RISK


def test_an_explicit_default_leads_its_cell() -> None:
    data = three_cells()
    data["cells"][1]["default"] = "drafter.concise@large"
    found = parse_pipeline(yaml.safe_dump(data), "mine.yaml")
    variants = [v.action for v in found.pool.cells["drafter"].variants]
    assert variants == ["drafter.concise@large", "drafter.concise@small"]
    assert fixed_pipeline(found.pool, Regime.STRAIGHTFORWARD)[1] == "drafter.concise@large"


def test_every_problem_is_one_line_naming_the_file() -> None:
    data = three_cells()
    data["colour"] = "blue"
    data["cells"][0]["role"] = "oracle"
    data["budget"] = {"max_steps": 0}
    assert [p.split(":")[0] for p in problems_of(data)] == [
        "cells.0.role",
        "budget.max_steps",
        "colour",
    ]


def test_cross_references_are_checked_together() -> None:
    data = three_cells()
    data["plan"] = ["lookup", "drafter", "critic", "closer"]
    data["protected"] = ["gatekeeper"]
    data["cells"][1]["default"] = "drafter@huge"
    data["cells"].append({"name": "lookup", "role": "memory"})
    data["classes"] = [{"name": "K", "features": {}}, {"name": "K", "features": {}}]
    assert problems_of(data) == [
        "cells.1.default: 'drafter@huge' is not a variant of drafter (drafter.concise@small, "
        "drafter.concise@large)",
        "cells.4.name: cell 'lookup' is defined twice",
        "protected.0: no cell 'gatekeeper' in the pipeline (lookup, drafter, checker, closer)",
        "plan: plan for straightforward names unknown cells ['critic']",
        "classes.1.name: class 'K' is defined twice",
    ]


def test_plans_per_regime_need_a_fallback() -> None:
    data = three_cells()
    data["plans"] = {"ambiguous": data.pop("plan")}
    (problem,) = problems_of(data)
    assert problem.startswith("plans: no plan for straightforward, contradictory, evidence_heavy")


def test_yaml_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"^mine\.yaml: line 1, column 17: not YAML: "):
        parse_pipeline("cells: [unclosed", "mine.yaml")
    with pytest.raises(PipelineError, match=r"pipeline file .*absent\.yaml does not exist"):
        load_pipeline(tmp_path / "absent.yaml")
    with pytest.raises(PipelineError, match="unknown pipeline 'papers'; shipped pipelines: paper"):
        load_pipeline("papers")


def test_protected_cells_are_never_offered_a_skip() -> None:
    data = three_cells()
    data["protected"] = ["lookup", "checker"]
    pool = parse_pipeline(yaml.safe_dump(data), "mine.yaml").pool
    state = start_state(
        task_id="t", trajectory_id="t", goal="g", features=TaskFeatures(), setup=PolicySetup(pool)
    )
    offered = candidate_actions(state, pool)
    assert "skip:drafter" in offered
    assert "skip:lookup" not in offered
    assert candidate_actions(state, pool, next_only=True) == ["lookup"]


def write_world(directory: Path, pipeline: dict[str, Any], **extra: Any) -> Path:
    """A pipeline file and a scenario beside it that names it by a relative path."""
    (directory / "pipelines").mkdir(exist_ok=True)
    (directory / "pipelines" / "triage.yaml").write_text(yaml.safe_dump(pipeline))
    scenario = {
        "name": "triage-world",
        "description": "a simulated world over the triage pipeline",
        "pipeline": "pipelines/triage.yaml",
        "defaults": {
            "lookup": {"tokens_in": 50, "tokens_out": 400, "failure": 0.05},
            "drafter": {"tokens_in": 600, "tokens_out": 200, "failure": 0.05},
            "drafter@large": {"gain": 0.05, "tokens_out": 500},
            "checker": {"tokens_in": 500, "tokens_out": 80, "failure": 0.05},
            "closer": {"tokens_in": 300, "tokens_out": 40},
        },
        "absent": {"drafter": -1.0, "checker": -0.05, "lookup": -0.2},
        "evidence": {"memory": 2},
        "judges": [{"name": "j", "noise_sd": 0.05}],
        "classes": [
            {"name": "urgent", "description": "u", "count": 4, "base_quality": 0.6},
            {
                "name": "routine",
                "description": "r",
                "features": {"evidence_availability": 0.9, "verification_need": 0.7},
                "count": 4,
                "base_quality": 0.7,
            },
        ],
        **extra,
    }
    path = directory / "world.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def triage_pipeline(protected: list[str]) -> dict[str, Any]:
    data = three_cells()
    data["protected"] = protected
    data["classes"] = [{"name": "urgent", "features": {"verification_need": 0.9}}]
    return data


@pytest.mark.parametrize("arm", [a for a in ARMS.values() if a.warm_weight is None])
def test_no_arm_ever_skips_a_protected_cell(tmp_path: Path, arm: Any) -> None:
    scenario = load_scenario(write_world(tmp_path, triage_pipeline(["lookup", "checker"])))
    engine = Engine(scenario, arm.setup(scenario, 0), seed=0, reward=arm.reward)
    skipped: set[str] = set()
    for epoch in range(1, 7):
        skipped |= {cell for record in engine.epoch(epoch) for cell in record.state.skipped}
    assert not skipped & {"lookup", "checker"}
    if arm.allow_skip and arm.selection.mode != "fixed":
        # Not vacuous: the same arm skips an unprotected cell when it may.
        free = load_scenario(write_world(tmp_path, triage_pipeline([])))
        engine = Engine(free, arm.setup(free, 0), seed=0, reward=arm.reward)
        free_skips = {c for e in range(1, 7) for r in engine.epoch(e) for c in r.state.skipped}
        assert free_skips & {"lookup", "checker"}


def test_a_scenario_takes_its_pipelines_classes_and_budget(tmp_path: Path) -> None:
    data = triage_pipeline([])
    data["budget"] = {"max_steps": 3}
    scenario = load_scenario(write_world(tmp_path, data))
    assert scenario.pipeline.source == str(tmp_path / "pipelines" / "triage.yaml")
    assert scenario.classes["urgent"].regime is Regime.HIGH_RISK
    assert scenario.classes["routine"].regime is Regime.EVIDENCE_HEAVY
    engine = Engine(scenario, ARMS["paper"].setup(scenario, 0))
    assert all(len(r.state.invoked) + len(r.state.skipped) <= 3 for r in engine.epoch(1))


def test_a_scenario_may_not_give_a_pipeline_class_other_features(tmp_path: Path) -> None:
    path = write_world(tmp_path, triage_pipeline([]))
    data = yaml.safe_load(path.read_text())
    data["classes"][0]["features"] = {"ambiguity_level": 0.9}
    data["classes"][1].pop("features")
    lines = problems_in_scenario(data, path)
    assert lines == [
        f"{path}: classes.0.features: pipeline triage gives class 'urgent' other features; "
        "leave them out here",
        f"{path}: classes.1.features: pipeline triage has no class 'routine'; give its "
        "features here",
    ]


def problems_in_scenario(data: dict[str, Any], path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(yaml.safe_dump(data), str(path))
    return str(caught.value).splitlines()


def test_a_scenario_reports_its_pipelines_problems(tmp_path: Path) -> None:
    path = write_world(tmp_path, triage_pipeline(["nobody"]))
    pipeline_file = tmp_path / "pipelines" / "triage.yaml"
    assert problems_in_scenario(yaml.safe_load(path.read_text()), path) == [
        f"{pipeline_file}: protected.0: no cell 'nobody' in the pipeline (lookup, drafter, "
        "checker, closer)"
    ]
    data = yaml.safe_load(path.read_text())
    data["pipeline"] = "elsewhere.yaml"
    assert problems_in_scenario(data, path) == [
        f"{path}: pipeline: pipeline file {tmp_path / 'elsewhere.yaml'} does not exist"
    ]


def test_the_shipped_scenarios_simulate_the_shipped_pipeline() -> None:
    for name in ("security-advisories", "distributed-systems"):
        scenario = load_scenario(name)
        assert scenario.pipeline.source == "paper"
        assert scenario.pool == paper_pool()
        assert yaml.safe_load((REPORTS / f"{name}.yaml").read_text())["pipeline"] == "paper"


# --- the commands ---------------------------------------------------------------------------


def test_pipeline_validate_lists_every_problem_and_exits_two(tmp_path: Path) -> None:
    data = three_cells()
    data["protected"] = ["gatekeeper"]
    data["colour"] = "blue"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["pipeline", "validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}: colour: Extra inputs are not permitted" in result.output
    assert "Traceback" not in result.output


def test_pipeline_validate_shows_a_valid_file(tmp_path: Path) -> None:
    data = triage_pipeline(["checker"])
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["pipeline", "validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert [c["cell"] for c in shown["cells"] if c["protected"]] == ["checker"]
    assert {c["cell"]: c["default"] for c in shown["cells"]}["drafter"] == "drafter.concise@small"
    assert shown["classes"] == ["urgent"]


def test_task_explain_reads_a_pipeline_and_its_classes(tmp_path: Path) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(triage_pipeline(["checker"])))
    args = ["task", "explain", "--pipeline", str(path), "--task-class", "urgent", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["regime"] == "high_risk"
    assert shown["protected"] == ["checker"]
    assert shown["fixed_pipeline"] == ["lookup", "drafter.concise@small", "checker", "closer"]
    assert "skip:checker" not in shown["candidates"] and "skip:lookup" in shown["candidates"]
    unknown = CliRunner().invoke(cli, [*args[:4], "--task-class", "other"])
    assert unknown.exit_code == 2
    assert "its classes: urgent" in unknown.output


@pytest.mark.parametrize("command", ["router", "worker", "judge", "learner"])
def test_a_service_with_a_bad_pipeline_stops_with_its_lines(tmp_path: Path, command: str) -> None:
    data = three_cells()
    data["protected"] = ["gatekeeper"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    # The bootstrap is never dialled: the pipeline is read before anything connects.
    args = [command, "--pipeline", str(path), "--kafka-bootstrap", "127.0.0.1:9"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"{path}: protected.0: no cell 'gatekeeper'" in result.output
    assert "Traceback" not in result.output


def test_a_simulated_worker_refuses_a_pipeline_its_world_does_not_simulate(
    tmp_path: Path,
) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(three_cells()))
    args = ["worker", "--pipeline", str(path), "--kafka-bootstrap", "127.0.0.1:9"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "scenario security-advisories simulates the pipeline paper" in result.output


def test_the_learner_starts_the_reward_series_of_the_pipelines_classes() -> None:
    registry = CollectorRegistry()
    found = parse_pipeline(yaml.safe_dump(triage_pipeline([])), "mine.yaml")
    LearnerMetrics(registry, found.classes.values())
    count = "agensbus_learner_reward_count"
    assert registry.get_sample_value(count, {"task_class": "urgent", "regime": "high_risk"}) == 0
    assert registry.get_sample_value(count, {"task_class": "none", "regime": "ambiguous"}) == 0
    assert registry.get_sample_value(count, {"task_class": "urgent", "regime": "ambiguous"}) is None
