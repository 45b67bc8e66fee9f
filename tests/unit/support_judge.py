"""What the judge's tests score: real finished trajectories (single runs or rollouts of a
task) that the in-process engine ran over the shipped scenario's simulated world."""

from schemas.events import TrajectoryCompleted
from services.policy.arms import policy_setup
from services.sim import Engine, load_scenario
from services.sim.testing import completed_trajectory

SCENARIO = load_scenario("security-advisories")
ENGINE = Engine(SCENARIO, policy_setup(SCENARIO, "paper"), seed=5)


def completed(task_id: str, task_class: str, rollout: int | None = None) -> TrajectoryCompleted:
    """A real finished trajectory; ``rollout`` makes it one of several runs of the task."""
    return completed_trajectory(ENGINE, task_class, task_id, rollout)
