"""How long ``agensbus up`` waits before starting a crashed service again."""

from services.runtime.supervise import Backoff


def delays(backoff: Backoff, runs_s: list[float]) -> list[float]:
    """The delay after each exit of a service whose runs lasted ``runs_s``."""
    previous: float | None = None
    chosen = []
    for ran_s in runs_s:
        previous = backoff.delay(previous, ran_s)
        chosen.append(previous)
    return chosen


def test_a_service_that_keeps_crashing_waits_twice_as_long_each_time_up_to_the_cap() -> None:
    assert delays(Backoff(), [0.5] * 8) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_healthy_minute_starts_the_delays_over() -> None:
    backoff = Backoff()
    assert delays(backoff, [1.0, 1.0, 1.0, 60.0, 1.0]) == [1.0, 2.0, 4.0, 1.0, 2.0]
    assert delays(backoff, [1.0, 1.0, 59.9]) == [1.0, 2.0, 4.0]


def test_the_bounds_are_settings_of_the_backoff() -> None:
    backoff = Backoff(first_s=0.25, cap_s=1.0, healthy_s=5.0)
    assert delays(backoff, [0.0, 0.0, 0.0, 0.0, 5.0]) == [0.25, 0.5, 1.0, 1.0, 0.25]
