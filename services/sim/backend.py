"""The simulated worker backend: the scenario's world runs the cells (the ``simulated`` entry
point of ``agensbus.backends``)."""

import asyncio

from schemas.records import TrajectoryState
from services.policy import Variant
from services.policy.outcomes import Execution
from services.policy.pipeline import Pipeline
from services.runtime.plugins import PluginConfigError
from services.runtime.settings import Settings
from services.sim.loader import load_scenario
from services.sim.scenario import Scenario
from services.sim.world import World
from services.worker.backend import Unexecutable


def scenario_over(settings: Settings, pipeline: Pipeline) -> Scenario:
    """``settings.scenario``, which must simulate the very cells and plans of ``pipeline``:
    a world that knows other variants could not run the decisions the router sends."""
    scenario = load_scenario(settings.scenario)
    ours, theirs = pipeline.pool, scenario.pool
    if (ours.cells, ours.plans) != (theirs.cells, theirs.plans):
        raise PluginConfigError(
            f"scenario {scenario.name} simulates the pipeline {scenario.pipeline.source}, "
            f"whose cells or plans differ from those of the pipeline {pipeline.source} this "
            "deployment runs: give --pipeline / AGENSBUS_PIPELINE the scenario's pipeline, "
            "or a scenario that names yours"
        )
    return scenario


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


def simulated_backend(settings: Settings, pipeline: Pipeline) -> SimulatedBackend:
    scenario = scenario_over(settings, pipeline)
    return SimulatedBackend(World(scenario, settings.seed), settings.sim_time_scale)
