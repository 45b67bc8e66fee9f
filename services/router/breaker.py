"""A circuit breaker per model, across trajectories: stop offering a model that keeps failing.

Each router keeps, per model, the outcomes of its recent invokes: at most ``window`` of
them, none older than ``window_s``. When at least ``min_calls`` are in the window and the
share of failures reaches ``failure_rate``, the breaker *opens*: the router withholds the
model's variants for ``cooldown_s``. Then it is *half-open*: the model is offered again for
one probe invoke at a time; the probe's success *closes* the breaker (with an empty window),
its failure opens it for another cool-down. A probe whose outcome never comes back (its
worker died, another replica absorbed it) frees its slot after a cool-down.

While the breaker is open or half-open, every outcome but the probe's was dispatched before
it opened and says nothing new, so it is ignored. Invokes are told apart by a key, the
decision's (trajectory, step), and the window counts each once: an outcome absorbed again
(its first absorb could not publish its events) is not a second call. Each router replica
judges from the outcomes it absorbs, so replicas open their breakers independently, each on
its own evidence.

Only variants that name a model are guarded: the router cannot tell which model serves a
variant without one (the worker's default) and a tool is no model.

The domain is pure: time comes from an injected clock, in seconds since the epoch (so the
"until" a decision names is a wall-clock time an operator can read).
"""

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum


class BreakerState(IntEnum):
    """The values of the ``agensbus_router_breaker_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class BreakerConfig:
    enabled: bool = True
    window: int = 20
    window_s: float = 300.0
    failure_rate: float = 0.5
    min_calls: int = 5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_calls < 1:
            raise ValueError("window and min_calls must be at least 1")
        if self.min_calls > self.window:
            raise ValueError(
                f"min_calls ({self.min_calls}) exceeds the window ({self.window}): "
                "the breaker could never open"
            )
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.window_s <= 0.0 or self.cooldown_s <= 0.0:
            raise ValueError("window_s and cooldown_s must be positive")


@dataclass(frozen=True, slots=True)
class Transition:
    model: str
    source: BreakerState
    target: BreakerState
    at: float


class CircuitBreaker:
    """The breaker of one model. Every method takes ``now`` (seconds since the epoch)."""

    def __init__(self, model: str, config: BreakerConfig) -> None:
        self.model = model
        self.config = config
        self._state = BreakerState.CLOSED
        # (when, invoke, failed), oldest first
        self._calls: deque[tuple[float, Hashable, bool]] = deque()
        self._open_until = 0.0
        self._probe: Hashable | None = None  # the invoke probing the model, if any
        self._probe_until: float | None = None  # ...and when its slot frees if it is lost

    def state(self, now: float) -> BreakerState:
        """The state at ``now``, without changing anything (for metrics)."""
        if self._state is BreakerState.OPEN and now >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def open_until(self) -> float:
        return self._open_until

    def refresh(self, now: float) -> list[Transition]:
        """Move an open breaker whose cool-down is over to half-open."""
        if self._state is BreakerState.OPEN and now >= self._open_until:
            return [self._move(BreakerState.HALF_OPEN, now)]
        return []

    def offered(self, now: float) -> bool:
        """Whether the router may offer the model now (after ``refresh``)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return False
        return self._probe_until is None or now >= self._probe_until

    def dispatched(self, invoke: Hashable, now: float) -> None:
        """A decision invoked the model: while half-open, that is the probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe = invoke
            self._probe_until = now + self.config.cooldown_s

    def record(self, invoke: Hashable, failed: bool, now: float) -> list[Transition]:
        """The outcome of an invoke of the model came back."""
        moves = self.refresh(now)
        if self._state is BreakerState.OPEN:
            return moves
        if self._state is BreakerState.HALF_OPEN:
            if invoke != self._probe:
                return moves
            if failed:
                return [*moves, self._open(now)]
            self._calls.clear()
            return [*moves, self._move(BreakerState.CLOSED, now)]
        if any(seen == invoke for _, seen, _ in self._calls):
            # A redelivered outcome (its first absorb could not publish) is one invoke.
            return moves
        self._calls.append((now, invoke, failed))
        self._forget(now)
        if self._tripped():
            moves.append(self._open(now))
        return moves

    def _tripped(self) -> bool:
        calls = len(self._calls)
        if calls < self.config.min_calls:
            return False
        failures = sum(failed for _, _, failed in self._calls)
        return failures >= self.config.failure_rate * calls

    def _forget(self, now: float) -> None:
        while len(self._calls) > self.config.window:
            self._calls.popleft()
        while self._calls and self._calls[0][0] <= now - self.config.window_s:
            self._calls.popleft()

    def _open(self, now: float) -> Transition:
        self._open_until = now + self.config.cooldown_s
        self._calls.clear()
        self._probe = self._probe_until = None
        return self._move(BreakerState.OPEN, now)

    def _move(self, target: BreakerState, now: float) -> Transition:
        source, self._state = self._state, target
        return Transition(self.model, source, target, now)


class Breakers:
    """The breakers of a router's models; collects their transitions for the metrics."""

    def __init__(
        self, models: Iterable[str], config: BreakerConfig, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self._clock = clock
        self._breakers = {m: CircuitBreaker(m, config) for m in sorted(set(models))}
        self._transitions: list[Transition] = []
        # The instant of the decisions being made, read once by ``blocked``: the models a
        # decision withholds, its probe and its note must all describe the same instant, or
        # a cool-down ending between two clock reads leaves a decision unexplained.
        self._decided_at: float | None = None

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._breakers)

    def state(self, model: str) -> BreakerState:
        return self._breakers[model].state(self._clock())

    def blocked(self) -> frozenset[str]:
        """The models the router must not offer now."""
        if not self.config.enabled:
            return frozenset()
        now = self._decided_at = self._clock()
        for breaker in self._breakers.values():
            self._transitions += breaker.refresh(now)
        return frozenset(m for m, b in self._breakers.items() if not b.offered(now))

    def dispatched(self, model: str | None, invoke: Hashable) -> None:
        """A decision taken after the last ``blocked`` invoked ``model``."""
        breaker = self._guarded(model)
        if breaker is not None:
            breaker.dispatched(invoke, self._decision_time())

    def record(self, model: str | None, invoke: Hashable, failed: bool) -> None:
        breaker = self._guarded(model)
        if breaker is not None:
            self._transitions += breaker.record(invoke, failed, self._clock())

    def note(self, model: str | None) -> str | None:
        """What the breakers changed about a decision that invoked ``model`` (None: a skip
        or a variant naming no model): the models withheld and until when, and whether this
        invoke is a half-open model's probe. None when nothing was changed. Told as of the
        last ``blocked``, which chose the decision's candidates."""
        if not self.config.enabled:
            return None
        now = self._decision_time()
        parts = [
            f"breaker open: {m} until {_iso(b.open_until)}"
            for m, b in self._breakers.items()
            if b.state(now) is BreakerState.OPEN
        ]
        parts += [
            f"breaker half-open: {m} probe in flight"
            for m, b in self._breakers.items()
            if m != model and b.state(now) is BreakerState.HALF_OPEN and not b.offered(now)
        ]
        if model in self._breakers and self._breakers[model].state(now) is BreakerState.HALF_OPEN:
            parts.append(f"breaker half-open: probe of {model}")
        return "; ".join(parts) or None

    def drain(self) -> list[Transition]:
        """The transitions since the last drain, oldest first."""
        moved, self._transitions = self._transitions, []
        return moved

    def _decision_time(self) -> float:
        return self._clock() if self._decided_at is None else self._decided_at

    def _guarded(self, model: str | None) -> CircuitBreaker | None:
        if not self.config.enabled or model is None:
            return None
        return self._breakers.get(model)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
