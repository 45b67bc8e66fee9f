"""A clock the test moves by hand, for code that takes its time from a callable (the
router's circuit breakers, the metrics' time windows)."""

T0 = 1_780_000_000.0  # an instant of 2026, in seconds since the epoch


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
