"""Step deadlines: an invoke whose StepOutcome does not come back within the step timeout is
answered by the router itself, with a failed outcome of kind ``timeout``. No I/O.

The router keeps nothing per trajectory between steps, so the deadlines are derived from the
log rather than from timers: an invoke Decision read from the decisions topic is due at its
``produced_at`` plus the timeout, and any StepOutcome read from the outcomes topic for the
same (trajectory, step) settles it. After a restart the router reads both topics again from a
window back (``horizon_s``) and so knows every invoke still waiting, however long it was down
(within the window). The timeout outcome goes through the outcomes topic like any other; its
event id is derived from the decision id, so every replica that times a step out publishes
the same event, and the router absorbs the first outcome of a step and drops the rest. A real
outcome that arrives once the step timed out is *late*: it is ignored.
"""

import hashlib
import heapq
from collections import OrderedDict

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from schemas.events import ActionKind, Decision, FailureKind, StepOutcome
from services.policy import StepResult
from services.policy.outcomes import Execution
from services.router.core import RecentSteps, decision_id
from services.worker.invoke import outcome_of

Key = tuple[str, int]


def timeout_event_id(decision_id: str) -> str:
    """The event id of the timeout outcome of a decision: the same on every replica."""
    return hashlib.blake2b(f"step-timeout:{decision_id}".encode(), digest_size=16).hexdigest()


def timeout_outcome(decision: Decision, now: float) -> StepOutcome:
    """The failed step the router records for ``decision`` when nobody answered it: nothing
    spent, the state echoed as a worker would."""
    waited = max(0.0, now - decision.produced_at.timestamp())
    execution = Execution(StepResult(succeeded=False), 0, 0, waited, 0, FailureKind.TIMEOUT)
    outcome = outcome_of(decision, execution)
    return outcome.model_copy(update={"event_id": timeout_event_id(decision.decision_id)})


class _Head(BaseModel):
    """The fields of a Decision or StepOutcome the deadlines need; the state (most of the
    bytes) is left unvalidated until a step actually times out."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    produced_at: AwareDatetime
    trajectory_id: str
    step: int
    action_kind: ActionKind | None = None


def _head(raw: bytes | None) -> _Head | None:
    if raw is None:
        return None
    try:
        return _Head.model_validate_json(raw)
    except ValidationError:
        # Not the router's to judge here: the main consumer dead-letters bad outcomes.
        return None


class Deadlines:
    """The invokes waiting for their outcome, and the steps recently answered or timed out.

    Memory is bounded: answers are forgotten ``horizon_s`` after they were produced (older
    decisions are never read again), timed-out steps beyond ``capacity``."""

    def __init__(self, timeout_s: float, horizon_s: float, capacity: int = 200_000) -> None:
        if timeout_s <= 0 or horizon_s < timeout_s:
            raise ValueError("the timeout must be positive and the horizon at least as long")
        self.timeout_s = timeout_s
        self.horizon_s = horizon_s
        self._waiting: dict[Key, bytes] = {}
        self._due: list[tuple[float, Key]] = []
        self._answered: OrderedDict[Key, float] = OrderedDict()
        self._timed_out = RecentSteps(capacity)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def decision(self, raw: bytes | None) -> None:
        """A record of the decisions topic: an invoke starts waiting unless already settled."""
        head = _head(raw)
        if raw is None or head is None or head.action_kind is not ActionKind.INVOKE:
            return
        key = (head.trajectory_id, head.step)
        if key in self._answered or key in self._timed_out or key in self._waiting:
            return
        self._waiting[key] = raw
        heapq.heappush(self._due, (head.produced_at.timestamp() + self.timeout_s, key))

    def outcome(self, raw: bytes | None) -> None:
        """A record of the outcomes topic settles its step, whoever produced it."""
        head = _head(raw)
        if head is None:
            return
        key = (head.trajectory_id, head.step)
        self._waiting.pop(key, None)
        if head.event_id == timeout_event_id(decision_id(*key)):
            self._timed_out.add(key)
        else:
            self._answered[key] = head.produced_at.timestamp()
            self._answered.move_to_end(key)

    def due(self, now: float) -> list[Decision]:
        """The waiting invokes whose deadline has passed at ``now``, oldest first. Each stays
        waiting until :meth:`timed_out` confirms its timeout outcome was published."""
        due: list[Decision] = []
        while self._due and self._due[0][0] <= now:
            _, key = heapq.heappop(self._due)
            raw = self._waiting.get(key)
            if raw is not None:
                due.append(Decision.model_validate_json(raw))
        self._forget(now)
        return due

    def retry(self, decision: Decision, now: float) -> None:
        """A timeout outcome could not be published: try again on a later round."""
        heapq.heappush(self._due, (now, (decision.trajectory_id, decision.step)))

    def timed_out(self, decision: Decision) -> None:
        """The timeout outcome of ``decision`` is on the outcomes topic."""
        key = (decision.trajectory_id, decision.step)
        self._waiting.pop(key, None)
        self._timed_out.add(key)

    def late(self, outcome: StepOutcome) -> bool:
        """Whether ``outcome`` is a real answer to a step that already timed out."""
        key = (outcome.trajectory_id, outcome.step)
        return key in self._timed_out and outcome.event_id != timeout_event_id(outcome.decision_id)

    def _forget(self, now: float) -> None:
        while self._answered and next(iter(self._answered.values())) <= now - self.horizon_s:
            self._answered.popitem(last=False)
