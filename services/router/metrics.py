"""The router's Prometheus series, on the service's registry.

Rates are left to PromQL: the exploration rate is the share of decisions whose reason is
``untried_action``, the skip rate the share whose action kind is ``skip``, both read off
``agensbus_router_decisions_total``.
"""

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import (
    ActionKind,
    Decision,
    DecisionReason,
    FailureKind,
    PolicySnapshot,
    Termination,
)
from schemas.policy_file import GateFigures
from services.policy.gate import GATE_REFUSALS
from services.policy.governance import REPEATED_FAILURES
from services.router.breaker import Breakers, BreakerState, Transition
from services.router.core import RouterEvent, SnapshotVerdict
from services.runtime.codec import DECODE_ERRORS

# A decision is pure CPU work plus a hand-off to the producer: milliseconds, not minutes.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: The span ``agensbus_router_min_propensity`` looks back over, in slices of SLICE_S.
PROPENSITY_WINDOW_S = 300.0
SLICE_S = 10.0
#: Why a policy record is unusable: it does not decode, or the core refuses it.
POLICY_REFUSALS = (*DECODE_ERRORS, SnapshotVerdict.FOLD_MISMATCH, SnapshotVerdict.INVALID)
#: The off-policy gate's figures, as the gauge labels them.
GATE_FIGURES = ("estimate", "lower_bound", "acting", "trajectories")


class WindowMin:
    """The smallest value added during the last ``window_s`` (NaN when none was), kept as
    one minimum per ``slice_s`` so memory stays constant at any decision rate. A value
    leaves the window between ``window_s - slice_s`` and ``window_s`` after it came."""

    def __init__(
        self,
        window_s: float = PROPENSITY_WINDOW_S,
        slice_s: float = SLICE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slices = max(1, math.ceil(window_s / slice_s))
        self._slice_s = slice_s
        self._clock = clock
        self._minima: deque[tuple[int, float]] = deque()  # (slice index, minimum), oldest first

    def add(self, value: float) -> None:
        index = self._index()
        if self._minima and self._minima[-1][0] == index:
            self._minima[-1] = (index, min(self._minima[-1][1], value))
        else:
            self._minima.append((index, value))
        self._expire(index)

    def value(self) -> float:
        self._expire(self._index())
        return min((m for _, m in self._minima), default=math.nan)

    def _index(self) -> int:
        return math.floor(self._clock() / self._slice_s)

    def _expire(self, index: int) -> None:
        while self._minima and self._minima[0][0] <= index - self._slices:
            self._minima.popleft()


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry, tenants: Sequence[str]) -> None:
        self.decisions = Counter(
            "agensbus_router_decisions_total",
            "Decisions published, by action kind and the reason behind the choice.",
            ["action_kind", "reason"],
            registry=registry,
        )
        self.started = Counter(
            "agensbus_router_trajectories_started_total",
            "Trajectories started from submitted tasks (one per rollout).",
            registry=registry,
        )
        self.completed = Counter(
            "agensbus_router_trajectories_completed_total",
            "Trajectories that ended, by termination.",
            ["termination"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "agensbus_router_trajectories_in_flight",
            "Trajectories this replica started minus those it completed. Approximate: any "
            "replica may complete a trajectory, so only the sum over replicas is meaningful "
            "(and it counts a trajectory started again after a replay twice).",
            registry=registry,
        )
        self.duplicates = Counter(
            "agensbus_router_duplicate_outcomes_total",
            "Outcomes dropped because their (trajectory, step) was already absorbed.",
            registry=registry,
        )
        self.policy_version = Gauge(
            "agensbus_router_policy_version",
            "Version of the policy in use: a sharded policy's is the sum of its shards' "
            "versions (0: cold, no snapshot yet).",
            ["tenant"],
            registry=registry,
        )
        self.policy_timestamp = Gauge(
            "agensbus_router_policy_timestamp_seconds",
            "When the policy snapshot in use was produced, as Unix time (0: cold). Its age "
            "is time() minus this.",
            ["tenant"],
            registry=registry,
        )
        self.policy_refused = Counter(
            "agensbus_router_policy_refused_total",
            "Policy records not adopted because they were unusable, by reason.",
            ["reason"],
            registry=registry,
        )
        self.snapshots_refused = Counter(
            "agensbus_router_snapshots_refused_total",
            "Usable snapshots the off-policy gate kept out, the acting policy staying in "
            "use, by reason.",
            ["reason"],
            registry=registry,
        )
        self.gate_figures = Gauge(
            "agensbus_router_gate_figure",
            "The off-policy gate's figures for the last snapshot it judged (NaN: none yet, or "
            "not computed): figure estimate is the snapshot's doubly robust mean reward, "
            "lower_bound the lower end of its 95% interval, acting the acting policy's mean "
            "reward, trajectories how many logged trajectories they stand on.",
            ["figure"],
            registry=registry,
        )
        self.decision_latency = Histogram(
            "agensbus_router_decision_latency_seconds",
            "From receiving a task or outcome to its events being handed to the producer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.propensities = WindowMin()
        self.min_propensity = Gauge(
            "agensbus_router_min_propensity",
            "Smallest propensity of the decisions of the last 5 minutes (NaN: none). Off-"
            "policy estimates weigh a decision by 1/propensity, so small values make them "
            "noisy.",
            registry=registry,
        )
        self.min_propensity.set_function(self.propensities.value)
        self.breaker_state = Gauge(
            "agensbus_router_breaker_state",
            "Circuit breaker of each model on this replica: 0 closed (offered), 1 half-open "
            "(offered for one probe at a time), 2 open (withheld).",
            ["model"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "agensbus_router_breaker_transitions_total",
            "Circuit breaker transitions, by model and the state entered.",
            ["model", "state"],
            registry=registry,
        )
        self.governance_halts = Counter(
            "agensbus_router_governance_halts_total",
            "Trajectories halted by governance, by reason (a failure kind such as auth or "
            "quota, or repeated_failures).",
            ["reason"],
            registry=registry,
        )
        for tenant in tenants:
            self.policy_version.labels(tenant=tenant).set(0)
            self.policy_timestamp.labels(tenant=tenant).set(0)
        # Every series a rule or panel may read exists from the start, at 0.
        for kind in ActionKind:
            for reason in DecisionReason:
                self.decisions.labels(action_kind=kind.value, reason=reason.value)
        for termination in Termination:
            self.completed.labels(termination=termination.value)
        for refusal in POLICY_REFUSALS:
            self.policy_refused.labels(reason=refusal)
        for refusal in GATE_REFUSALS:
            self.snapshots_refused.labels(reason=refusal)
        for figure in GATE_FIGURES:
            self.gate_figures.labels(figure=figure).set(math.nan)
        for halt in (*(k.value for k in FailureKind), REPEATED_FAILURES):
            self.governance_halts.labels(reason=halt)

    def started_trajectories(self, count: int) -> None:
        self.started.inc(count)
        self.in_flight.inc(count)

    def count(self, events: Sequence[RouterEvent]) -> None:
        for event in events:
            if isinstance(event, Decision):
                self.decisions.labels(
                    action_kind=event.action_kind.value, reason=event.reason.value
                ).inc()
                self.propensities.add(event.propensity)
            else:
                self.completed.labels(termination=event.termination.value).inc()
                self.in_flight.dec()
                if event.halt_reason is not None:
                    self.governance_halts.labels(reason=event.halt_reason).inc()

    def watch(self, breakers: Breakers) -> None:
        """Read each model's breaker state at scrape time (a cool-down ends without an event)."""
        for model in breakers.models:
            self.breaker_state.labels(model=model).set_function(partial(breakers.state, model))
            for state in BreakerState:
                self.breaker_transitions.labels(model=model, state=state.label)

    def moved(self, transitions: Sequence[Transition]) -> None:
        for moved in transitions:
            self.breaker_transitions.labels(model=moved.model, state=moved.target.label).inc()

    def gated(self, figures: GateFigures | None, refusal: str | None) -> None:
        """What the off-policy gate judged a snapshot on, and its refusal if it refused."""
        if refusal is not None:
            self.snapshots_refused.labels(reason=refusal).inc()
        values = (None,) * 4 if figures is None else _gate_values(figures)
        for figure, value in zip(GATE_FIGURES, values, strict=True):
            self.gate_figures.labels(figure=figure).set(math.nan if value is None else value)

    def adopted(self, snapshot: PolicySnapshot, version: int) -> None:
        """``version``: the tenant's policy version now (of a sharded policy, the sum of
        its shards' versions, which ``snapshot`` moved on)."""
        labels = {"tenant": snapshot.tenant}
        self.policy_version.labels(**labels).set(version)
        self.policy_timestamp.labels(**labels).set(snapshot.produced_at.timestamp())


def _gate_values(figures: GateFigures) -> tuple[float | None, ...]:
    return (figures.estimate, figures.lower_bound, figures.acting_estimate, figures.trajectories)
