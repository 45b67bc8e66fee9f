"""How a cell variant is executed. The worker sees only :class:`Backend`, built by the
factory an ``agensbus.backends`` entry point names (``settings.worker_backend``): the
simulated backend follows the scenario's world, the openai one calls models, and a package
may add its own."""

from typing import Protocol, cast

from schemas.events import FailureKind
from schemas.records import TrajectoryState
from services.policy import StepResult, Variant
from services.policy.outcomes import Execution
from services.policy.pipeline import Pipeline
from services.runtime.codec import Rejected
from services.runtime.plugins import BACKENDS, load_factory
from services.runtime.settings import Settings


class Unexecutable(Exception):
    """The decision cannot run on this backend at all (not a failed call: a bad input).
    The worker dead-letters it and answers with a failed step."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.rejected = Rejected(error_type, reason)

    def as_failure(self) -> Execution:
        """The step as the router should see it: failed upstream, nothing spent."""
        return Execution(StepResult(succeeded=False), 0, 0, 0.0, 0, FailureKind.UPSTREAM)


class Backend(Protocol):
    async def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        """Run the pending invoke of ``state`` with ``variant``; provider failures come back
        as a failed Execution, unusable input raises :class:`Unexecutable`."""
        ...

    async def start(self) -> None:
        """Runs once the worker's loop runs, before decisions arrive."""
        ...

    async def stop(self) -> None:
        """Runs after in-flight decisions have drained."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """Whether the backend can execute now, and why (a readiness check: answers at
        once, a remote backend reports its last probe)."""
        ...


class BackendFactory(Protocol):
    """What an ``agensbus.backends`` entry point names: builds the backend for the
    pipeline's variants when the worker starts, or raises :class:`PluginConfigError`
    saying what to fix."""

    def __call__(self, settings: Settings, pipeline: Pipeline) -> Backend: ...


def make_backend(settings: Settings, pipeline: Pipeline) -> Backend:
    """The backend named by ``settings.worker_backend``, serving ``pipeline``."""
    factory = load_factory(BACKENDS, settings.worker_backend)
    return cast(BackendFactory, factory)(settings, pipeline)
