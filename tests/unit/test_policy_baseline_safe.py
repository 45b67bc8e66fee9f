"""Baseline-safe selection: the fixed pipeline's action is kept until an alternative is
proven, exploration away from it is a logged share of decisions, never on protected work."""

import pytest
from pydantic import ValidationError

from schemas.events import DecisionReason
from schemas.records import SelectionConfig, TaskFeatures
from services.policy import (
    PolicyGraph,
    PolicySetup,
    StepResult,
    absorb,
    decide,
    select,
    start_state,
)
from services.policy.selection import Guard
from services.policy.trajectory import Step, guard_for

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"
CANDIDATES = ["a", "b", "skip:a"]
SAFE = SelectionConfig(baseline_tolerance=0.01, c_min=0.05, c_initial=0.5, c_half_life=20.0)


def _observe(g: PolicyGraph, action: str, rewards: list[float]) -> None:
    edges = [(SIG, action, False)] * len(rewards)
    g.backup(g.batch(edges, rewards, [0.0] * len(edges)))


def test_an_alternative_with_too_few_visits_leaves_the_baseline_in_place() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.40, 0.42, 0.38, 0.41, 0.39, 0.40])
    _observe(g, "b", [0.90, 0.92, 0.91, 0.89])  # far better, but 4 visits < 5
    sel = select(g, SIG, ["a", "b"], SAFE)
    assert (sel.action, sel.reason, sel.propensity) == ("a", DecisionReason.BASELINE_KEPT, 1.0)
    # without the rule the same graph takes b
    free = SAFE.model_copy(update={"baseline_tolerance": None})
    assert select(g, SIG, ["a", "b"], free).action == "b"


def test_a_proven_alternative_replaces_the_baseline() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.40, 0.42, 0.38, 0.41, 0.39, 0.40])
    _observe(g, "b", [0.60, 0.62, 0.61, 0.59, 0.60])
    sel = select(g, SIG, CANDIDATES, SAFE)
    assert (sel.action, sel.reason, sel.propensity) == (
        "b",
        DecisionReason.GRAPH_RECOMMENDATION,
        1.0,
    )


def test_a_noisy_alternative_whose_lower_bound_falls_below_the_floor_is_not_proven() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.40] * 6)
    _observe(g, "b", [0.10, 0.90, 0.20, 0.80, 0.30])  # mean 0.46, standard error 0.15
    assert select(g, SIG, CANDIDATES, SAFE).action == "a"
    lenient = SAFE.model_copy(update={"baseline_z": 0.0})
    assert select(g, SIG, CANDIDATES, lenient).action == "b"


def _untried_alternative_graph() -> PolicyGraph:
    g = PolicyGraph()
    _observe(g, "a", [0.40] * 6)
    return g


def test_exploration_takes_the_best_score_with_its_logged_share() -> None:
    config = SAFE.model_copy(update={"explore_share": 0.4, "untried_score": 0.9})
    g = _untried_alternative_graph()
    share = 0.4 * 2.0 ** (-6 / 20.0)  # decays with the node's 6 visits
    explored = select(g, SIG, CANDIDATES, config, u=share - 1e-9)
    kept = select(g, SIG, CANDIDATES, config, u=share + 1e-9)
    assert (explored.action, explored.propensity) == ("b", pytest.approx(share))
    assert explored.reason is DecisionReason.UNTRIED_ACTION
    assert (kept.action, kept.propensity) == ("a", pytest.approx(1.0 - share))
    assert kept.reason is DecisionReason.BASELINE_KEPT
    with pytest.raises(ValueError, match="uniform draw"):
        select(g, SIG, CANDIDATES, config)


def test_a_decision_past_the_trajectorys_one_chance_takes_the_proven_choice() -> None:
    config = SAFE.model_copy(update={"explore_share": 1.0, "untried_score": 0.9})
    sel = select(
        _untried_alternative_graph(), SIG, CANDIDATES, config, u=0.0, guard=Guard.NODE_ONLY
    )
    assert (sel.action, sel.propensity) == ("a", 1.0)


@pytest.mark.parametrize("protect", ["class", "regime"])
def test_the_router_protects_listed_classes_and_regimes(protect: str) -> None:
    config = SAFE.model_copy(
        update={
            "explore_share": 1.0,
            "untried_score": 0.9,
            "confidence_threshold": 0,
            "c_half_life": 1e12,  # no decay: every unproven best score is explored
            "protected_classes": ["privacy"] if protect == "class" else [],
            "protected_regimes": ["straightforward"] if protect == "regime" else [],
        }
    )
    setup = PolicySetup(selection=config)
    state = start_state(
        task_id="t1",
        trajectory_id="t1",
        goal="g",
        features=TaskFeatures(),
        setup=setup,
        task_class="privacy",
    )
    graph = PolicyGraph()
    first = decide(state, graph, setup)
    assert isinstance(first, Step)
    # the baseline's edge is known, every alternative untried: a free router would explore
    graph.backup(graph.batch([(first.signature, first.action, False)] * 6, [0.4] * 6, [0.0] * 6))
    unprotected = setup.selection.model_copy(
        update={"protected_classes": [], "protected_regimes": []}
    )
    chosen = decide(state, graph, setup)
    free = decide(state, graph, PolicySetup(selection=unprotected))
    assert isinstance(chosen, Step) and isinstance(free, Step)
    assert chosen.action == "planner" and chosen.selection.reason is DecisionReason.BASELINE_KEPT
    assert free.action != "planner"
    assert free.selection.propensity < 1.0
    # once the trajectory has had its chance, its later decisions take the proven choice
    after = absorb(free.state, StepResult(succeeded=True), setup)
    assert guard_for(after, graph, unprotected) is Guard.NODE_ONLY
    # an alternative proven at the node (by whichever classes share it) moves a free
    # router, never a protected class
    graph.backup(graph.batch([(first.signature, "skip:planner", False)] * 6, [0.9] * 6, [0.0] * 6))
    proven = decide(state, graph, PolicySetup(selection=unprotected))
    kept = decide(state, graph, setup)
    assert isinstance(proven, Step) and isinstance(kept, Step)
    assert proven.action == "skip:planner"
    assert kept.action == "planner"


def test_baseline_safe_selection_draws_its_own_exploration() -> None:
    with pytest.raises(ValidationError, match="node rule"):
        SelectionConfig(baseline_tolerance=0.01, temperature=0.1)
    # the class floor decides per trajectory: within an open class the scores may be drawn
    SelectionConfig(baseline_tolerance=0.01, baseline_floor="class", temperature=0.1)
