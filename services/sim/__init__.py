"""The simulated world : scenarios, world, judge, oracle and the in-process
engine that runs the whole loop offline with ground truth."""

from services.sim.engine import Engine, EpochReport, TrajectoryRecord
from services.sim.judge import SimulatedJudge
from services.sim.loader import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from services.sim.oracle import ClassOracle, Oracle, Paths, chosen_path, reachable_paths
from services.sim.scenario import Costs, Scenario, TaskClass
from services.sim.world import World, counted_slots

__all__ = [
    "ClassOracle",
    "Costs",
    "Engine",
    "EpochReport",
    "Oracle",
    "Paths",
    "Scenario",
    "ScenarioError",
    "SimulatedJudge",
    "TaskClass",
    "TrajectoryRecord",
    "World",
    "chosen_path",
    "counted_slots",
    "load_scenario",
    "parse_scenario",
    "reachable_paths",
    "shipped_scenarios",
]
