"""The class floor: a conservative gate that lets a class leave its fixed pipeline only while
what leaving has earned keeps the class's quality at the pipeline's, less a tolerance.

Per task class the graph keeps two mergeable streams of judged quality: trajectories that ran
the fixed pipeline (every cell on its default variant, none skipped) and trajectories that
left it somewhere. Before each trajectory of a class the gate asks, after the conservative
bandits of Wu, Shariff, Lattimore and Szepesvari (2016), whether the class's cumulative
quality, counting the deviating trajectories at their lower confidence bound and the next
one at the pipeline's mean, stays at least ``(n + 1) * (m0 - tolerance)`` for the ``n``
trajectories so far and the next; ``m0`` is the pipeline's mean quality on the class. When
it does not, the class runs its pipeline, which earns the gate back ``tolerance`` a
trajectory. A class whose pipeline has not run yet runs it first.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.records import StepStatus, TrajectoryState
from services.policy.cells import CellPool
from services.policy.stats import RunningStat


@dataclass(slots=True)
class ClassFloor:
    """Judged quality of a class's trajectories, on its fixed pipeline and off it."""

    baseline: RunningStat = field(default_factory=RunningStat)
    deviated: RunningStat = field(default_factory=RunningStat)

    def merge(self, other: "ClassFloor") -> "ClassFloor":
        return ClassFloor(self.baseline.merge(other.baseline), self.deviated.merge(other.deviated))

    def slack(self, tolerance: float, z: float, budget: float = 0.0) -> float:
        """What the class may still lose against its pipeline's quality before the next
        trajectory must run the pipeline (negative: it must); -inf before the pipeline ran."""
        if self.baseline.count <= 0:
            return -math.inf
        m0 = self.baseline.mean
        n1 = self.deviated.count
        margin = z * math.sqrt(self.deviated.variance * n1)
        earned = n1 * self.deviated.mean - margin - n1 * m0
        return earned + (self.baseline.count + n1 + 1.0) * tolerance + budget

    def open(self, tolerance: float, z: float, budget: float = 0.0) -> bool:
        return self.slack(tolerance, z, budget) >= 0.0


def on_fixed_pipeline(state: TrajectoryState, pool: CellPool) -> bool:
    """Whether every step of the trajectory ran its cell's default variant (retries and
    failures included) and none was skipped."""
    for edge in state.visited:
        if edge.status is StepStatus.SKIPPED:
            return False
        cell = pool.variant(edge.action).cell
        if pool.cells[cell].default.action != edge.action:
            return False
    return True


def record_classes(
    floors: dict[str, ClassFloor],
    pool: CellPool,
    trajectories: Sequence[tuple[TrajectoryState, float]],
) -> None:
    """Add each judged trajectory of a known class to its class's floor; ``float`` is the
    judged quality."""
    for state, quality in trajectories:
        if state.task_class is None:
            continue
        floor = floors.setdefault(state.task_class, ClassFloor())
        stream = floor.baseline if on_fixed_pipeline(state, pool) else floor.deviated
        stream.add(quality)
