"""The switches that improve on paper mode, each checked against what it promises, and
paper mode checked to be what it was."""

import math
from collections import Counter

import numpy as np
import pytest

from schemas.records import (
    FoldSpec,
    Handoff,
    Regime,
    RewardConfig,
    SelectionConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
    VisitedEdge,
)
from services.policy import PolicyGraph, PolicySetup, backup, decide, hybrid_reward
from services.policy.actions import candidate_actions
from services.policy.arms import arm_named, policy_setup
from services.policy.selection import select, select_batch, softmax
from services.policy.trajectory import Step, decision_uniform, signature_of, start_state
from services.sim.engine import Engine
from services.sim.loader import load_scenario

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"
ACTIONS = ("a", "b", "c")


def graph_with(stats: dict[str, tuple[int, float]], node_visits: int = 20) -> PolicyGraph:
    """A graph whose node SIG has ``node_visits`` visits and edges (visits, mean)."""
    graph = PolicyGraph(ACTIONS)
    row = graph.node_row(SIG)
    graph.node_visits[row] = node_visits
    for action, (visits, mean) in stats.items():
        col = graph.action_col(action)
        graph.visits[row, col] = graph.weight[row, col] = visits
        graph.mean_reward[row, col] = mean
    return graph


def test_optimistic_prior_scores_an_untried_action_at_its_value() -> None:
    graph = graph_with({"a": (10, 0.5), "b": (10, 0.4)})
    config = SelectionConfig(untried_score=0.7)
    chosen = select(graph, SIG, ACTIONS, config)
    untried = chosen.scores[2]
    assert (untried.action, untried.score, untried.visits) == ("c", 0.7, 0)
    # 0.7 loses to a well-tried action whose UCB score is higher, where +inf never would.
    strong = graph_with({"a": (10, 0.9), "b": (10, 0.4)})
    assert select(strong, SIG, ACTIONS, config).action == "a"
    assert select(strong, SIG, ACTIONS).action == "c"
    assert select(strong, SIG, ACTIONS).scores[2].score == math.inf


def test_select_batch_honours_the_optimistic_prior_and_refuses_sampling() -> None:
    graph = graph_with({"a": (10, 0.9), "b": (10, 0.4)})
    rows = np.array([0], dtype=np.int64)
    cols = np.array([[0, 1, 2]], dtype=np.int64)
    skips = np.zeros((1, 3), dtype=np.bool_)
    finite = select_batch(graph, rows, cols, skips, SelectionConfig(untried_score=0.7))
    paper = select_batch(graph, rows, cols, skips)
    assert (int(finite.index[0]), bool(finite.untried[0])) == (0, False)
    assert (int(paper.index[0]), bool(paper.untried[0])) == (2, True)
    with pytest.raises(ValueError, match="greedy"):
        select_batch(graph, rows, cols, skips, SelectionConfig(temperature=0.1))


def test_softmax_propensities_sum_to_one_and_match_frequencies() -> None:
    graph = graph_with({"a": (10, 0.6), "b": (10, 0.5), "c": (10, 0.3)})
    config = SelectionConfig(temperature=0.1, c_min=0.0, c_initial=0.0)
    draws = 20_000
    counts: Counter[str] = Counter()
    propensity: dict[str, float] = {}
    for i in range(draws):
        chosen = select(graph, SIG, ACTIONS, config, u=decision_uniform(7, f"t{i}", 0))
        counts[chosen.action] += 1
        propensity[chosen.action] = chosen.propensity
    expected = softmax([0.6, 0.5, 0.3], 0.1)
    assert math.isclose(sum(expected), 1.0)
    for action, p in zip(ACTIONS, expected, strict=True):
        assert propensity[action] == pytest.approx(p)
        assert counts[action] / draws == pytest.approx(p, abs=0.01)


def test_softmax_over_untried_actions_is_uniform_over_them() -> None:
    assert softmax([0.2, math.inf, math.inf], 0.5) == [0.0, 0.5, 0.5]
    graph = graph_with({"a": (10, 0.9)})
    picks = {
        select(graph, SIG, ACTIONS, SelectionConfig(temperature=0.5), u=u).action
        for u in (0.0, 0.3, 0.6, 0.99)
    }
    assert picks == {"b", "c"}


def test_stochastic_selection_needs_a_draw() -> None:
    graph = graph_with({"a": (10, 0.9)})
    with pytest.raises(ValueError, match="uniform draw"):
        select(graph, SIG, ACTIONS, SelectionConfig(temperature=0.5))


def _state(**update: object) -> TrajectoryState:
    setup = PolicySetup()
    state = start_state(
        task_id="t1",
        trajectory_id="t1",
        goal="g",
        features=TaskFeatures(),
        setup=setup,
        task_class="C1",
    )
    return state.model_copy(update=update)


def test_decide_logs_the_exact_propensity_of_a_sampled_action() -> None:
    setup = PolicySetup(selection=SelectionConfig(temperature=0.05, confidence_threshold=0))
    state = _state()
    graph = PolicyGraph()
    step = decide(state, graph, setup)
    assert isinstance(step, Step)
    candidates = candidate_actions(state, setup.pool)
    # An empty graph: every candidate is untried, so each has probability 1/len.
    assert step.selection.propensity == pytest.approx(1 / len(candidates))
    logged = (
        step.state.pending.propensity if step.state.pending else step.state.visited[-1].propensity
    )
    assert logged == step.selection.propensity


def test_decision_draws_depend_on_the_seed_and_repeat_per_decision() -> None:
    assert decision_uniform(0, "t", 3) == decision_uniform(0, "t", 3)
    assert decision_uniform(0, "t", 3) != decision_uniform(1, "t", 3)
    assert 0.0 <= decision_uniform(5, "x", 0) < 1.0


def _skip_chain() -> TrajectoryState:
    edges = [
        VisitedEdge(step=0, signature=SIG, action="skip:planner", propensity=1.0,
                    status=StepStatus.SKIPPED),
        VisitedEdge(step=1, signature=SIG, action="skip:memory", propensity=1.0,
                    status=StepStatus.SKIPPED),
        VisitedEdge(step=2, signature=SIG, action="solver", propensity=1.0,
                    status=StepStatus.SUCCEEDED, tokens=100),
    ]  # fmt: skip
    return _state(visited=edges)


def test_node_visit_once_counts_a_skip_chain_once() -> None:
    once, paper = PolicyGraph(), PolicyGraph()
    backup(once, [(_skip_chain(), 0.5)], RewardConfig(node_visit_once=True))
    backup(paper, [(_skip_chain(), 0.5)])
    assert once.visits_of(SIG) == 1
    assert paper.visits_of(SIG) == 3
    # Edges are updated alike: only the node's count changes.
    for action in ("skip:planner", "skip:memory", "solver"):
        assert once.edge(SIG, action) == paper.edge(SIG, action)


def test_node_visit_once_is_per_trajectory() -> None:
    graph = PolicyGraph()
    backup(graph, [(_skip_chain(), 0.5), (_skip_chain(), 0.1)], RewardConfig(node_visit_once=True))
    assert graph.visits_of(SIG) == 2


def test_class_aware_fold_puts_the_task_class_in_the_signature() -> None:
    setup = PolicySetup(fold=FoldSpec(extra_keys=["task_class"]))
    state = start_state(
        task_id="t", trajectory_id="t", goal="g", features=TaskFeatures(), setup=setup,
        task_class="C7",
    )  # fmt: skip
    assert signature_of(state, setup).endswith("|task_class=C7")
    assert "task_class" not in signature_of(state, PolicySetup())


def test_linear_cost_keeps_charging_past_the_cap() -> None:
    linear = RewardConfig(cost_shape="linear")
    assert hybrid_reward(1.0, 16_000, 0) == pytest.approx(0.7)
    assert hybrid_reward(1.0, 16_000, 0, linear) == pytest.approx(0.4)
    assert hybrid_reward(1.0, 4_000, 0, linear) == hybrid_reward(1.0, 4_000, 0)


@pytest.mark.parametrize(
    ("switch", "cap"), [("linear_cost_12k", 12_000), ("linear_cost_24k", 24_000)]
)
def test_linear_cost_switches_charge_past_8k_at_their_slope(switch: str, cap: int) -> None:
    reward = arm_named(f"agensbus+{switch}").reward
    assert (reward.cost_shape, reward.token_cap) == ("linear", cap)
    # 20k tokens cost 0.3 * 20k / cap, past the paper's saturation at 0.3 ...
    assert hybrid_reward(1.0, 20_000, 0, reward) == pytest.approx(1.0 - 0.3 * 20_000 / cap)
    # ... and the switch leaves the paper arm's reward the paper's.
    assert arm_named("paper").reward == RewardConfig()
    assert hybrid_reward(1.0, 20_000, 0, arm_named("paper").reward) == pytest.approx(0.7)


def test_next_in_plan_offers_the_first_legal_cell_only() -> None:
    setup = PolicySetup()
    state = _state()
    assert candidate_actions(state, setup.pool, next_only=True) == ["planner", "skip:planner"]
    after = _state(invoked=["planner", "memory", "web_search_primary", "web_search_secondary"])
    solver_only = candidate_actions(
        after.model_copy(update={"handoff": Handoff(goal="g")}), setup.pool, next_only=True
    )
    assert solver_only and all(a.startswith("solver") for a in solver_only)  # no skip: last legal


def test_relabeled_merges_coinciding_nodes_exactly() -> None:
    graph = PolicyGraph()
    other = SIG.replace("c1", "c2")
    batch = graph.batch(
        [(SIG, "a", False), (other, "a", False), (other, "b", True)], [1.0, 0.0, 0.0], [10, 30, 5]
    )
    graph.backup(batch)
    merged = graph.relabeled(lambda _s: SIG)
    assert merged.visits_of(SIG) == 3
    edge = merged.edge(SIG, "a")
    assert (edge.visits, edge.mean_reward, edge.token_mean) == (2, 0.5, 20.0)
    assert edge.reward_m2 == pytest.approx(0.5)
    assert merged.edge(SIG, "b").failures == 1


def test_paper_mode_is_unchanged() -> None:
    """`agensbus simulate --policy paper --seed 0`, epoch 8, security-advisories."""
    scenario = load_scenario("security-advisories")
    last = Engine(scenario, policy_setup(scenario, "paper"), seed=0).run(8)[-1]
    assert round(last.true_quality, 3) == 0.500
    assert round(last.tokens_per_trajectory) == 9_302


def test_paper_defaults_are_the_paper() -> None:
    selection, reward = SelectionConfig(), RewardConfig()
    assert (selection.untried_score, selection.temperature, selection.candidates) == (
        None,
        0.0,
        "any_legal",
    )
    assert (reward.cost_shape, reward.node_visit_once) == ("capped", False)
    assert FoldSpec().extra_keys == []
    assert Regime.STRAIGHTFORWARD.value in SIG


def test_recency_floor_moves_the_mean_at_least_that_share() -> None:
    exact, discounted = PolicyGraph(), PolicyGraph()
    for graph, floor in ((exact, 0.0), (discounted, 0.2)):
        for reward in [1.0] * 50 + [0.0]:
            graph.backup(graph.batch([(SIG, "a", False)], [reward], [10]), recency_floor=floor)
    assert exact.edge(SIG, "a").mean_reward == pytest.approx(50 / 51)
    assert discounted.edge(SIG, "a").mean_reward == pytest.approx(0.8)
    assert discounted.edge(SIG, "a").visits == exact.edge(SIG, "a").visits == 51
    # Early on the running mean already moves more than the floor: it is kept.
    fresh = PolicyGraph()
    fresh.backup(fresh.batch([(SIG, "a", False)] * 2, [1.0, 0.0], [10, 10]), recency_floor=0.2)
    assert fresh.edge(SIG, "a").mean_reward == pytest.approx(0.5)
