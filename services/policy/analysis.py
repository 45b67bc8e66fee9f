"""Reading a learned policy, for audits: why it takes a decision at a node, which actions it
prefers per regime, whether logged decisions fit its fold, and what the off-policy
estimates of it say. Pure functions over the policy document and graph; ``agensbus policy``
prints what they find."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from schemas.events import DecisionReason
from schemas.policy_file import NodeRecord
from schemas.records import FoldSpec, Regime, SelectionConfig
from services.policy.cells import parse_action
from services.policy.graph import PolicyGraph
from services.policy.ope import Evaluation, LoggedTrajectory
from services.policy.selection import CandidateScore, Selection, score_candidates, select
from services.policy.signature import Signature

#: z of a two-sided 95% normal interval.
Z95 = 1.96

# --- one decision ----------------------------------------------------------------------------


def fold_mismatch(signature: Signature, fold: FoldSpec) -> str | None:
    """Why ``signature`` cannot be a node of a policy with this fold, or None if it can."""
    if signature.version != fold.version:
        return f"it has fold version {signature.version}, the policy's fold is {fold.version}"
    keys = [key for key, _ in signature.extra]
    if keys != fold.extra_keys:
        return f"it carries keys {keys}, the policy's fold lists {fold.extra_keys}"
    top = round(1.0 / fold.granularity)
    if max(signature.buckets) > top:
        return (
            f"bucket {max(signature.buckets)} is above {top}, the largest at granularity "
            f"{fold.granularity}"
        )
    return None


def prior_acts(config: SelectionConfig, node_visits: int) -> bool:
    """Whether the rule-based prior, not UCB, chooses at a node with this many visits."""
    return config.mode == "fixed" or node_visits < config.confidence_threshold


def why_prior_acts(config: SelectionConfig, node_visits: int) -> str:
    """Why the prior chooses, in words, for a node where :func:`prior_acts` holds."""
    return (
        "selection mode is fixed"
        if config.mode == "fixed"
        else f"N = {node_visits} < confidence threshold {config.confidence_threshold}"
    )


def unchoosable(candidates: Sequence[str], config: SelectionConfig, node_visits: int) -> bool:
    """True when the prior acts and every candidate is a skip: the prior never skips, so the
    router would never be offered this candidate list."""
    return prior_acts(config, node_visits) and all(parse_action(a)[0] for a in candidates)


@dataclass(frozen=True, slots=True)
class Explanation:
    """One replayed decision and the UCB scores behind it."""

    signature: str
    in_policy: bool
    config: SelectionConfig
    selection: Selection
    scores: tuple[CandidateScore, ...]

    @property
    def prior_acts(self) -> bool:
        return prior_acts(self.config, self.selection.node_visits)

    @property
    def reason_text(self) -> str:
        """The selection's reason in words."""
        reason = self.selection.reason
        if reason is DecisionReason.FIXED_PIPELINE:
            return "selection mode is fixed: the first candidate that is not a skip, always"
        if reason is DecisionReason.RULE_BASED_PRIOR:
            why = why_prior_acts(self.config, self.selection.node_visits)
            return f"{why}: the rule-based prior acts (first candidate that is not a skip)"
        if reason is DecisionReason.UNTRIED_ACTION:
            return "an untried candidate scores +inf; the first in candidate order is chosen"
        return "highest UCB score; ties go to candidate order"

    @property
    def notes(self) -> list[str]:
        """What a reader of the scores should keep in mind."""
        notes = []
        if not self.in_policy:
            notes.append("signature not in the policy: N = 0, so the rule-based prior acts")
        if self.prior_acts:
            notes.append("scores are shown for information: below the threshold they do not act")
        return notes


def explain_decision(
    graph: PolicyGraph, config: SelectionConfig, signature: str, candidates: Sequence[str]
) -> Explanation:
    """Select exactly as the router does, and score every candidate even when the prior acts
    (the scores then say what UCB would do once the node is confident)."""
    selection = select(graph, signature, candidates, config)
    scores = selection.scores or score_candidates(graph, signature, candidates, config)
    in_policy = graph.find_row(signature) is not None
    return Explanation(signature, in_policy, config, selection, scores)


# --- what a policy prefers -------------------------------------------------------------------


@dataclass(slots=True)
class ActionSummary:
    """One action aggregated over the nodes of a group."""

    action: str
    visits: int = 0
    failures: int = 0
    reward_sum: float = 0.0
    greedy_nodes: int = 0

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.visits if self.visits else None

    @property
    def failure_rate(self) -> float | None:
        attempts = self.visits + self.failures
        return self.failures / attempts if attempts else None

    def preference(self) -> tuple[int, float, int, str]:
        mean = -math.inf if self.mean_reward is None else self.mean_reward
        return (-self.greedy_nodes, -mean, -self.visits, self.action)


@dataclass(slots=True)
class GroupSummary:
    """The nodes of one regime (and one value of each extra fold key)."""

    regime: Regime
    keys: tuple[tuple[str, str], ...]
    nodes: int = 0
    visits: int = 0
    actions: dict[str, ActionSummary] = field(default_factory=dict)

    def ranked(self) -> list[ActionSummary]:
        """Most preferred first: greedy at more nodes, then higher mean, then more visits."""
        return sorted(self.actions.values(), key=ActionSummary.preference)

    def add(self, node: NodeRecord) -> None:
        self.nodes += 1
        self.visits += node.visits
        for action, edge in node.edges.items():
            summary = self.actions.setdefault(action, ActionSummary(action))
            summary.visits += edge.visits
            summary.failures += edge.failures
            summary.reward_sum += edge.visits * edge.mean_reward
        for action in greedy_actions(node):
            self.actions[action].greedy_nodes += 1


def greedy_actions(node: NodeRecord) -> list[str]:
    """The actions with the highest mean among the node's completed edges (all, if tied)."""
    means = {a: e.mean_reward for a, e in node.edges.items() if e.visits > 0}
    if not means:
        return []
    best = max(means.values())
    return [a for a, m in means.items() if m == best]


def summarize(nodes: Iterable[NodeRecord], regime: Regime | None = None) -> list[GroupSummary]:
    """Group nodes by regime and extra key values; groups come in regime order."""
    groups: dict[tuple[Regime, tuple[tuple[str, str], ...]], GroupSummary] = {}
    for node in nodes:
        signature = Signature.parse(node.signature)
        if regime is not None and signature.regime is not regime:
            continue
        key = (signature.regime, signature.extra)
        groups.setdefault(key, GroupSummary(*key)).add(node)
    order = list(Regime)
    return [groups[k] for k in sorted(groups, key=lambda k: (order.index(k[0]), k[1]))]


# --- off-policy evaluation -------------------------------------------------------------------


def logged_fold_mismatch(
    trajectories: Iterable[LoggedTrajectory], fold: FoldSpec
) -> tuple[str, str] | None:
    """The first logged trajectory with a decision whose signature cannot be a node of a
    policy with this fold, and why; None when every one fits."""
    for trajectory in trajectories:
        for decision in trajectory.decisions:
            try:
                why = fold_mismatch(Signature.parse(decision.signature), fold)
            except ValueError as error:
                why = str(error)
            if why is not None:
                return trajectory.trajectory_id, why
    return None


@dataclass(frozen=True, slots=True)
class Figure:
    """One estimate of an evaluation, the half-width of its 95% interval where the
    estimator has one, and what the estimator is."""

    estimator: str
    estimate: float
    half_width: float | None
    note: str


def evaluation_figures(evaluation: Evaluation) -> tuple[Figure, ...]:
    ips, snips, dr = evaluation.ips, evaluation.snips, evaluation.doubly_robust
    ess = f"effective sample size {snips.effective_sample_size:.1f}"
    return (
        Figure("logged policy", evaluation.logged.estimate, None, "what the logging policy earned"),
        Figure("IPS", ips.estimate, Z95 * ips.standard_error, "unbiased, high variance"),
        Figure("SNIPS", snips.estimate, None, ess),
        Figure(
            "doubly robust",
            dr.estimate,
            Z95 * dr.standard_error,
            "the graph's values, corrected",
        ),
    )
