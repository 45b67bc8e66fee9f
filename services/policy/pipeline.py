"""A deployment's pipeline: the cells it routes (the pool, with its protected cells), the
budget a trajectory gets when its task names none, and the task classes it knows by name.

Pure data: the services and the simulator read it alike; the file format and its loader are
in ``services.pipeline`` (docs/pipeline.md).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.records import Budget, Regime, TaskFeatures
from services.policy.cells import CellPool, paper_pool
from services.policy.regime import detect_regime


@dataclass(frozen=True, slots=True)
class TaskClassInfo:
    """A task class a pipeline knows: what its tasks look like, so that ``task explain``
    can show how one would be routed from its name alone."""

    name: str
    description: str
    features: TaskFeatures

    @property
    def regime(self) -> Regime:
        return detect_regime(self.features)


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    #: The shipped name or the file it was read from; "inline" for a scenario's own cells.
    source: str
    pool: CellPool = field(default_factory=paper_pool)
    budget: Budget = field(default_factory=Budget)
    classes: Mapping[str, TaskClassInfo] = field(default_factory=dict)

    @property
    def protected(self) -> frozenset[str]:
        return self.pool.protected

    @property
    def baseline(self) -> dict[str, str]:
        """Each cell's default variant: what the fixed pipeline and the prior run."""
        return {name: cell.default.action for name, cell in self.pool.cells.items()}
