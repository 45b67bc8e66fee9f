"""The simulated world (DESIGN.md §5): scenarios, world, judge, oracle and the in-process
engine that runs the whole loop offline with ground truth."""

from services.policy.rubric import RUBRIC_WEIGHTS, judge_confidence, overall_score
from services.sim.engine import (
    POLICIES,
    Engine,
    EpochReport,
    PolicyName,
    TrajectoryRecord,
    deployed_arm,
    policy_setup,
)
from services.sim.judge import Judgement, SimulatedJudge
from services.sim.loader import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from services.sim.oracle import ClassOracle, Oracle, Paths, chosen_path, reachable_paths
from services.sim.scenario import Costs, Scenario, TaskClass
from services.sim.world import Execution, World, counted_slots

__all__ = [
    "POLICIES",
    "RUBRIC_WEIGHTS",
    "ClassOracle",
    "Costs",
    "Engine",
    "EpochReport",
    "Execution",
    "Judgement",
    "Oracle",
    "Paths",
    "PolicyName",
    "Scenario",
    "ScenarioError",
    "SimulatedJudge",
    "TaskClass",
    "TrajectoryRecord",
    "World",
    "chosen_path",
    "counted_slots",
    "deployed_arm",
    "judge_confidence",
    "load_scenario",
    "overall_score",
    "parse_scenario",
    "policy_setup",
    "reachable_paths",
    "shipped_scenarios",
]
