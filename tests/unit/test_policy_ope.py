"""Off-policy evaluation: importance weights and the doubly robust recursion worked by hand,
the logging policy recovering its own mean exactly, mergeable estimators, the join of
logged events, and a greedy target estimated from a softmax log of the simulated world."""

import dataclasses
import math
import statistics
from functools import cache

import pytest

from schemas.events import ActionKind, Decision, DecisionReason, RewardObserved
from schemas.records import ActionScore, SelectionConfig
from services.policy import PolicyGraph, absorb, advance, hybrid_reward, start_state
from services.policy.arms import arm_named
from services.policy.ope import (
    LoggedDecision,
    LoggedTrajectory,
    TargetPolicy,
    evaluate,
    join,
    weigh,
)
from services.sim import Engine, load_scenario
from services.sim.engine import epoch_tasks
from services.sim.testing import completed_trajectory

SCENARIO = load_scenario("security-advisories")
ARM = arm_named("agensbus-free")  # its scores alone: a class floor is read open
#: Past the confidence threshold, so the graph's scores, not the prior, choose.
CONFIDENT = SelectionConfig(confidence_threshold=1)


def graph_with(edges: dict[tuple[str, str], float]) -> PolicyGraph:
    """One visit per (node, action) at the given reward."""
    graph = PolicyGraph()
    keys = list(edges)
    graph.backup(
        graph.batch([(s, a, False) for s, a in keys], list(edges.values()), [0.0] * len(keys))
    )
    return graph


def test_weights_and_the_doubly_robust_value_by_hand() -> None:
    # At s1 the greedy target takes "a" (mean 0.6 over 0.2); at s2 "c" (0.5 over 0.1).
    graph = graph_with({("s1", "a"): 0.6, ("s1", "b"): 0.2, ("s2", "c"): 0.5, ("s2", "d"): 0.1})
    target = TargetPolicy(graph, CONFIDENT.model_copy(update={"c_initial": 0.0, "c_min": 0.0}))
    kept = LoggedTrajectory(
        "t-1",
        (LoggedDecision("s1", ("a", "b"), "a", 0.5), LoggedDecision("s2", ("c", "d"), "c", 0.8)),
        reward=0.7,
    )
    item = weigh(target, kept)
    assert item.weight == pytest.approx(1 / 0.5 * 1 / 0.8)  # 2.5
    # V2 = v(s2) + rho2 (r - q(s2,c)) = 0.5 + 1.25 (0.7 - 0.5) = 0.75
    # V1 = v(s1) + rho1 (0 + V2 - q(s1,a)) = 0.6 + 2 (0.75 - 0.6) = 0.9
    assert item.doubly_robust == pytest.approx(0.9)

    left = LoggedTrajectory(
        "t-2",
        (LoggedDecision("s1", ("a", "b"), "a", 0.5), LoggedDecision("s2", ("c", "d"), "d", 0.2)),
        reward=0.3,
    )
    item = weigh(target, left)
    assert item.weight == 0.0  # the target never takes "d"
    # V2 = 0.5 + 0 = 0.5; V1 = 0.6 + 2 (0.5 - 0.6) = 0.4: the model's value, corrected.
    assert item.doubly_robust == pytest.approx(0.4)

    evaluation = evaluate(target, [kept, left])
    assert evaluation.ips.estimate == pytest.approx((2.5 * 0.7 + 0.0) / 2)
    assert evaluation.snips.estimate == pytest.approx(0.7)
    assert evaluation.snips.effective_sample_size == pytest.approx(1.0)
    assert evaluation.doubly_robust.estimate == pytest.approx(0.65)
    assert evaluation.logged.estimate == pytest.approx(0.5)
    assert evaluation.matched == 1


def test_a_stochastic_target_weighs_by_its_softmax() -> None:
    graph = graph_with({("s1", "a"): 0.6, ("s1", "b"): 0.2})
    selection = CONFIDENT.model_copy(update={"temperature": 0.1, "c_initial": 0.0, "c_min": 0.0})
    logged = LoggedTrajectory("t", (LoggedDecision("s1", ("a", "b"), "b", 0.5),), reward=1.0)
    share_b = math.exp(0.2 / 0.1) / (math.exp(0.6 / 0.1) + math.exp(0.2 / 0.1))
    assert weigh(TargetPolicy(graph, selection), logged).weight == pytest.approx(share_b / 0.5)


def test_a_logged_action_outside_its_candidates_is_refused() -> None:
    bad = LoggedTrajectory("t-9", (LoggedDecision("s1", ("a",), "z", 1.0),), reward=0.0)
    with pytest.raises(ValueError, match="t-9: z is not among the logged candidates"):
        weigh(TargetPolicy(PolicyGraph()), bad)


@cache
def trained() -> PolicyGraph:
    """A policy learned over four epochs of the simulated world."""
    engine = Engine(SCENARIO, ARM.setup(SCENARIO, 0), seed=0, reward=ARM.reward)
    engine.run(4)
    return engine.graph


def logged_run(selection: SelectionConfig, seed: int, epochs: int) -> list[LoggedTrajectory]:
    """Trajectories the trained policy runs with ``selection`` and without learning, logged
    as a router logs them, each with the paper's reward of its judged quality."""
    graph = trained()
    setup = dataclasses.replace(ARM.setup(SCENARIO, seed), selection=selection)
    world = Engine(SCENARIO, setup, seed=seed)
    runs = []
    for epoch in range(10, 10 + epochs):
        for task_id, task_class in epoch_tasks(SCENARIO, seed, epoch):
            state = start_state(
                task_id=task_id,
                trajectory_id=task_id,
                goal=task_class.description,
                features=task_class.features,
                setup=setup,
                task_class=task_class.name,
            )
            decisions = []
            while True:
                steps, ended = advance(state, graph, setup)
                decisions += [
                    LoggedDecision(
                        s.signature,
                        tuple(c.action for c in s.selection.scores),
                        s.action,
                        s.selection.propensity,
                    )
                    for s in steps
                ]
                state = steps[-1].state if steps else state
                if ended is not None:
                    break
                executed = world.world.execute(state, steps[-1].variant)  # type: ignore[arg-type]
                state = absorb(state, executed.result, setup)
            judged = world.judge.score(task_id, world.world.true_quality(state))
            reward = hybrid_reward(judged.quality, state.tokens_used, state.retries)
            runs.append(LoggedTrajectory(task_id, tuple(decisions), reward))
    return runs


def test_the_logging_policy_recovers_exactly_its_own_mean() -> None:
    logging = ARM.selection.model_copy(update={"temperature": 0.05})
    log = logged_run(logging, seed=1, epochs=2)
    evaluation = evaluate(TargetPolicy(trained(), logging), log)
    mean = statistics.mean(t.reward for t in log)
    assert evaluation.ips.estimate == pytest.approx(mean, abs=1e-12)
    assert evaluation.snips.estimate == pytest.approx(mean, abs=1e-12)
    assert evaluation.snips.effective_sample_size == pytest.approx(len(log))
    assert evaluation.matched == len(log)
    # Merging the evaluations of two halves is evaluating the whole.
    halves = evaluate(TargetPolicy(trained(), logging), log[:50]).merge(
        evaluate(TargetPolicy(trained(), logging), log[50:])
    )
    assert halves.ips.estimate == pytest.approx(evaluation.ips.estimate)
    assert halves.doubly_robust.estimate == pytest.approx(evaluation.doubly_robust.estimate)
    assert halves.snips.effective_sample_size == pytest.approx(len(log))


def test_a_greedy_target_is_estimated_from_a_softmax_log() -> None:
    """The target (the trained policy, greedy) earns more than the exploring logger; the
    estimators, from the logger's trajectories alone, land near what the target earns when
    it runs."""
    log = logged_run(ARM.selection.model_copy(update={"temperature": 0.05}), seed=1, epochs=10)
    truth = statistics.mean(t.reward for t in logged_run(ARM.selection, seed=2, epochs=10))
    logged = statistics.mean(t.reward for t in log)
    evaluation = evaluate(TargetPolicy(trained(), ARM.selection), log)
    assert truth - logged > 0.05
    assert abs(evaluation.snips.estimate - truth) < 0.04
    assert abs(evaluation.doubly_robust.estimate - truth) < 0.04
    assert 0 < evaluation.matched < len(log)


def test_events_join_into_whole_trajectories_and_the_rest_is_counted() -> None:
    engine = Engine(SCENARIO, ARM.setup(SCENARIO, 0), seed=0)
    ends = [completed_trajectory(engine, "C2", f"t-{i}") for i in range(4)]

    def decisions_of(index: int) -> list[Decision]:
        end = ends[index]
        return [
            Decision(
                decision_id=f"{end.trajectory_id}:{edge.step}",
                trajectory_id=end.trajectory_id,
                task_id=end.task_id,
                step=edge.step,
                action=edge.action,
                action_kind=ActionKind.INVOKE,
                cell="solver",
                reason=DecisionReason.GRAPH_RECOMMENDATION,
                signature=edge.signature,
                scores=[ActionScore(action=edge.action, score=0.5)],
                propensity=edge.propensity,
                policy_version=0,
                exploration_c=0.5,
                state=end.state,
            )
            for edge in end.state.visited
        ]

    def reward_of(index: int) -> RewardObserved:
        return RewardObserved(trajectory_id=ends[index].trajectory_id, quality=0.8, source="judge")

    events = [
        *decisions_of(0), *decisions_of(0), ends[0], reward_of(0),  # redelivered: counts once
        *decisions_of(1), ends[1],  # never rewarded
        *decisions_of(2)[1:], ends[2], reward_of(2),  # its first decision is missing
        *decisions_of(3),  # still running
    ]  # fmt: skip
    joined = join(events)
    [whole] = joined.trajectories
    assert whole.trajectory_id == ends[0].trajectory_id
    assert len(whole.decisions) == ends[0].steps == len(ends[0].state.visited)
    assert whole.reward == pytest.approx(hybrid_reward(0.8, ends[0].tokens, ends[0].retries))
    assert (joined.unrewarded, joined.incomplete, joined.unfinished) == (1, 1, 1)
