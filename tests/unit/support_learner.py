"""Learner inputs for tests: real (TrajectoryCompleted, RewardObserved) pairs, run by the
in-process engine over the shipped scenario's simulated world and scored by its simulated
judge, the graph that backing them up directly (no learner in between) gives, a learner
config, and the node-for-node comparison of two graphs."""

from collections.abc import Sequence
from functools import cache

import pytest

from schemas.events import RewardObserved, TrajectoryCompleted
from services.learner.core import LearnerConfig
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


def learner_config(**changes: object) -> LearnerConfig:
    args: dict[str, object] = {
        "tenant": "default",
        "tenants": ("default", "other"),
        "setup": SETUP,
        "dedupe_window": 1_000,
        "reward_ttl_s": 10.0,
    }
    args.update(changes)
    return LearnerConfig(**args)  # type: ignore[arg-type]


def assert_same_graph(graph: PolicyGraph, expected: PolicyGraph) -> None:
    """Node for node the same statistics: every count exactly, means and M2 up to float
    rounding (a merge adds the same observations in another order)."""
    nodes = {node.signature: node for node in graph.to_nodes()}
    wanted = {node.signature: node for node in expected.to_nodes()}
    assert sorted(nodes) == sorted(wanted)
    for signature, node in wanted.items():
        got = nodes[signature]
        assert got.visits == node.visits, signature
        assert sorted(got.edges) == sorted(node.edges), signature
        for action, edge in node.edges.items():
            mine = got.edges[action]
            assert (mine.visits, mine.failures) == (edge.visits, edge.failures), (signature, action)
            floats = ("mean_reward", "reward_m2", "token_mean", "token_m2")
            assert [getattr(mine, f) for f in floats] == pytest.approx(
                [getattr(edge, f) for f in floats], rel=1e-9, abs=1e-9
            ), (signature, action)
    assert sorted(graph.classes) == sorted(expected.classes)
    for name, floor in expected.classes.items():
        for stream in ("baseline", "deviated"):
            mine, theirs = getattr(graph.classes[name], stream), getattr(floor, stream)
            assert mine.count == theirs.count, (name, stream)
            moments = pytest.approx((theirs.mean, theirs.m2), rel=1e-9, abs=1e-9)
            assert (mine.mean, mine.m2) == moments, (name, stream)
