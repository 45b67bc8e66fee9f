"""Off-policy evaluation: what a target policy would earn, estimated from the decisions
another policy logged, without running it.

A trajectory is a chain of decisions with one reward at its end. Its importance weight is
the product over its decisions of ``pi(a|s) / p``: the target's probability of the logged
action at the logged node, over the propensity the logging router recorded. Three
estimators, each a small class that adds one trajectory at a time and merges with another
of its kind (so partitions or files can be evaluated apart and combined):

* :class:`IPS`: the mean of ``w * r``. Unbiased when every action the target may take had a
  positive propensity; its variance grows with the weights.
* :class:`SNIPS`: ``sum(w * r) / sum(w)``. Slightly biased, far steadier; its effective
  sample size ``(sum w)^2 / sum w^2`` says how many logged trajectories the estimate is
  really worth.
* :class:`DoublyRobust`: per decision, the target graph's own value estimate corrected by
  the weighted error of that estimate on the logged action (Jiang & Li, 2016):
  ``V_t = v(s_t) + rho_t * (r_t + V_{t+1} - q(s_t, a_t))``, rewards only at the end. Unbiased
  like IPS whatever ``q`` is, and lower in variance the better ``q`` is.

``q(s, a)`` is the target graph's mean reward of the edge (0 for an edge it never tried),
``v(s)`` its expectation under the target's probabilities. Paper-mode selection is
deterministic, so its probabilities are 0 or 1: a trajectory the target would have left at
some decision weighs 0, and only logs with stochastic propensities (``temperature`` > 0, or
``explore_epsilon`` > 0) let a different policy be evaluated at all.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from schemas.events import Decision, DecisionReason, RewardObserved, TrajectoryCompleted
from schemas.records import Regime, RewardConfig, SelectionConfig
from services.policy.graph import PolicyGraph
from services.policy.reward import PAPER_REWARD, hybrid_reward
from services.policy.selection import Guard, select, softmax
from services.policy.trajectory import class_guard, class_withheld

_DETERMINISTIC = (DecisionReason.RULE_BASED_PRIOR, DecisionReason.FIXED_PIPELINE)


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One decision as the router logged it: where, among what, what, and how likely."""

    signature: str
    candidates: tuple[str, ...]
    action: str
    propensity: float


@dataclass(frozen=True, slots=True)
class LoggedTrajectory:
    trajectory_id: str
    decisions: tuple[LoggedDecision, ...]
    reward: float
    task_class: str | None = None
    regime: Regime | None = None


@dataclass
class Joined:
    """The logged trajectories that events make whole, and how many could not be used."""

    trajectories: list[LoggedTrajectory] = field(default_factory=list)
    unfinished: int = 0
    """Trajectories with decisions but no TrajectoryCompleted (still running, or cut off)."""
    unrewarded: int = 0
    """Finished trajectories no RewardObserved scored."""
    incomplete: int = 0
    """Finished trajectories some of whose decisions are missing from the events, or list
    no candidates (logged by a router older than the candidate log)."""


def join(
    events: Iterable[Decision | TrajectoryCompleted | RewardObserved],
    reward: RewardConfig = PAPER_REWARD,
) -> Joined:
    """Whole logged trajectories from the three topics' events: every decision (duplicates,
    as redelivery makes them, count once), the TrajectoryCompleted for tokens and retries,
    and the first RewardObserved (the one the learner joins) for the judged quality."""
    decisions: dict[str, dict[int, Decision]] = defaultdict(dict)
    completed: dict[str, TrajectoryCompleted] = {}
    rewards: dict[str, RewardObserved] = {}
    for event in events:
        if isinstance(event, Decision):
            decisions[event.trajectory_id].setdefault(event.step, event)
        elif isinstance(event, TrajectoryCompleted):
            completed.setdefault(event.trajectory_id, event)
        else:
            rewards.setdefault(event.trajectory_id, event)
    joined = Joined(unfinished=sum(1 for t in decisions if t not in completed))
    for trajectory_id, end in completed.items():
        steps = decisions.get(trajectory_id, {})
        if trajectory_id not in rewards:
            joined.unrewarded += 1
        elif sorted(steps) != list(range(end.steps)) or not all(d.scores for d in steps.values()):
            joined.incomplete += 1
        else:
            value = hybrid_reward(rewards[trajectory_id].quality, end.tokens, end.retries, reward)
            logged = tuple(_logged(steps[step]) for step in range(end.steps))
            joined.trajectories.append(
                LoggedTrajectory(trajectory_id, logged, value, end.task_class, end.regime)
            )
    return joined


def _logged(decision: Decision) -> LoggedDecision:
    candidates = tuple(score.action for score in decision.scores)
    return LoggedDecision(decision.signature, candidates, decision.action, decision.propensity)


@dataclass(frozen=True)
class TargetPolicy:
    """The policy being evaluated: a graph and the selection rules that read it. With
    ``floors`` a class floor and protected work constrain a trajectory as a router serving
    this graph would (``guard``); without, decisions are read free (``policy evaluate``)."""

    graph: PolicyGraph
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    floors: bool = False
    model: PolicyGraph | None = None
    """The reward model ``q`` of the doubly robust estimate: a graph fit on this world's
    rewards (None: the target's own graph, which is right when it was learned here)."""

    def guard(self, trajectory: LoggedTrajectory) -> Guard | None:
        """How this policy's class floor or protections constrain the trajectory's
        decisions (None: read free, or the node rule, which depends on the trajectory)."""
        config = self.selection
        if not self.floors or config.baseline_tolerance is None:
            return None
        task_class, regime = trajectory.task_class, trajectory.regime
        protected = task_class in config.protected_classes or regime in config.protected_regimes
        if config.baseline_floor == "node" and not protected:
            return None
        return class_guard(task_class, regime, self.graph, config)

    def withheld(self, trajectory: LoggedTrajectory) -> frozenset[str]:
        """The actions this policy's action veto withholds from the trajectory's class (none
        without ``floors``); read without the trajectory, it retries no confounded action."""
        if not self.floors:
            return frozenset()
        return class_withheld(trajectory.task_class, self.graph, self.selection)[0]

    def probabilities(
        self,
        signature: str,
        candidates: Sequence[str],
        guard: Guard | None = None,
        withheld: frozenset[str] = frozenset(),
    ) -> list[float]:
        """The probability that the router would pick each candidate at this node; a
        ``withheld`` candidate is not offered (probability 0) unless all are."""
        offered = [a for a in candidates if a not in withheld] or list(candidates)
        if len(offered) < len(candidates):
            inner = self.probabilities(signature, offered, guard)
            by_action = dict(zip(offered, inner, strict=True))
            return [by_action.get(a, 0.0) for a in candidates]
        config = self.selection
        epsilon = config.explore_epsilon
        rules = config.model_copy(update={"explore_epsilon": 0.0}) if epsilon else config
        chosen = select(self.graph, signature, candidates, rules, u=0.0, guard=guard)
        if config.temperature > 0.0 and chosen.reason not in _DETERMINISTIC:
            return softmax([s.score for s in chosen.scores], config.temperature)
        if epsilon and chosen.reason is not DecisionReason.BASELINE_KEPT:
            share = epsilon / len(candidates)
            return [
                share + (1.0 - epsilon if i == chosen.index else 0.0)
                for i in range(len(candidates))
            ]
        return [1.0 if i == chosen.index else 0.0 for i in range(len(candidates))]

    def value(self, signature: str, action: str) -> float:
        """The graph's estimate of the reward that follows this action here (0 if untried)."""
        edge = (self.model or self.graph).edge(signature, action)
        return edge.mean_reward if edge.visits else 0.0


@dataclass(frozen=True, slots=True)
class Weighted:
    """What one logged trajectory contributes: its importance weight and reward, and its
    doubly robust value."""

    weight: float
    reward: float
    doubly_robust: float


def weigh(target: TargetPolicy, trajectory: LoggedTrajectory) -> Weighted:
    """Importance weight and doubly robust value of one logged trajectory under ``target``."""
    weight = 1.0
    ratios: list[float] = []
    corrections: list[tuple[float, float]] = []  # (v(s_t), q(s_t, a_t)) per decision
    guard = target.guard(trajectory)
    withheld = target.withheld(trajectory)
    for decision in trajectory.decisions:
        if decision.action not in decision.candidates:
            raise ValueError(
                f"trajectory {trajectory.trajectory_id}: {decision.action} is not among the "
                f"logged candidates at {decision.signature}"
            )
        probabilities = target.probabilities(
            decision.signature, decision.candidates, guard, withheld
        )
        values = [target.value(decision.signature, a) for a in decision.candidates]
        chosen = decision.candidates.index(decision.action)
        ratio = probabilities[chosen] / decision.propensity
        ratios.append(ratio)
        weight *= ratio
        expected = sum(p * v for p, v in zip(probabilities, values, strict=True))
        corrections.append((expected, values[chosen]))
    following = 0.0
    last = len(ratios) - 1
    for t in range(last, -1, -1):
        expected, taken = corrections[t]
        reward = trajectory.reward if t == last else 0.0
        following = expected + ratios[t] * (reward + following - taken)
    return Weighted(weight, trajectory.reward, following if ratios else trajectory.reward)


@dataclass
class _Mean:
    """The mean over trajectories of one number each (``term``), with its standard error."""

    count: int = 0
    total: float = 0.0
    total_squares: float = 0.0

    def term(self, item: Weighted) -> float:
        raise NotImplementedError

    def add(self, item: Weighted) -> None:
        term = self.term(item)
        self.count += 1
        self.total += term
        self.total_squares += term * term

    def merge(self, other: Self) -> Self:
        return type(self)(
            self.count + other.count,
            self.total + other.total,
            self.total_squares + other.total_squares,
        )

    @property
    def estimate(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def standard_error(self) -> float:
        return _standard_error(self.count, self.total, self.total_squares)


class IPS(_Mean):
    """The mean of ``w * r``."""

    def term(self, item: Weighted) -> float:
        return item.weight * item.reward


class DoublyRobust(_Mean):
    """The mean of the trajectories' doubly robust values."""

    def term(self, item: Weighted) -> float:
        return item.doubly_robust


class LoggedMean(_Mean):
    """What the logging policy itself earned: every trajectory at weight 1."""

    def term(self, item: Weighted) -> float:
        return item.reward


@dataclass
class SNIPS:
    """``sum(w * r) / sum(w)``, and the effective sample size of the weights."""

    weights: float = 0.0
    weight_squares: float = 0.0
    total: float = 0.0

    def add(self, item: Weighted) -> None:
        self.weights += item.weight
        self.weight_squares += item.weight * item.weight
        self.total += item.weight * item.reward

    def merge(self, other: "SNIPS") -> "SNIPS":
        return SNIPS(
            self.weights + other.weights,
            self.weight_squares + other.weight_squares,
            self.total + other.total,
        )

    @property
    def estimate(self) -> float:
        return self.total / self.weights if self.weights > 0.0 else math.nan

    @property
    def effective_sample_size(self) -> float:
        return self.weights**2 / self.weight_squares if self.weight_squares > 0.0 else 0.0


def _standard_error(count: int, total: float, squares: float) -> float:
    if count < 2:
        return math.nan
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0) * count / (count - 1)
    return math.sqrt(variance / count)


@dataclass
class Evaluation:
    """The three estimates of one target over one log, and the logged policy's own mean."""

    ips: IPS = field(default_factory=IPS)
    snips: SNIPS = field(default_factory=SNIPS)
    doubly_robust: DoublyRobust = field(default_factory=DoublyRobust)
    logged: LoggedMean = field(default_factory=LoggedMean)
    matched: int = 0
    """Trajectories the target could have produced (weight above 0)."""

    def add(self, item: Weighted) -> None:
        self.ips.add(item)
        self.snips.add(item)
        self.doubly_robust.add(item)
        self.logged.add(item)
        self.matched += item.weight > 0.0

    def merge(self, other: "Evaluation") -> "Evaluation":
        return Evaluation(
            self.ips.merge(other.ips),
            self.snips.merge(other.snips),
            self.doubly_robust.merge(other.doubly_robust),
            self.logged.merge(other.logged),
            self.matched + other.matched,
        )


def evaluate(target: TargetPolicy, trajectories: Iterable[LoggedTrajectory]) -> Evaluation:
    evaluation = Evaluation()
    for trajectory in trajectories:
        evaluation.add(weigh(target, trajectory))
    return evaluation


__all__ = [
    "IPS",
    "SNIPS",
    "DoublyRobust",
    "Evaluation",
    "Joined",
    "LoggedDecision",
    "LoggedMean",
    "LoggedTrajectory",
    "TargetPolicy",
    "Weighted",
    "evaluate",
    "join",
    "weigh",
]
