"""Helpers for testing what consumes agensbus's events (a judge, a learner, a sink) with
real trajectories: the in-process engine runs them over the simulated world, so their
states, handoffs and token counts are what a deployment would publish."""

from schemas.events import TrajectoryCompleted
from services.policy import rollout_id
from services.sim.engine import Engine


def completed_trajectory(
    engine: Engine, task_class: str, task_id: str, rollout: int | None = None
) -> TrajectoryCompleted:
    """The TrajectoryCompleted of one run of ``task_id`` (a task of ``task_class``), as the
    router publishes it; ``rollout`` makes it that rollout of a task run several times."""
    trajectory_id = None if rollout is None else rollout_id(task_id, rollout)
    record = engine.trajectory(1, engine.scenario.task_class(task_class), task_id, trajectory_id)
    return record.completed()
