"""Switches that change only the learner's signal (expected charges, greedy continuation):
each changes what it claims, and paper mode backs up exactly the realized reward."""

import numpy as np
import pytest

from schemas.records import (
    RewardConfig,
    SelectionConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
    VisitedEdge,
)
from services.policy import PolicyGraph, PolicySetup, backup
from services.policy.arms import arm_named
from services.policy.learning import expected_charge_reward, greedy_continuation_rewards
from services.policy.selection import select, select_batch
from services.policy.trajectory import start_state

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"
NEXT = "v1|straightforward|1100000|c1.u9.r5.e1"


def _edge(
    step: int, signature: str, action: str, *, tokens: int = 0, retries: int = 0
) -> VisitedEdge:
    status = StepStatus.SKIPPED if action.startswith("skip:") else StepStatus.SUCCEEDED
    return VisitedEdge(
        step=step,
        signature=signature,
        action=action,
        propensity=1.0,
        status=status,
        tokens=tokens,
        retries=retries,
    )


def _trajectory(*edges: VisitedEdge) -> TrajectoryState:
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="g",
        features=TaskFeatures(),
        setup=PolicySetup(),
        task_class="C1",
    )
    return state.model_copy(
        update={
            "visited": list(edges),
            "tokens_used": sum(e.tokens for e in edges),
            "retries": sum(e.retries for e in edges),
        }
    )


def _planner_then_solver(retries: int, tokens: int = 1_000) -> TrajectoryState:
    return _trajectory(
        _edge(0, SIG, "planner", tokens=tokens, retries=retries),
        _edge(1, NEXT, "solver", tokens=tokens),
    )


def test_expected_retries_charge_an_edges_mean_not_this_trajectorys_luck() -> None:
    config = RewardConfig(expected_retries=True)
    graph = PolicyGraph()
    # Two earlier trajectories: planner retried 0 and 2 times, a mean of 1.
    backup(graph, [(_planner_then_solver(0), 0.5), (_planner_then_solver(2), 0.2)], config)
    assert graph.expected_retries(SIG, "planner") == 1.0
    assert graph.expected_retries(NEXT, "solver") == 0.0
    # A lucky trajectory (no retry) and an unlucky one (3) back up the same reward: the one
    # of a trajectory with the planner's mean retries.
    lucky, unlucky = _planner_then_solver(0), _planner_then_solver(3)
    assert expected_charge_reward(graph, lucky, 0.6, config) == pytest.approx(0.6 - 0.15)
    assert expected_charge_reward(graph, unlucky, 0.15, config) == pytest.approx(0.6 - 0.15)
    # A first visit counts its own retries: nothing changes.
    fresh = PolicyGraph()
    assert expected_charge_reward(fresh, unlucky, 0.15, config) == 0.15


def test_expected_tokens_charge_the_edges_token_means() -> None:
    config = RewardConfig(expected_tokens=True, cost_shape="linear")
    graph = PolicyGraph()
    backup(graph, [(_planner_then_solver(0, tokens=2_000), 0.5)], config)
    dear = _planner_then_solver(0, tokens=4_000)  # 8k realized, 4k expected
    realized = 0.9 - 0.3 * 8_000 / 8_000
    assert expected_charge_reward(graph, dear, realized, config) == pytest.approx(
        0.9 - 0.3 * 4_000 / 8_000
    )
    # Retries are neither kept nor replaced when only tokens are expected.
    assert not graph.retries.any()
    same_tokens = _planner_then_solver(2, tokens=2_000)
    assert expected_charge_reward(graph, same_tokens, 0.5, config) == pytest.approx(0.5)


def test_paper_backup_is_the_realized_reward_and_keeps_no_retries() -> None:
    paper, expected = PolicyGraph(), PolicyGraph()
    history = [(_planner_then_solver(0), 0.5), (_planner_then_solver(2), 0.2)]
    backup(paper, history)
    backup(expected, history, RewardConfig(expected_retries=True))
    backup(paper, [(_planner_then_solver(3), 0.1)])
    backup(expected, [(_planner_then_solver(3), 0.1)], RewardConfig(expected_retries=True))
    assert paper.edge(SIG, "planner").mean_reward == pytest.approx((0.5 + 0.2 + 0.1) / 3)
    assert expected.edge(SIG, "planner").mean_reward == pytest.approx((0.5 + 0.2 + 0.4) / 3)
    assert not paper.retries.any()
    assert arm_named("paper").reward == RewardConfig()
    assert arm_named("agensbus+expected_retries").reward.expected_retries


def test_greedy_continuation_removes_what_later_exploration_cost() -> None:
    graph = PolicyGraph()
    # At NEXT the solver@strong variant has mean 0.8, solver@cheap 0.5, and a skip of
    # another cell a higher mean that is no alternative to the solver.
    for action, reward in (("solver@strong", 0.8), ("solver@cheap", 0.5), ("skip:critic", 0.95)):
        graph.backup(graph.batch([(NEXT, action, False)], [reward], [10]))
    explored = _trajectory(_edge(0, SIG, "planner"), _edge(1, NEXT, "solver@cheap"))
    # The planner is credited as if the solver had been the greedy one: +0.3.
    assert greedy_continuation_rewards(graph, explored, 0.4) == pytest.approx([0.7, 0.4])
    greedy = _trajectory(_edge(0, SIG, "planner"), _edge(1, NEXT, "solver@strong"))
    assert greedy_continuation_rewards(graph, greedy, 0.7) == [0.7, 0.7]
    on = RewardConfig(greedy_continuation=True)
    switched, paper = PolicyGraph(), PolicyGraph()
    for g, config in ((switched, on), (paper, RewardConfig())):
        g.merge(graph)
        backup(g, [(explored, 0.4)], config)
    assert switched.edge(SIG, "planner").mean_reward == pytest.approx(0.7)
    assert paper.edge(SIG, "planner").mean_reward == pytest.approx(0.4)
    assert arm_named("agensbus+greedy_continuation").reward.greedy_continuation


def test_kept_retries_survive_the_policy_file_merge_and_relabel() -> None:
    graph = PolicyGraph()
    history = [(_planner_then_solver(1), 0.5), (_planner_then_solver(2), 0.2)]
    backup(graph, history, RewardConfig(expected_retries=True))
    loaded = PolicyGraph.from_document(graph.to_document())
    assert loaded.expected_retries(SIG, "planner") == 1.5
    assert loaded.to_document().nodes == graph.to_document().nodes
    halved = PolicyGraph()
    halved.merge(graph, weight=0.5)  # one visit of two: the mean is kept
    assert halved.expected_retries(SIG, "planner") == 1.5
    assert graph.relabeled(lambda s: s).expected_retries(SIG, "planner") == 1.5
    # A graph that keeps none writes none: paper-mode files are what they were.
    paper = PolicyGraph()
    backup(paper, history)
    assert all(e.retries is None for n in paper.to_document().nodes for e in n.edges.values())


def test_tokens_to_go_back_up_what_each_choice_went_on_to_spend() -> None:
    state = _trajectory(
        _edge(0, SIG, "planner", tokens=1_000),
        _edge(1, NEXT, "skip:memory"),
        _edge(2, NEXT, "solver", tokens=3_000),
    )
    to_go, own = PolicyGraph(), PolicyGraph()
    backup(to_go, [(state, 0.5)], RewardConfig(tokens_to_go=True))
    backup(own, [(state, 0.5)])
    assert [to_go.edge(s, a).token_mean for s, a in ((SIG, "planner"), (NEXT, "skip:memory"))] == [
        4_000.0,
        3_000.0,
    ]
    assert [own.edge(s, a).token_mean for s, a in ((SIG, "planner"), (NEXT, "skip:memory"))] == [
        1_000.0,
        0.0,
    ]


def test_cheap_within_takes_the_cheapest_action_near_the_best_mean() -> None:
    graph = PolicyGraph()
    # (mean reward, token mean): strong is best, skip cheapest, fast within 0.02 of strong.
    for action, reward, tokens in (
        ("solver@strong", 0.80, 3_000),
        ("solver@fast", 0.79, 1_000),
        ("skip:solver", 0.70, 0),
    ):
        graph.backup(graph.batch([(SIG, action, False)] * 10, [reward] * 10, [tokens] * 10))
    graph.node_visits[graph.find_row(SIG) or 0] = 30
    actions = ["solver@strong", "solver@fast", "skip:solver"]
    greedy = SelectionConfig(c_min=0.0, c_initial=0.0)
    assert select(graph, SIG, actions, greedy).action == "solver@strong"
    two_stage = greedy.model_copy(update={"cheap_within": 0.02})
    assert select(graph, SIG, actions, two_stage).action == "solver@fast"
    wide = greedy.model_copy(update={"cheap_within": 0.2})
    assert select(graph, SIG, actions, wide).action == "skip:solver"
    # An untried action is still explored first: the rule only replaces a tried choice.
    assert select(graph, SIG, [*actions, "solver@new"], two_stage).action == "solver@new"
    with pytest.raises(ValueError, match="plain greedy"):
        select_batch(
            graph,
            np.array([0]),
            np.array([[0, 1, 2]]),
            np.array([[False, False, True]]),
            two_stage,
        )
    arm = arm_named("agensbus+quality_then_tokens")
    assert (arm.selection.cheap_within, arm.reward.cost_weight, arm.reward.tokens_to_go) == (
        0.02,
        0.0,
        True,
    )
    assert arm_named("paper").selection == SelectionConfig()
