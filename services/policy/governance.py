"""Per-trajectory governance: when a failed step should end its trajectory at once.

Two rules, both about not spending more on a trajectory that cannot recover:

* a failure whose kind says every further call would fail the same way (by default an
  auth failure, a rejected key, and quota, an exhausted budget) halts at once;
* more than ``max_failures`` failed steps halt it. A failed step already means the worker
  spent its retries (backoff on 429/5xx/timeouts, one corrective retry on invalid output),
  so each one is a cell lost; the paper's plan has seven cells, and after the fourth lost
  one the answer rests on fewer than half of them while every further step still costs
  tokens. Three keeps a trajectory going through the odd outage of a tool or a
  model and stops one that is failing across the board.
"""

from dataclasses import dataclass, field

from schemas.events import FailureKind

#: The halt reason of the failure-count rule (the other rule's reason is the failure kind).
REPEATED_FAILURES = "repeated_failures"


@dataclass(frozen=True)
class GovernanceConfig:
    """``halt_on``: failure kinds that halt at once; ``max_failures``: failed steps a
    trajectory may have, the one beyond halts it."""

    halt_on: frozenset[FailureKind] = field(
        default_factory=lambda: frozenset({FailureKind.AUTH, FailureKind.QUOTA})
    )
    max_failures: int = 3

    def __post_init__(self) -> None:
        if self.max_failures < 0:
            raise ValueError("max_failures must be at least 0")


def halt_reason(failures: int, failure: FailureKind | None, config: GovernanceConfig) -> str | None:
    """Why a trajectory must stop after a failed step, or None to go on.

    ``failures`` counts the trajectory's failed steps including this one; ``failure`` is the
    step's failure kind (None when the worker did not say)."""
    if failure is not None and failure in config.halt_on:
        return failure.value
    if failures > config.max_failures:
        return REPEATED_FAILURES
    return None


def parse_failure_kinds(text: str) -> frozenset[FailureKind]:
    """Comma-separated failure kinds (``auth,quota``); empty means none. Raises ValueError
    naming the kinds it does not know."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {k.value for k in FailureKind}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown failure kinds {unknown}; known: {', '.join(sorted(known))}")
    return frozenset(FailureKind(n) for n in names)
