"""Backing a trajectory's reward up into the policy graph."""

from collections.abc import Sequence
from itertools import accumulate

from schemas.records import RewardConfig, StepStatus, TrajectoryState
from services.policy.cells import CellPool, parse_action
from services.policy.floor import record_classes
from services.policy.graph import PolicyGraph
from services.policy.reward import PAPER_REWARD, token_cost


def backup(
    graph: PolicyGraph,
    trajectories: Sequence[tuple[TrajectoryState, float]],
    config: RewardConfig = PAPER_REWARD,
    confidences: Sequence[float] | None = None,
    *,
    floor: tuple[CellPool, Sequence[float]] | None = None,
) -> int:
    """Back each trajectory's reward up, in full, into every edge it visited (paper mode).

    Failed invokes count as failures of their edge and carry no reward. With
    ``config.node_visit_once`` a signature's visits grow by one per trajectory however many
    decisions were taken there: skips change neither handoff nor beliefs, so a skip chain
    revisits one signature and would otherwise inflate N (and shrink exploration) for
    nothing. ``config.recency_floor`` discounts old rewards (``PolicyGraph.backup``).
    With ``config.confidence_weighted`` each trajectory's reward weighs its judge's
    confidence (``confidences``, one per trajectory) in its edges' counts and sums.
    With ``floor`` (the pool and each trajectory's judged quality) every trajectory of a
    known class also counts in its class floor (``services.policy.floor``).
    Returns the number of edge updates applied.
    """
    failed = StepStatus.FAILED
    edges: list[tuple[str, str, bool]] = []
    rewards: list[float] = []
    tokens: list[int] = []
    counts_visit: list[bool] = []
    weights: list[float] = []
    retries: list[float] = []
    if config.confidence_weighted and confidences is None:
        raise ValueError("confidence-weighted backup needs the judge's confidences")
    for i, (state, realized) in enumerate(trajectories):
        visited = state.visited
        reward = (
            expected_charge_reward(graph, state, realized, config)
            if config.expected_retries or config.expected_tokens
            else realized
        )
        retries += [float(e.retries) for e in visited]
        edges += [(e.signature, e.action, e.status is failed) for e in visited]
        own = [e.tokens for e in visited]
        tokens += list(accumulate(own[::-1]))[::-1] if config.tokens_to_go else own
        rewards += (
            greedy_continuation_rewards(graph, state, reward)
            if config.greedy_continuation
            else [reward] * len(visited)
        )
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
        retries=retries if config.expected_retries else None,
    )
    graph.backup(batch, recency_floor=config.recency_floor)
    if floor is not None:
        pool, qualities = floor
        states = [state for state, _ in trajectories]
        record_classes(graph.classes, pool, list(zip(states, qualities, strict=True)))
    return len(edges)


def expected_charge_reward(
    graph: PolicyGraph, state: TrajectoryState, reward: float, config: RewardConfig
) -> float:
    """``reward`` with its realized retry charge (``config.expected_retries``) and token cost
    (``config.expected_tokens``) swapped for the expected ones: the sums over the visited
    edges of their means so far. A first visit counts its own retries, a first or failed
    visit its own tokens (an edge's token mean is over completed visits)."""
    retries = tokens = 0.0
    for e in state.visited:
        mean_retries = graph.expected_retries(e.signature, e.action)
        retries += e.retries if mean_retries is None else mean_retries
        stats = graph.edge(e.signature, e.action)
        completed = stats.visits > 0 and e.status is not StepStatus.FAILED
        tokens += stats.token_mean if completed else e.tokens
    if config.expected_retries:
        reward += config.retry_penalty * (state.retries - retries)
    if config.expected_tokens:
        reward += config.cost_weight * (
            token_cost(state.tokens_used, config) - token_cost(tokens, config)
        )
    return reward


def greedy_continuation_rewards(
    graph: PolicyGraph, state: TrajectoryState, reward: float
) -> list[float]:
    """Per visited edge, ``reward`` plus what every later step gave up against the greedy
    choice at its node: the best mean among the tried actions of the cell decided there,
    less the mean of the action taken (0 when that action is untried or the step is
    first of its kind). The last edge gets ``reward`` itself."""
    gaps = [_greedy_gap(graph, e.signature, e.action) for e in state.visited]
    rewards = []
    later = 0.0
    for gap in reversed(gaps):
        rewards.append(reward + later)
        later += gap
    return rewards[::-1]


def _greedy_gap(graph: PolicyGraph, signature: str, action: str) -> float:
    taken = graph.edge(signature, action)
    if taken.visits == 0:
        return 0.0
    _, cell = parse_action(action)
    best = max(
        stats.mean_reward
        for other, stats in graph.edges_of(signature).items()
        if stats.visits > 0 and parse_action(other)[1] == cell
    )
    return best - taken.mean_reward
