"""Backing a trajectory's reward up into the policy graph."""

from collections.abc import Sequence

from schemas.records import RewardConfig, StepStatus, TrajectoryState
from services.policy.graph import PolicyGraph
from services.policy.reward import PAPER_REWARD


def backup(
    graph: PolicyGraph,
    trajectories: Sequence[tuple[TrajectoryState, float]],
    config: RewardConfig = PAPER_REWARD,
    confidences: Sequence[float] | None = None,
) -> int:
    """Back each trajectory's reward up, in full, into every edge it visited (paper mode).

    Failed invokes count as failures of their edge and carry no reward. With
    ``config.node_visit_once`` a signature's visits grow by one per trajectory however many
    decisions were taken there: skips change neither handoff nor beliefs, so a skip chain
    revisits one signature and would otherwise inflate N (and shrink exploration) for
    nothing. ``config.recency_floor`` discounts old rewards (``PolicyGraph.backup``).
    With ``config.confidence_weighted`` each trajectory's reward weighs its judge's
    confidence (``confidences``, one per trajectory) in its edges' counts and sums.
    Returns the number of edge updates applied.
    """
    failed = StepStatus.FAILED
    edges: list[tuple[str, str, bool]] = []
    rewards: list[float] = []
    tokens: list[int] = []
    counts_visit: list[bool] = []
    weights: list[float] = []
    if config.confidence_weighted and confidences is None:
        raise ValueError("confidence-weighted backup needs the judge's confidences")
    for i, (state, reward) in enumerate(trajectories):
        visited = state.visited
        edges += [(e.signature, e.action, e.status is failed) for e in visited]
        tokens += [e.tokens for e in visited]
        rewards += [reward] * len(visited)
        if confidences is not None:
            weights += [confidences[i]] * len(visited)
        seen: set[str] = set()
        for e in visited:
            counts_visit.append(e.signature not in seen)
            seen.add(e.signature)
    batch = graph.batch(
        edges,
        rewards,
        tokens,
        counts_visit=counts_visit if config.node_visit_once else None,
        weights=weights if config.confidence_weighted else None,
    )
    graph.backup(batch, recency_floor=config.recency_floor)
    return len(edges)
