"""Learner inputs for tests: real (TrajectoryCompleted, RewardObserved) pairs, run by the
in-process engine over the shipped scenario's simulated world and scored by its simulated
judge, and the graph that backing them up directly (no learner in between) gives."""

from collections.abc import Sequence
from functools import cache

from schemas.events import RewardObserved, TrajectoryCompleted
from services.policy import PolicyGraph, backup, hybrid_reward
from services.policy.arms import policy_setup
from services.sim import Engine, load_scenario

SCENARIO = load_scenario("security-advisories")
SETUP = policy_setup(SCENARIO, "paper")
Pair = tuple[TrajectoryCompleted, RewardObserved]


@cache
def real_pairs(count: int, prefix: str = "t", seed: int = 0, tenant: str = "default") -> list[Pair]:
    """Trajectories run by the in-process engine over the simulated world, each with the
    simulated judge's reward."""
    engine = Engine(SCENARIO, SETUP, seed=seed)
    classes = list(SCENARIO.classes.values())
    pairs = []
    for i in range(count):
        record = engine.trajectory(1, classes[i % len(classes)], f"{prefix}-{i:03d}")
        reward = record.judgement.to_event(task_id=record.state.task_id, tenant=tenant)
        pairs.append((record.completed(tenant), reward))
    return pairs


def reward_of(pair: Pair) -> float:
    trajectory, reward = pair
    return hybrid_reward(reward.quality, trajectory.state.tokens_used, trajectory.state.retries)


def backed_up_directly(pairs: Sequence[Pair]) -> PolicyGraph:
    """The graph the in-process engine would learn from these pairs, in this order."""
    graph = PolicyGraph()
    for pair in pairs:
        backup(graph, [(pair[0].state, reward_of(pair))], floor=(SETUP.pool, [pair[1].quality]))
    return graph
