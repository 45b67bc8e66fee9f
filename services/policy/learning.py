"""Backing a trajectory's reward up into the policy graph."""

from collections.abc import Sequence

from schemas.records import StepStatus, TrajectoryState
from services.policy.graph import PolicyGraph


def backup(graph: PolicyGraph, trajectories: Sequence[tuple[TrajectoryState, float]]) -> int:
    """Back each trajectory's reward up, in full, into every edge it visited (paper mode).

    Failed invokes count as failures of their edge and carry no reward. Returns the number
    of edge updates applied.
    """
    failed = StepStatus.FAILED
    edges: list[tuple[str, str, bool]] = []
    rewards: list[float] = []
    tokens: list[int] = []
    for state, reward in trajectories:
        visited = state.visited
        edges += [(e.signature, e.action, e.status is failed) for e in visited]
        tokens += [e.tokens for e in visited]
        rewards += [reward] * len(visited)
    graph.backup(graph.batch(edges, rewards, tokens))
    return len(edges)
