"""The tasks a demo submits: the engine's own epoch tasks, as TaskSubmitted events."""

from schemas.events import TaskSubmitted
from services.sim.engine import epoch_tasks
from services.sim.scenario import Scenario


def epoch_submissions(
    scenario: Scenario, seed: int, epoch: int, *, tenant: str = "default"
) -> list[TaskSubmitted]:
    """One event per task of ``epoch``, in the engine's order, with the engine's ids: the goal
    is the class description, as ``Engine.trajectory`` starts it."""
    return [
        TaskSubmitted(
            event_id=task_id,
            tenant=tenant,
            task_id=task_id,
            goal=task_class.description,
            features=task_class.features,
            task_class=task_class.name,
        )
        for task_id, task_class in epoch_tasks(scenario, seed, epoch)
    ]
