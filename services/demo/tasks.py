"""The tasks a demo submits: the engine's own epoch tasks, as TaskSubmitted events."""

from schemas.events import TaskSubmitted
from services.sim.corpus import Corpus
from services.sim.engine import epoch_order, epoch_tasks
from services.sim.scenario import Scenario


def epoch_submissions(
    scenario: Scenario,
    seed: int,
    epoch: int,
    *,
    tenant: str = "default",
    corpus: Corpus | None = None,
    per_class: int | None = None,
) -> list[TaskSubmitted]:
    """One event per task of ``epoch``, in the engine's order, with the engine's ids. The goal
    is the task's question when the scenario has a corpus, else the class description, as
    ``Engine.trajectory`` starts it (the simulated world never reads it either way).
    ``per_class`` keeps only each class's first tasks (a cheaper run of real models)."""
    ids = epoch_tasks(scenario, seed, epoch)
    order = epoch_order(scenario, seed, epoch)
    return [
        TaskSubmitted(
            event_id=task_id,
            tenant=tenant,
            task_id=task_id,
            goal=(
                task_class.description
                if corpus is None
                else corpus.task(task_class.name, index).question
            ),
            features=task_class.features,
            task_class=task_class.name,
        )
        for (task_id, task_class), (_, index) in zip(ids, order, strict=True)
        if per_class is None or index < per_class
    ]
