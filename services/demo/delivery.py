"""What every demo arm reports however its trajectories are scored: the records of each
epoch in submission order, and the counts that show nothing was lost or counted twice."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from services.demo.replay import EpochRun, Observed

R = TypeVar("R")


def per_epoch(runs: Sequence[EpochRun], record: Callable[[int, str], R]) -> list[list[R]]:
    """``record(epoch, task_id)`` of every task, epoch by epoch, in submission order (not
    arrival order), so that means add up in the engine's order."""
    return [[record(run.epoch, task_id) for task_id in run.task_ids] for run in runs]


@dataclass(frozen=True)
class Delivery:
    """Of the tasks submitted, how many completed and were rewarded; ``backed_up`` is the
    learner's count in its final snapshot."""

    submitted: int
    completed: int
    rewarded: int
    backed_up: int
    policy_version: int
    wall_s: float
    epoch_wall_s: list[float]

    @classmethod
    def counted(
        cls, runs: Sequence[EpochRun], observed: Observed, wall_s: float, **own: Any
    ) -> Self:
        """The arm's result with its counts taken from ``observed``; ``own`` holds the
        fields the subclass adds."""
        submitted = [t for run in runs for t in run.task_ids]
        return cls(
            submitted=len(submitted),
            completed=sum(t in observed.completed for t in submitted),
            rewarded=sum(t in observed.rewards for t in submitted),
            backed_up=0 if observed.snapshot is None else observed.snapshot.backed_up,
            policy_version=observed.version,
            wall_s=wall_s,
            epoch_wall_s=[run.wall_s for run in runs],
            **own,
        )
