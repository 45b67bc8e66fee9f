"""Selection: the rule-based prior below the confidence threshold, else UCB.

    score(a) = mean + c*sqrt(ln(N+1)/n) - lambda*f/(n+f),   c = max(c_min, c0*2^(-N/half_life))

An action never tried scores +inf in paper mode (``untried_score`` None), else that finite
optimistic value; one that has only failed scores ``-lambda + c*sqrt(ln(N+1)/f)``. At
temperature 0 (the paper) the best score wins, ties go to candidate order (invokes in plan
order, then skips) and the propensity is 1. Above 0 the action is drawn from a softmax over
the scores with a uniform ``u`` the caller supplies, and the propensity is the exact
probability of the drawn action. With ``cheap_within`` a greedy choice of a tried action
gives way to the tried action of least token mean whose reward mean is within that margin
of the best (a two-stage rule: reward first, then tokens).

With ``baseline_tolerance`` (baseline-safe selection, docs/learning.md) the fixed
pipeline's action, the first invoke candidate, is the baseline: the best score is taken
when it is the baseline or a *proven* alternative (at least ``baseline_min_visits`` visits
at the node and ``mean - penalty - z*se`` at least the baseline's ``mean - penalty`` less
the tolerance, the SPIBB rule on counts with a conservative-bandit bound on values). Any
other best score is exploration: taken with probability ``explore_share`` (never on a
protected class or regime, and once per trajectory: at its first such decision, drawn or
not), else the proven action of best mean, the baseline by default.

``select`` serves one decision with Python floats (``ucb_score``); ``select_batch`` scores
many decisions in one pass of numpy (``ucb_scores``) for replays, off-policy evaluation and
benchmarks; it is greedy only. A property test checks that the two agree on every input.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from schemas.events import DecisionReason
from schemas.records import SelectionConfig
from services.policy.cells import SKIP_PREFIX
from services.policy.graph import PolicyGraph
from services.policy.shrinkage import coarse_visits, shared_estimates

INF = math.inf
PAPER_SELECTION = SelectionConfig()


class CandidateScore(NamedTuple):
    action: str
    score: float
    mean: float
    bonus: float
    penalty: float
    visits: int
    failures: int


@dataclass(frozen=True, slots=True)
class Selection:
    action: str
    index: int
    reason: DecisionReason
    propensity: float
    exploration_c: float
    node_visits: int
    scores: tuple[CandidateScore, ...]


class Guard(Enum):
    """How baseline-safe selection constrains one decision (``guard_for`` in the router)."""

    #: the scores alone decide (paper mode, or a class whose floor is open)
    FREE = "free"
    #: the node rule, and this decision may explore
    NODE = "node"
    #: the node rule, without exploration (the trajectory has had its one chance)
    NODE_ONLY = "node_only"
    #: the fixed pipeline's action (a closed class floor, a protected class or regime)
    BASELINE = "baseline"


def exploration_constant(
    node_visits: int | float, config: SelectionConfig = PAPER_SELECTION
) -> float:
    decay: float = 2.0 ** (-float(node_visits) / config.c_half_life)
    return max(config.c_min, config.c_initial * decay)


def ucb_scores(
    mean: npt.NDArray[np.float64],
    visits: npt.NDArray[np.float64],
    failures: npt.NDArray[np.float64],
    node_visits: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    failure_lambda: float,
    untried: float = INF,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(score, bonus, penalty) elementwise; ``node_visits`` and ``c`` broadcast; an untried
    action's bonus (and score) is ``untried``."""
    log_term = np.log(node_visits + 1.0)
    tried = visits > 0
    only_failed = ~tried & (failures > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bonus = np.where(
            tried,
            c * np.sqrt(log_term / visits),
            np.where(only_failed, c * np.sqrt(log_term / failures), untried),
        )
        penalty = np.where(
            tried,
            failure_lambda * failures / (visits + failures),
            np.where(only_failed, failure_lambda, 0.0),
        )
    score = np.where(tried, mean, 0.0) + bonus - penalty
    return score, bonus, penalty


def _prior_index(candidates: Sequence[str]) -> int:
    for i, action in enumerate(candidates):
        if not action.startswith(SKIP_PREFIX):
            return i
    raise ValueError("the rule-based prior needs at least one invoke candidate")


def score_candidates(
    graph: PolicyGraph,
    signature: str,
    candidates: Sequence[str],
    config: SelectionConfig = PAPER_SELECTION,
) -> tuple[CandidateScore, ...]:
    """The UCB view of every candidate at ``signature``, whether or not the prior acts."""
    row = graph.find_row(signature)
    n_node = 0 if row is None else int(graph.node_visits[row])
    c = exploration_constant(n_node, config)
    return _score_row(graph, signature, row, candidates, n_node, c, config)


def select(
    graph: PolicyGraph,
    signature: str,
    candidates: Sequence[str],
    config: SelectionConfig = PAPER_SELECTION,
    *,
    u: float | None = None,
    guard: Guard | None = None,
) -> Selection:
    """Choose one of ``candidates`` (legal actions, in tie order) at node ``signature``;
    ``u`` in [0, 1) drives the draw when ``config.temperature`` is above 0 or baseline-safe
    selection may explore. ``guard`` None, for a decision seen without its trajectory
    (``policy explain``, off-policy evaluation), is the node rule free to explore when
    ``config.baseline_floor`` is node, else no constraint: a class floor is read open."""
    if not candidates:
        raise ValueError("no candidate actions to select from")
    row = graph.find_row(signature)
    n_node = 0 if row is None else int(graph.node_visits[row])
    # shared evidence: confidence and exploration follow the visits the estimates draw on
    confidence = coarse_visits(graph, signature) if config.share_evidence else n_node
    c = exploration_constant(confidence, config)
    if guard is None:
        node_rule = config.baseline_tolerance is not None and config.baseline_floor == "node"
        guard = Guard.NODE if node_rule else Guard.FREE
    if guard is Guard.BASELINE:
        index = _prior_index(candidates)
        return Selection(candidates[index], index, DecisionReason.BASELINE_KEPT, 1.0, c, n_node, ())
    if config.mode == "fixed" or confidence < config.confidence_threshold:
        index = _prior_index(candidates)
        reason = (
            DecisionReason.FIXED_PIPELINE
            if config.mode == "fixed"
            else DecisionReason.RULE_BASED_PRIOR
        )
        return Selection(candidates[index], index, reason, 1.0, c, n_node, ())
    scores = _score_row(graph, signature, row, candidates, n_node, c, config)
    values = [s.score for s in scores]
    if config.temperature > 0.0:
        if u is None:
            raise ValueError("stochastic selection (temperature > 0) needs a uniform draw u")
        probabilities = softmax(values, config.temperature)
        chosen = draw_index(probabilities, u)
        propensity = probabilities[chosen]
    else:
        chosen = values.index(max(values))  # the first maximum: ties go to candidate order
        propensity = 1.0
        if config.cheap_within is not None and row is not None and scores[chosen].visits > 0:
            chosen = _cheapest_near_best(graph, row, candidates, scores, config.cheap_within)
        elif guard is not Guard.FREE:
            # exploration decays with the node's visits as the exploration constant does
            decay = 2.0 ** (-n_node / config.c_half_life)
            share = config.explore_share * decay if guard is Guard.NODE else 0.0
            best = chosen
            chosen, propensity = _baseline_safe(
                graph, row, candidates, scores, best, config, share, u
            )
            if chosen != best and chosen == _prior_index(candidates):
                reason = DecisionReason.BASELINE_KEPT
                return Selection(candidates[chosen], chosen, reason, propensity, c, n_node, scores)
    picked = scores[chosen]
    untried = picked.visits == 0 and picked.failures == 0
    reason = DecisionReason.UNTRIED_ACTION if untried else DecisionReason.GRAPH_RECOMMENDATION
    return Selection(candidates[chosen], chosen, reason, propensity, c, n_node, scores)


def softmax(scores: Sequence[float], temperature: float) -> list[float]:
    """Probabilities proportional to exp(score/temperature); when some scores are +inf, the
    limit: uniform over those."""
    top = max(scores)
    if top == INF:
        weights = [1.0 if s == INF else 0.0 for s in scores]
    else:
        weights = [math.exp((s - top) / temperature) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def draw_index(probabilities: Sequence[float], u: float) -> int:
    """Inverse-CDF draw; never returns an index of probability 0."""
    cumulative = 0.0
    last = 0
    for i, p in enumerate(probabilities):
        if p <= 0.0:
            continue
        cumulative += p
        last = i
        if u < cumulative:
            return i
    return last  # u within rounding of 1


def ucb_score(
    mean: float,
    visits: int,
    failures: int,
    log_term: float,
    c: float,
    failure_lambda: float,
    untried: float = INF,
) -> tuple[float, float, float]:
    """(score, bonus, penalty) of one action; ``log_term`` is ln(N+1)."""
    if visits > 0:
        bonus = c * math.sqrt(log_term / visits)
        penalty = failure_lambda * failures / (visits + failures)
        return mean + bonus - penalty, bonus, penalty
    if failures > 0:
        bonus = c * math.sqrt(log_term / failures)
        return bonus - failure_lambda, bonus, failure_lambda
    return untried, untried, 0.0


def _score_row(
    graph: PolicyGraph,
    signature: str,
    row: int | None,
    candidates: Sequence[str],
    n_node: int,
    c: float,
    config: SelectionConfig,
) -> tuple[CandidateScore, ...]:
    untried = INF if config.untried_score is None else config.untried_score
    if config.share_evidence:
        return _score_shared(graph, signature, row, candidates, n_node, c, config, untried)
    if row is None:
        return tuple(CandidateScore(a, untried, 0.0, untried, 0.0, 0, 0) for a in candidates)
    visits = graph.visits[row].tolist()
    failures = graph.failures[row].tolist()
    means = graph.mean_reward[row].tolist()
    log_term = math.log(n_node + 1.0)
    find = graph.find_col
    scores = []
    for action in candidates:
        col = find(action)
        if col is None:
            scores.append(CandidateScore(action, untried, 0.0, untried, 0.0, 0, 0))
            continue
        n, f, m = visits[col], failures[col], means[col]
        score, bonus, penalty = ucb_score(m, n, f, log_term, c, config.failure_lambda, untried)
        scores.append(CandidateScore(action, score, m if n else 0.0, bonus, penalty, n, f))
    return tuple(scores)


def _score_shared(
    graph: PolicyGraph,
    signature: str,
    row: int | None,
    candidates: Sequence[str],
    n_node: int,
    c: float,
    config: SelectionConfig,
    untried: float,
) -> tuple[CandidateScore, ...]:
    """UCB on the shared estimates: the shrunk mean, and a bonus over the evidence it
    weighs; an action nothing in the regime has tried keeps the untried score."""
    shared = shared_estimates(graph, signature, candidates)
    log_term = math.log(n_node + 1.0)
    scores = []
    for i, action in enumerate(candidates):
        col = graph.find_col(action)
        n = f = 0
        if row is not None and col is not None:
            n, f = int(graph.visits[row, col]), int(graph.failures[row, col])
        weight, mean = float(shared.weight[i]), float(shared.mean[i])
        if weight > 0.0:
            bonus = c * math.sqrt(log_term / weight) if log_term > 0.0 else 0.0
            penalty = config.failure_lambda * f / (n + f) if n + f else 0.0
            scores.append(
                CandidateScore(action, mean + bonus - penalty, mean, bonus, penalty, n, f)
            )
            continue
        score, bonus, penalty = ucb_score(0.0, 0, f, log_term, c, config.failure_lambda, untried)
        scores.append(CandidateScore(action, score, 0.0, bonus, penalty, n, f))
    return tuple(scores)


def _cheapest_near_best(
    graph: PolicyGraph,
    row: int,
    candidates: Sequence[str],
    scores: Sequence[CandidateScore],
    margin: float,
) -> int:
    """The index of the least-token candidate among the tried ones whose reward mean is
    within ``margin`` of the best tried mean; ties go to candidate order."""
    best = max(s.mean for s in scores if s.visits > 0)
    eligible = []
    for i, score in enumerate(scores):
        col = graph.find_col(candidates[i])
        if score.visits > 0 and col is not None and score.mean >= best - margin:
            eligible.append((float(graph.token_mean[row, col]), i))
    return min(eligible)[1]


def _baseline_safe(
    graph: PolicyGraph,
    row: int | None,
    candidates: Sequence[str],
    scores: Sequence[CandidateScore],
    best: int,
    config: SelectionConfig,
    share: float,
    u: float | None,
) -> tuple[int, float]:
    """(index, propensity) of baseline-safe selection given the index of the best score.
    Proven actions are the baseline and the alternatives whose lower bound clears its
    estimate less the tolerance; a best score among them is taken, any other with
    probability ``share``, else the proven one of best mean."""
    base = _prior_index(candidates)
    proven = [base]
    baseline = scores[base]
    if row is not None and baseline.visits > 0:
        floor = baseline.mean - baseline.penalty - (config.baseline_tolerance or 0.0)
        for i, score in enumerate(scores):
            col = graph.find_col(candidates[i])
            if i == base or col is None or score.visits < config.baseline_min_visits:
                continue
            weight = float(graph.weight[row, col])
            if weight <= 1.0:
                continue  # one reward has no spread to bound it with
            spread = math.sqrt(float(graph.reward_m2[row, col]) / (weight - 1.0) / weight)
            if score.mean - score.penalty - config.baseline_z * spread >= floor:
                proven.append(i)
    if best in proven:
        return best, 1.0
    kept = max(proven, key=lambda i: scores[i].mean - scores[i].penalty)
    if share <= 0.0:
        return kept, 1.0
    if u is None:
        raise ValueError("baseline-safe exploration (explore_share > 0) needs a uniform draw u")
    return (best, share) if u < share else (kept, 1.0 - share)


@dataclass(frozen=True, slots=True)
class BatchSelection:
    """Choices for a batch: index into each row's candidates, and the reason codes."""

    index: npt.NDArray[np.int64]
    prior: npt.NDArray[np.bool_]
    untried: npt.NDArray[np.bool_]
    propensity: npt.NDArray[np.float64]
    exploration_c: npt.NDArray[np.float64]


def select_batch(
    graph: PolicyGraph,
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    is_skip: npt.NDArray[np.bool_],
    config: SelectionConfig = PAPER_SELECTION,
) -> BatchSelection:
    """Select for many decisions at once.

    ``rows[b]`` is the node of decision b (-1 for an unseen signature); ``cols[b, k]`` the
    column of its k-th candidate (-1 pads a shorter list, -2 marks an action the graph has
    never seen); ``is_skip[b, k]`` whether that candidate is a skip. Greedy only: a
    stochastic config is refused rather than silently served its argmax.
    """
    if (
        config.temperature > 0.0
        or config.cheap_within is not None
        or config.baseline_tolerance is not None
        or config.share_evidence
    ):
        raise ValueError(
            "select_batch is plain greedy; stochastic, two-stage, baseline-safe or "
            "shared-evidence selection goes through select"
        )
    untried = INF if config.untried_score is None else config.untried_score
    valid = cols != -1
    have_row = rows >= 0
    safe_rows = np.where(have_row, rows, 0)
    node_visits = np.where(have_row, graph.node_visits[safe_rows], 0).astype(np.float64)
    c = np.maximum(config.c_min, config.c_initial * np.exp2(-node_visits / config.c_half_life))
    known = valid & (cols >= 0) & have_row[:, None]
    safe_cols = np.where(known, cols, 0)
    r = safe_rows[:, None]
    visits = np.where(known, graph.visits[r, safe_cols], 0).astype(np.float64)
    failures = np.where(known, graph.failures[r, safe_cols], 0).astype(np.float64)
    mean = np.where(known, graph.mean_reward[r, safe_cols], 0.0)
    score, _, _ = ucb_scores(
        mean, visits, failures, node_visits[:, None], c[:, None], config.failure_lambda, untried
    )
    score = np.where(valid, score, -np.inf)
    best = np.argmax(score, axis=1)
    prior_choice = np.argmax(valid & ~is_skip, axis=1)
    use_prior = (node_visits < config.confidence_threshold) | (config.mode == "fixed")
    index = np.where(use_prior, prior_choice, best)
    never_tried = (visits == 0) & (failures == 0)
    untried_choice = ~use_prior & never_tried[np.arange(len(best)), best]
    return BatchSelection(index.astype(np.int64), use_prior, untried_choice, np.ones(len(index)), c)
