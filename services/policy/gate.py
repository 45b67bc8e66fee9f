"""The off-policy gate: whether a new policy may replace the one the routers act with.

The learner keeps a bounded window of the trajectories the routers logged (``GateWindow``:
each trajectory's Decisions, its TrajectoryCompleted and its RewardObserved, made whole by
``ope.join``), estimates the new policy's value on the trajectories of the acting policy
with the doubly robust estimator (``gate_figures``), and puts the figures in the snapshot.
A router adopts the snapshot only when ``gate_refusal`` finds nothing against it: enough
trajectories behind the estimate, and the lower end of its 95% interval not below what the
acting policy earned on the same trajectories less a tolerance.

The acting policy is the version that logged the newest whole trajectory; the figures are
built on that version's trajectories alone, so its own mean is an on-policy estimate.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass

from schemas.events import Decision, RewardObserved, TrajectoryCompleted
from schemas.policy_file import GateFigures
from schemas.records import RewardConfig
from services.policy.analysis import Z95
from services.policy.ope import LoggedTrajectory, TargetPolicy, evaluate, join
from services.policy.reward import PAPER_REWARD

LoggedEvent = Decision | TrajectoryCompleted | RewardObserved

#: Why the gate keeps the acting policy (the router's refusal reasons).
BELOW_ACTING_POLICY = "below_acting_policy"
TOO_FEW_TRAJECTORIES = "too_few_decisions"
GATE_REFUSALS = (BELOW_ACTING_POLICY, TOO_FEW_TRAJECTORIES)


@dataclass(frozen=True, slots=True)
class GateConfig:
    """``tolerance``: how far below the acting policy's estimate the lower bound may lie;
    ``min_trajectories``: the logged trajectories the gate needs before it can judge."""

    tolerance: float = 0.02
    min_trajectories: int = 100


class GateWindow:
    """The last ``capacity`` whole logged trajectories, each with the policy version that
    logged it, and the events of at most ``capacity`` trajectories still being joined (the
    oldest of them gives way first: a trajectory whose decision never comes)."""

    def __init__(self, capacity: int, reward: RewardConfig = PAPER_REWARD) -> None:
        if capacity < 1:
            raise ValueError("the gate's window must hold at least one trajectory")
        self.capacity = capacity
        self.reward = reward
        self._joining: OrderedDict[str, list[LoggedEvent]] = OrderedDict()
        self._whole: deque[tuple[int, LoggedTrajectory]] = deque(maxlen=capacity)

    def add(self, event: LoggedEvent) -> None:
        """Take one event; a trajectory whose completion, reward and every decision are in
        is joined and leaves the joining set. The three come from three topics, read apart:
        any of them may come last."""
        events = self._joining.setdefault(event.trajectory_id, [])
        events.append(event)
        if len(self._joining) > self.capacity:
            self._joining.popitem(last=False)
        ended = next((e for e in events if isinstance(e, TrajectoryCompleted)), None)
        if ended is None or not any(isinstance(e, RewardObserved) for e in events):
            return
        if len({e.step for e in events if isinstance(e, Decision)}) < ended.steps:
            return
        del self._joining[event.trajectory_id]
        for trajectory in join(events, self.reward).trajectories:
            self._whole.append((ended.policy_version, trajectory))

    @property
    def acting_version(self) -> int | None:
        """The version that logged the newest whole trajectory (None: no trajectory yet)."""
        return self._whole[-1][0] if self._whole else None

    def acting(self) -> list[LoggedTrajectory]:
        """The whole trajectories the acting policy logged."""
        version = self.acting_version
        return [t for v, t in self._whole if v == version]


def gate_figures(target: TargetPolicy, window: GateWindow) -> GateFigures:
    """The doubly robust value of ``target`` on the acting policy's logged trajectories,
    the lower end of its 95% interval, and the acting policy's own mean on them."""
    logged = window.acting()
    evaluation = evaluate(target, logged)
    dr = evaluation.doubly_robust
    estimate = dr.estimate if logged else None
    lower = estimate - Z95 * dr.standard_error if estimate is not None and len(logged) > 1 else None
    return GateFigures(
        acting_version=window.acting_version or 0,
        trajectories=len(logged),
        estimate=estimate,
        lower_bound=lower,
        acting_estimate=evaluation.logged.estimate if logged else None,
    )


def gate_refusal(figures: GateFigures | None, config: GateConfig) -> str | None:
    """Why a snapshot with these figures must not replace the acting policy, as one of
    ``GATE_REFUSALS``; None when it may. A snapshot nobody evaluated has no trajectories
    behind it."""
    if figures is None or figures.trajectories < max(config.min_trajectories, 2):
        return TOO_FEW_TRAJECTORIES
    if figures.lower_bound is None or figures.acting_estimate is None:
        return TOO_FEW_TRAJECTORIES
    if figures.lower_bound < figures.acting_estimate - config.tolerance:
        return BELOW_ACTING_POLICY
    return None


def describe(figures: GateFigures | None) -> str:
    """The figures in words, for a log line."""
    if figures is None:
        return "the snapshot carries no gate figures"
    return (
        f"{figures.trajectories} trajectories of version {figures.acting_version}: estimate "
        f"{_number(figures.estimate)}, lower bound {_number(figures.lower_bound)}, acting "
        f"policy {_number(figures.acting_estimate)}"
    )


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"
