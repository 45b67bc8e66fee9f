"""The class floor's action veto: a class stops being offered a deviating action once its
trajectories that took it are bounded below the pipeline's quality, keeps the actions
that are not, merges exactly, and travels in the policy file (agensbus.policy/3)."""

import json
from pathlib import Path

import pytest

from schemas.records import SelectionConfig, TrajectoryState
from services.policy import PolicyGraph, start_state
from services.policy.arms import arm_named
from services.policy.floor import ClassFloor, Vetoes, record_classes, warned
from services.policy.ope import LoggedTrajectory, TargetPolicy
from services.policy.stats import RunningStat
from services.policy.trajectory import PolicySetup, offered
from services.runtime.policy_files import load_graph, save_policy
from services.sim.engine import Engine
from services.sim.loader import load_scenario

Z = 1.645
NOISE = 0.02**2
FATAL, SAFE, TRY = "skip:verifier", "skip:web_search_secondary", "skip:planner"


def _stream(values: list[float]) -> RunningStat:
    stat = RunningStat()
    for value in values:
        stat.add(value)
    return stat


def _floor(paths: dict[frozenset[str], list[float]]) -> ClassFloor:
    deviated = [q for values in paths.values() for q in values]
    return ClassFloor(
        _stream([0.70, 0.72, 0.71]),
        _stream(deviated),
        {key: _stream(values) for key, values in paths.items()},
    )


def test_one_fatal_trajectory_vetoes_its_action() -> None:
    floor = _floor({frozenset({FATAL}): [0.40], frozenset({SAFE}): [0.72, 0.70]})
    assert floor.vetoes(0.01, Z, NOISE) == Vetoes(frozenset({FATAL}), frozenset())


def test_an_action_as_good_as_the_pipeline_stays_open() -> None:
    floor = _floor({frozenset({SAFE}): [0.69, 0.71, 0.70]})
    assert floor.vetoes(0.01, Z, NOISE) == Vetoes()
    # a shortfall the bound cannot tell from noise does not veto either
    assert _floor({frozenset({SAFE}): [0.67]}).vetoes(0.01, Z, NOISE) == Vetoes()


def test_nothing_is_vetoed_before_the_pipeline_ran() -> None:
    floor = ClassFloor(paths={frozenset({FATAL}): _stream([0.1])})
    assert floor.vetoes(0.01, Z, NOISE) == Vetoes()


def test_an_action_bad_only_beside_a_vetoed_one_is_cleared() -> None:
    floor = _floor({frozenset({FATAL, SAFE}): [0.40], frozenset({SAFE}): [0.71]})
    assert floor.vetoes(0.01, Z, NOISE) == Vetoes(frozenset({FATAL}), frozenset())


def test_actions_seen_only_together_are_confounded_and_retried_when_affordable() -> None:
    floor = _floor({frozenset({FATAL, SAFE}): [0.40]})
    vetoes = floor.vetoes(0.01, Z, NOISE)
    assert vetoes == Vetoes(frozenset({FATAL, SAFE}), frozenset({FATAL, SAFE}))
    # earned without the budget: -0.31 + 5 x 0.01 < the 0.31 shortfall
    assert floor.retrials(vetoes, 0.01, Z) == frozenset()
    rich = _floor({frozenset({FATAL, SAFE}): [0.40], frozenset({TRY}): [0.80] * 20})
    assert rich.retrials(rich.vetoes(0.01, Z, NOISE), 0.01, Z) == frozenset({FATAL, SAFE})


def test_floors_with_paths_merge_exactly() -> None:
    values = [0.2, 0.9, 0.4, 0.7, 0.55]
    keys = [frozenset({FATAL}), frozenset({SAFE}), frozenset({FATAL, SAFE})]
    whole = ClassFloor(paths={key: _stream(values) for key in keys})
    halves = ClassFloor(paths={key: _stream(values[:2]) for key in keys[:2]}).merge(
        ClassFloor(
            paths={
                keys[0]: _stream(values[2:]),
                keys[1]: _stream(values[2:]),
                keys[2]: _stream(values),
            }
        )
    )
    assert set(halves.paths) == set(whole.paths)
    for key, stat in whole.paths.items():
        other = halves.paths[key]
        assert (stat.count, stat.mean, stat.m2) == pytest.approx(
            (other.count, other.mean, other.m2)
        )


def _engine(epochs: int) -> Engine:
    scenario = load_scenario("security-advisories")
    arm = arm_named("agensbus")
    engine = Engine(scenario, arm.setup(scenario, 0), seed=0, reward=arm.reward)
    engine.run(epochs)
    return engine


def _first_class_start() -> tuple[PolicySetup, str, TrajectoryState]:
    """The default arm's setup, the scenario's first class and a task of it at its start."""
    engine = _engine(0)
    name, task = next(iter(engine.scenario.classes.items()))
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="g",
        features=task.features,
        setup=engine.setup,
        task_class=name,
    )
    return engine.setup, name, state


def test_a_router_does_not_offer_a_vetoed_action() -> None:
    setup, name, state = _first_class_start()
    graph = PolicyGraph()
    graph.classes[name] = _floor({frozenset({FATAL}): [0.40], frozenset({SAFE}): [0.71]})
    candidates = [setup.pool.cells["verifier"].default.action, FATAL, SAFE]
    assert offered(state, graph, setup, candidates) == [candidates[0], SAFE]
    off = PolicySetup(
        pool=setup.pool, selection=setup.selection.model_copy(update={"action_veto": False})
    )
    assert offered(state, graph, off, candidates) == candidates
    assert offered(state, graph, setup, [FATAL]) == [FATAL]  # never leaves nothing


def test_trajectories_count_in_their_path() -> None:
    engine = _engine(1)
    graph = engine.graph
    for floor in graph.classes.values():
        assert sum(s.count for s in floor.paths.values()) == floor.deviated.count
    fresh: dict[str, ClassFloor] = {}
    record = engine.trajectory(2, next(iter(engine.scenario.classes.values())), "extra")
    record_classes(fresh, engine.setup.pool, [(record.state, 0.5)])
    (floor,) = fresh.values()
    taken = frozenset(
        e.action for e in record.state.visited if engine.setup.pool.deviates(e.action)
    )
    assert floor.paths == ({taken: _stream([0.5])} if taken else {})


def test_paths_round_trip_and_older_files_migrate(tmp_path: Path) -> None:
    graph = _engine(2).graph
    path = tmp_path / "policy.json"
    save_policy(path, graph.to_document())
    document, loaded = load_graph(path)
    assert document.format == "agensbus.policy/3"
    assert loaded.classes == graph.classes
    assert any(f.paths for f in loaded.classes.values())
    data = json.loads(graph.to_document().model_dump_json())
    data["format"] = "agensbus.policy/2"
    for record in data["classes"].values():
        del record["paths"]
    path.write_text(json.dumps(data))
    document, loaded = load_graph(path)
    assert document.format == "agensbus.policy/3"
    assert all(not f.paths for f in loaded.classes.values())
    assert {n: (f.baseline, f.deviated) for n, f in loaded.classes.items()} == {
        n: (f.baseline, f.deviated) for n, f in graph.classes.items()
    }
    first = next(iter(data["classes"].values()))
    first["paths"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"agensbus\.policy/2 document's classes have no paths"):
        load_graph(path)


def test_a_path_named_twice_is_rejected() -> None:
    from schemas.policy_file import ClassRecord

    path = {"actions": [FATAL], "count": 1.0, "mean": 0.4, "m2": 0.0}
    with pytest.raises(ValueError, match="appears twice"):
        ClassRecord.model_validate({"paths": [path, path]})


def test_warned_takes_unconfounded_vetoes_and_no_lone_confounded_one() -> None:
    found = {"a": Vetoes(frozenset({FATAL, SAFE}), frozenset({SAFE})), "b": Vetoes()}
    floors = {"a": _floor({frozenset({FATAL}): [0.40], frozenset({FATAL, SAFE}): [0.40]})}
    floors["b"] = _floor({})
    assert warned(found, floors) == {FATAL}


def test_an_action_two_classes_veto_confounded_is_a_warning() -> None:
    together = frozenset({FATAL, SAFE})
    found = {name: Vetoes(together, together) for name in ("a", "b")}
    floors = {name: _floor({together: [0.40]}) for name in ("a", "b")}
    assert warned(found, floors) == together
    # imported at prior strength 0.5, the same two classes are one class's worth
    prior = {name: floor.scaled(0.5) for name, floor in floors.items()}
    assert warned(found, prior) == frozenset()


def test_a_rare_class_is_not_offered_what_its_mates_vetoed_confounded() -> None:
    setup, name, state = _first_class_start()
    graph = PolicyGraph()
    graph.classes[name] = _floor({})
    candidates = [setup.pool.cells["verifier"].default.action, FATAL]
    graph.classes["mate-1"] = _floor({frozenset({FATAL, SAFE}): [0.35]})
    assert offered(state, graph, setup, candidates) == candidates
    graph.classes["mate-2"] = _floor({frozenset({FATAL, TRY}): [0.30]})
    assert offered(state, graph, setup, candidates) == candidates[:1]


def test_paper_mode_offers_every_candidate() -> None:
    engine = _engine(0)
    name, task = next(iter(engine.scenario.classes.items()))
    paper = PolicySetup(pool=engine.setup.pool, selection=SelectionConfig())
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="g",
        features=task.features,
        setup=paper,
        task_class=name,
    )
    graph = PolicyGraph()
    graph.classes[name] = _floor({frozenset({FATAL}): [0.40]})
    assert offered(state, graph, paper, [FATAL, SAFE]) == [FATAL, SAFE]


def test_off_policy_evaluation_gives_a_withheld_action_no_probability() -> None:
    graph = PolicyGraph()
    signature = "v1|straightforward|1000000|c1.u9.r5.e1"
    graph.node_visits[graph.node_row(signature)] = 10
    target = TargetPolicy(graph, SelectionConfig())
    default = "verifier"
    assert target.probabilities(signature, [FATAL, default]) == [1.0, 0.0]
    assert target.probabilities(signature, [FATAL, default], None, frozenset({FATAL})) == [
        0.0,
        1.0,
    ]
    veto = arm_named("agensbus").selection
    floors = TargetPolicy(graph, veto, floors=True)
    graph.classes["C1"] = _floor({frozenset({FATAL}): [0.40]})
    logged = LoggedTrajectory("t", (), 0.5, "C1", None)
    assert floors.withheld(logged) == {FATAL}
    assert TargetPolicy(graph, veto).withheld(logged) == frozenset()
