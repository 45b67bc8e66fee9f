"""The circuit breaker per model: every transition, driven by a hand-moved clock."""

import itertools

import pytest

from services.router.breaker import (
    BreakerConfig,
    Breakers,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from tests.unit.support_clock import T0, Clock

CONFIG = BreakerConfig(window=4, window_s=60.0, failure_rate=0.5, min_calls=2, cooldown_s=10.0)
CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
#: Invokes are told apart by a key (the router uses the decision's trajectory and step).
PROBE = ("probe", 0)
_invokes = itertools.count()


def call() -> tuple[str, int]:
    """The key of a new invoke (the breaker counts each invoke once)."""
    return ("t", next(_invokes))


def board(config: BreakerConfig = CONFIG) -> tuple[Breakers, Clock]:
    clock = Clock()
    return Breakers(["strong", "fast"], config, clock), clock


def opened(breaker: CircuitBreaker, now: float = T0) -> CircuitBreaker:
    for _ in range(CONFIG.min_calls):
        breaker.record(call(), True, now)
    assert breaker.state(now) is OPEN
    return breaker


def test_closed_below_the_minimum_of_calls_even_when_all_failed() -> None:
    breaker = CircuitBreaker("strong", CONFIG)
    assert breaker.record(call(), True, T0) == []
    assert breaker.state(T0) is CLOSED and breaker.offered(T0)


def test_opens_when_the_failure_share_reaches_the_threshold() -> None:
    breaker = CircuitBreaker("strong", CONFIG)
    assert breaker.record(call(), False, T0) == []
    assert breaker.record(call(), False, T0 + 1) == []
    assert breaker.record(call(), True, T0 + 2) == []  # 1 of 3 failed
    moves = breaker.record(call(), True, T0 + 3)  # 2 of 4: the threshold
    assert moves == [Transition("strong", CLOSED, OPEN, T0 + 3)]
    assert breaker.state(T0 + 3) is OPEN and not breaker.offered(T0 + 3)
    assert breaker.open_until == T0 + 3 + CONFIG.cooldown_s


def test_the_window_keeps_only_the_latest_calls() -> None:
    breaker = CircuitBreaker("strong", CONFIG)
    for second in range(4):
        assert breaker.record(call(), False, T0 + second) == []
    assert breaker.record(call(), True, T0 + 4) == []  # 1 of the last 4
    # 2 of the last 4 failed (of all six calls only a third): the old successes left.
    assert breaker.record(call(), True, T0 + 5)[0].target is OPEN


def test_an_outcome_absorbed_twice_counts_once() -> None:
    breaker = CircuitBreaker("strong", CONFIG)
    redelivered = call()
    assert breaker.record(redelivered, True, T0) == []
    assert breaker.record(redelivered, True, T0 + 1) == []  # the same invoke again
    assert breaker.state(T0 + 1) is CLOSED
    assert breaker.record(call(), True, T0 + 2)[0].target is OPEN


def test_calls_older_than_the_window_span_are_forgotten() -> None:
    breaker = CircuitBreaker("strong", CONFIG)
    breaker.record(call(), True, T0)
    later = T0 + CONFIG.window_s + 1
    assert breaker.record(call(), True, later) == []  # the first failure is too old to count
    assert breaker.state(later) is CLOSED
    assert breaker.record(call(), True, later + 1)[0].target is OPEN


def test_outcomes_while_open_are_ignored() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    assert breaker.record(call(), False, T0 + 1) == []
    assert breaker.record(call(), True, T0 + 2) == []
    assert breaker.state(T0 + 2) is OPEN and breaker.open_until == T0 + CONFIG.cooldown_s


def test_half_open_after_the_cool_down_lets_one_probe_through() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    after = T0 + CONFIG.cooldown_s
    assert breaker.state(after - 0.5) is OPEN
    assert breaker.state(after) is HALF_OPEN  # as metrics read it, before anything moved
    assert breaker.refresh(after) == [Transition("strong", OPEN, HALF_OPEN, after)]
    assert breaker.refresh(after) == []
    assert breaker.offered(after)
    breaker.dispatched(PROBE, after)
    assert not breaker.offered(after + 1)  # the probe is out: nobody else gets the model


def test_a_successful_probe_closes_with_an_empty_window() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    after = T0 + CONFIG.cooldown_s
    breaker.refresh(after)
    breaker.dispatched(PROBE, after)
    assert breaker.record(PROBE, False, after + 1) == [
        Transition("strong", HALF_OPEN, CLOSED, after + 1)
    ]
    assert breaker.offered(after + 1)
    # The failures that opened it are gone: one new failure is below the minimum of calls.
    assert breaker.record(call(), True, after + 2) == []
    assert breaker.state(after + 2) is CLOSED


def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    after = T0 + CONFIG.cooldown_s
    breaker.refresh(after)
    breaker.dispatched(PROBE, after)
    assert breaker.record(PROBE, True, after + 1) == [
        Transition("strong", HALF_OPEN, OPEN, after + 1)
    ]
    assert breaker.open_until == after + 1 + CONFIG.cooldown_s
    assert not breaker.offered(after + 2)


def test_only_the_probe_decides_a_half_open_breaker() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    after = T0 + CONFIG.cooldown_s
    # The first outcome after the cool-down moves it on its own; this one was dispatched
    # before the breaker opened, so it decides nothing, failed or not.
    assert breaker.record(call(), True, after) == [Transition("strong", OPEN, HALF_OPEN, after)]
    breaker.dispatched(PROBE, after)
    assert breaker.record(call(), False, after + 1) == []
    assert breaker.state(after + 1) is HALF_OPEN and not breaker.offered(after + 1)
    assert breaker.record(PROBE, False, after + 2)[0].target is CLOSED


def test_a_lost_probe_frees_its_slot_after_a_cool_down() -> None:
    breaker = opened(CircuitBreaker("strong", CONFIG))
    after = T0 + CONFIG.cooldown_s
    breaker.refresh(after)
    breaker.dispatched(PROBE, after)
    assert not breaker.offered(after + CONFIG.cooldown_s - 1)
    later = after + CONFIG.cooldown_s
    assert breaker.offered(later)
    assert breaker.state(later) is HALF_OPEN
    breaker.dispatched(("second probe", 0), later)
    assert breaker.record(PROBE, False, later + 1) == []  # the lost one, late: not the probe
    assert breaker.record(("second probe", 0), False, later + 2)[0].target is CLOSED


def test_the_board_blocks_open_models_and_names_them_in_notes() -> None:
    breakers, clock = board()
    breakers.record("strong", call(), True)
    breakers.record("strong", call(), True)
    breakers.record("fast", call(), False)
    assert breakers.blocked() == {"strong"}
    assert breakers.note("fast") == "breaker open: strong until 2026-05-28T20:26:50Z"
    assert breakers.note(None) == breakers.note("fast")
    assert [(t.model, t.target) for t in breakers.drain()] == [("strong", OPEN)]
    assert breakers.drain() == []

    clock.now += CONFIG.cooldown_s
    assert breakers.blocked() == frozenset()  # half-open: offered for a probe
    breakers.dispatched("strong", PROBE)
    assert breakers.note("strong") == "breaker half-open: probe of strong"
    assert breakers.blocked() == {"strong"}  # one probe at a time
    assert breakers.note("fast") == "breaker half-open: strong probe in flight"
    breakers.record("strong", PROBE, False)
    assert breakers.blocked() == frozenset() and breakers.note("fast") is None
    assert [(t.model, t.target) for t in breakers.drain()] == [
        ("strong", HALF_OPEN),
        ("strong", CLOSED),
    ]


def test_the_board_ignores_variants_without_a_model_and_unknown_models() -> None:
    breakers, _ = board()
    for _ in range(5):
        breakers.record(None, call(), True)
        breakers.record("elsewhere", call(), True)
    assert breakers.blocked() == frozenset()
    assert breakers.models == ("fast", "strong")


def test_a_disabled_board_never_blocks() -> None:
    breakers, _ = board(BreakerConfig(enabled=False, window=4, min_calls=2))
    for _ in range(4):
        breakers.record("strong", call(), True)
    assert breakers.blocked() == frozenset()
    assert breakers.state("strong") is CLOSED and breakers.note("fast") is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window": 0}, "at least 1"),
        ({"window": 3, "min_calls": 4}, "could never open"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"cooldown_s": 0.0}, "positive"),
    ],
)
def test_a_config_that_cannot_work_is_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**fields)  # type: ignore[arg-type]


def test_a_decision_is_noted_as_of_the_instant_its_candidates_were_chosen() -> None:
    # A cool-down that ends between choosing the candidates and noting the decision must
    # not leave the decision without its reason: both describe the same instant.
    breakers, clock = board()
    breakers.record("strong", call(), True)
    breakers.record("strong", call(), True)
    clock.now += CONFIG.cooldown_s - 0.001
    assert breakers.blocked() == {"strong"}
    clock.now += 0.002  # the cool-down ends while the router builds the decision
    breakers.dispatched("fast", call())
    assert breakers.note("fast") == "breaker open: strong until 2026-05-28T20:26:50Z"
