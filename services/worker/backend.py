"""How a cell variant is executed. The worker sees only :class:`Backend`; the simulated
backend follows the scenario, and a real OpenAI-compatible backend plugs in beside it."""

import asyncio
from typing import Protocol

from schemas.events import FailureKind
from schemas.records import TrajectoryState
from services.policy import StepResult, Variant
from services.policy.outcomes import Execution
from services.runtime.codec import Rejected
from services.runtime.settings import Settings
from services.sim import Scenario, World


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


class SimulatedBackend:
    """The scenario's world. It sleeps the simulated latency times ``time_scale`` so that
    tests and demos can make calls take real time; 0 returns at once."""

    def __init__(self, world: World, time_scale: float = 0.0) -> None:
        self.world = world
        self.time_scale = time_scale

    async def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        if state.task_class not in self.world.scenario.classes:
            raise Unexecutable(
                "unknown_task_class",
                f"scenario {self.world.scenario.name} has no task class {state.task_class!r}",
            )
        execution = self.world.execute(state, variant)
        if self.time_scale > 0:
            await asyncio.sleep(execution.latency_s * self.time_scale)
        return execution

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def readiness(self) -> tuple[bool, str]:
        return True, "simulated backend: runs in this process, always reachable"


def make_backend(settings: Settings, scenario: Scenario) -> Backend:
    """The backend named by ``settings.worker_backend``."""
    # A match, so that mypy reports a backend added to the settings but not built here.
    match settings.worker_backend:
        case "simulated":
            return SimulatedBackend(World(scenario, settings.seed), settings.sim_time_scale)
        case "openai":
            # Imported here: the openai package builds on this module's Unexecutable.
            from services.worker.openai import build_backend

            return build_backend(settings, scenario.pool)
