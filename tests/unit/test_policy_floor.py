"""The class floor: a class leaves its fixed pipeline only while what leaving earned keeps
it at the pipeline's quality less the tolerance, and the floor travels in the policy file."""

import json
import math
from pathlib import Path

import pytest

from schemas.records import SelectionConfig
from services.policy import PolicyGraph, backup, start_state
from services.policy.arms import arm_named
from services.policy.floor import ClassFloor, on_fixed_pipeline
from services.policy.selection import Guard
from services.policy.stats import RunningStat
from services.policy.trajectory import guard_for
from services.runtime.policy_files import load_graph, save_policy
from services.sim.engine import Engine
from services.sim.loader import load_scenario

FLOOR = SelectionConfig(baseline_tolerance=0.01, baseline_floor="class", baseline_z=0.0)


def _stream(values: list[float]) -> RunningStat:
    stat = RunningStat()
    for value in values:
        stat.add(value)
    return stat


def test_a_class_runs_its_pipeline_before_anything_else() -> None:
    assert ClassFloor().slack(0.01, 1.645) == -math.inf


def test_the_slack_is_the_quality_earned_off_the_pipeline_plus_the_tolerance() -> None:
    floor = ClassFloor(_stream([0.6, 0.6]), _stream([0.7, 0.5, 0.6]))
    # deviated: 3 x (0.6 - 0.6) = 0 earned; 6 trajectories with the next one, 0.01 each
    assert floor.slack(0.01, 0.0) == pytest.approx(0.06)
    spread = math.sqrt(floor.deviated.variance * 3)
    assert floor.slack(0.01, 1.0) == pytest.approx(0.06 - spread)
    assert floor.slack(0.01, 0.0, budget=0.5) == pytest.approx(0.56)
    losing = ClassFloor(_stream([0.7, 0.7]), _stream([0.3]))
    assert not losing.open(0.01, 0.0)
    assert losing.open(0.01, 0.0, budget=0.5)


def test_floors_merge_exactly() -> None:
    values = [0.2, 0.9, 0.4, 0.7, 0.55]
    whole = ClassFloor(_stream(values), _stream(values[::-1]))
    halves = ClassFloor(_stream(values[:2]), _stream(values[:1])).merge(
        ClassFloor(_stream(values[2:]), _stream(values[1:][::-1]))
    )
    for mine, theirs in ((whole.baseline, halves.baseline), (whole.deviated, halves.deviated)):
        assert (mine.count, mine.mean, mine.m2) == pytest.approx(
            (theirs.count, theirs.mean, theirs.m2)
        )


def _learned(epochs: int, seed: int = 0) -> tuple[Engine, PolicyGraph]:
    scenario = load_scenario("security-advisories")
    arm = arm_named("agensbus")
    engine = Engine(scenario, arm.setup(scenario, seed), seed=seed, reward=arm.reward)
    engine.run(epochs)
    return engine, engine.graph


def test_the_engine_counts_each_class_on_and_off_its_pipeline() -> None:
    engine, graph = _learned(1)
    pool = engine.setup.pool
    assert set(graph.classes) == set(engine.scenario.classes)
    total = sum(f.baseline.count + f.deviated.count for f in graph.classes.values())
    per_epoch = sum(c.count for c in engine.scenario.classes.values())
    assert total == per_epoch
    fresh = PolicyGraph()
    record = engine.trajectory(2, next(iter(engine.scenario.classes.values())), "extra")
    backup(fresh, [(record.state, record.reward)], floor=(pool, [0.5]))
    floor = fresh.classes[record.task_class]
    on_pipeline = on_fixed_pipeline(record.state, pool)
    assert (floor.baseline.count, floor.deviated.count) == ((1, 0) if on_pipeline else (0, 1))


def test_a_closed_floor_holds_the_class_to_its_pipeline() -> None:
    _, graph = _learned(1)
    name = next(iter(graph.classes))
    graph.classes[name] = ClassFloor(_stream([0.8] * 3), _stream([0.2] * 3))
    engine, _ = _learned(0)
    task = engine.scenario.classes[name]
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="g",
        features=task.features,
        setup=engine.setup,
        task_class=name,
    )
    assert guard_for(state, graph, FLOOR) is Guard.BASELINE
    graph.classes[name] = ClassFloor(_stream([0.5] * 3), _stream([0.6] * 3))
    assert guard_for(state, graph, FLOOR) is Guard.FREE
    protected = FLOOR.model_copy(update={"protected_classes": [name]})
    assert guard_for(state, graph, protected) is Guard.BASELINE
    assert guard_for(state, graph, SelectionConfig()) is None


def test_the_floor_round_trips_through_a_policy_file(tmp_path: Path) -> None:
    _, graph = _learned(1)
    path = tmp_path / "policy.json"
    save_policy(path, graph.to_document())
    document, loaded = load_graph(path)
    assert document.format == "agensbus.policy/3"
    assert loaded.to_document() == graph.to_document()
    assert loaded.classes == graph.classes


def test_a_version_1_file_reads_as_version_3_without_classes(tmp_path: Path) -> None:
    _, graph = _learned(1)
    data = json.loads(graph.to_document().model_dump_json())
    data["format"] = "agensbus.policy/1"
    del data["classes"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    document, loaded = load_graph(path)
    assert document.format == "agensbus.policy/3"
    assert document.classes == {}
    assert loaded.to_nodes() == graph.to_nodes()
    data["classes"] = {}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"agensbus\.policy/1 document has no classes"):
        load_graph(path)
