"""The in-process engine: fixed and paper arms, determinism, warm start from a file."""

from pathlib import Path

import pytest

from schemas.events import Termination
from schemas.records import StepStatus
from services.policy import PolicyGraph, fixed_pipeline
from services.policy.arms import policy_setup
from services.runtime.policy_files import load_graph, save_policy
from services.sim import Engine, TrajectoryRecord, load_scenario


def run(policy: str, epochs: int, seed: int = 0) -> tuple[list[TrajectoryRecord], Engine]:
    scenario = load_scenario("security-advisories")
    engine = Engine(scenario, policy_setup(scenario, policy), seed=seed)  # type: ignore[arg-type]
    records: list[TrajectoryRecord] = []
    engine.run(epochs, on_trajectory=records.append)
    return records, engine


def test_fixed_arm_runs_exactly_the_fixed_pipeline() -> None:
    records, engine = run("fixed", 2)
    assert len(records) == 120
    pool = engine.scenario.pool
    for record in records:
        actions = [e.action for e in record.state.visited]
        expected = list(fixed_pipeline(pool, record.state.regime))
        assert record.skips == 0
        if record.termination is Termination.EVALUATOR_DONE:
            assert actions == expected
        else:
            # Only a solver that failed every attempt cuts the pipeline short.
            assert actions == expected[: len(actions)]
            assert record.state.visited[-1].status is StepStatus.FAILED


def test_fixed_arm_quality_is_the_class_base_when_nothing_fails() -> None:
    records, engine = run("fixed", 1)
    clean = [r for r in records if r.state.failures == 0]
    assert clean
    for record in clean:
        expected = engine.scenario.classes[record.task_class].base_quality
        assert record.true_quality == pytest.approx(expected)


def test_epoch_report_aggregates_the_trajectories() -> None:
    scenario = load_scenario("security-advisories")
    engine = Engine(scenario, policy_setup(scenario, "paper"), seed=2)
    records: list[TrajectoryRecord] = []
    (report,) = engine.run(1, on_trajectory=records.append)
    assert report.trajectories == 60
    assert report.true_quality == pytest.approx(sum(r.true_quality for r in records) / 60)
    assert report.tokens_per_trajectory == pytest.approx(
        sum(r.state.tokens_used for r in records) / 60
    )
    assert report.skip_share == pytest.approx(
        sum(r.skips for r in records) / sum(r.decisions for r in records)
    )
    assert report.regret == pytest.approx(sum(r.regret for r in records) / 60)
    assert set(report.per_class) == set(scenario.classes)
    assert all(r.regret >= -1e-9 for r in records)


def test_paper_arm_learns_online_and_is_deterministic() -> None:
    records, engine = run("paper", 2, seed=5)
    again, _ = run("paper", 2, seed=5)
    assert [r.state for r in again] == [r.state for r in records]
    edges = sum(len(r.state.visited) for r in records)
    assert engine.graph.total_node_visits == edges
    # Past the rule-based prior the selector tries other actions, skips among them.
    assert any(r.skips for r in records)


def test_task_order_is_shuffled_by_seed() -> None:
    scenario = load_scenario("security-advisories")
    setup = policy_setup(scenario, "fixed")
    order = [c.name for c, _ in Engine(scenario, setup, seed=0).tasks(1)]
    assert sorted(order) == sorted(
        c.name for c in scenario.classes.values() for _ in range(c.count)
    )
    assert order != [c.name for c, _ in Engine(scenario, setup, seed=1).tasks(1)]
    assert order != [c.name for c, _ in Engine(scenario, setup, seed=0).tasks(2)]


def test_warm_start_from_a_saved_policy_continues_exactly(tmp_path: Path) -> None:
    """Two epochs in one run equal one epoch, save, load, and one more epoch."""
    scenario = load_scenario("security-advisories")
    setup = policy_setup(scenario, "paper")
    straight = Engine(scenario, setup, seed=3).run(2)

    first = Engine(scenario, setup, seed=3)
    first.run(1)
    path = tmp_path / "policy.json"
    save_policy(path, first.graph.to_document(fold=setup.fold, selection=setup.selection))
    _, graph = load_graph(path)
    saved_visits = graph.total_node_visits
    resumed = Engine(scenario, setup, seed=3, graph=graph)
    (second,) = resumed.run(1, first_epoch=2)

    assert second == straight[1]
    assert resumed.graph.total_node_visits > saved_visits
    cold = Engine(scenario, setup, seed=3, graph=PolicyGraph()).run(1, first_epoch=2)[0]
    assert cold != second
