"""An SDK cell set served on the real broker: its functions answer the invokes of their
cells, a function that raises gives a failed StepOutcome with its kind and the worker goes
on, and decisions of other cells are stepped over and committed, never answered."""

import asyncio
from pathlib import Path

from schemas.events import Decision, FailureKind
from schemas.records import StepStatus
from services.sdk import CellFailed, CellSet, Task, cells_service
from services.sdk.serving import group_of
from services.sim import load_scenario
from tests.integration.support_services import (
    committed,
    outcomes,
    publish,
    read_until,
    reading,
    serving,
    settings_for,
)
from tests.unit.support_decisions import first_decision

EXAMPLES = Path(__file__).parents[2] / "examples"
SCENARIO = load_scenario(str(EXAMPLES / "support_desk.yaml"))


def drafter_decision(trajectory_id: str) -> Decision:
    """A first decision turned into an invoke of the drafter (its state waiting on it)."""
    triage = first_decision(SCENARIO, trajectory_id, "S1")
    assert triage.state.pending is not None
    action = "drafter.thorough@small"
    pending = triage.state.pending.model_copy(update={"action": action, "cell": "drafter"})
    return triage.model_copy(
        update={
            "action": action,
            "cell": "drafter",
            "protocol": "thorough",
            "model": "small",
            "state": triage.state.model_copy(update={"pending": pending}),
        }
    )


def test_sdk_functions_answer_their_cells_fail_with_kinds_and_step_over_the_rest(
    kafka_bootstrap: str,
) -> None:
    settings = settings_for(kafka_bootstrap, pipeline=str(EXAMPLES / "support_desk_pipeline.yaml"))
    cells = CellSet()

    @cells.cell("drafter")
    def draft(task: Task) -> str:
        if task.trajectory_id.startswith("broke"):
            raise CellFailed("quota", "the monthly budget is spent")
        return f"{task.protocol} answer to {task.goal}"

    served = [drafter_decision("broke-1"), drafter_decision("fine-1"), drafter_decision("fine-2")]
    # The triage invokes are not this set's: the built-in worker would serve them.
    others = [first_decision(SCENARIO, f"other-{i}", "S1") for i in range(3)]

    async def scenario() -> None:
        await publish(settings, [*others, *served])
        service = cells_service(cells, settings)
        async with (
            reading(kafka_bootstrap, settings.topic("outcomes")) as reader,
            serving(service),
        ):
            values = await read_until(reader, lambda v: len(v) >= len(served), quiet_s=1.0)
        answered = {o.trajectory_id: o for o in outcomes(values)}

        assert set(answered) == {"broke-1", "fine-1", "fine-2"}
        broke = answered["broke-1"]
        assert (broke.status, broke.failure_kind, broke.retries) == (
            StepStatus.FAILED,
            FailureKind.QUOTA,
            0,
        )
        for name in ("fine-1", "fine-2"):
            assert answered[name].status is StepStatus.SUCCEEDED
            assert (
                answered[name].delta.draft_answer
                == f"thorough answer to {SCENARIO.classes['S1'].description}"
            )
            assert answered[name].state == next(d.state for d in served if d.trajectory_id == name)
        # Every decision, answered or stepped over, was committed by the set's own group.
        offsets = await committed(settings, group_of(settings, ["drafter"]))
        assert sum(offsets.values()) == len(served) + len(others)

    asyncio.run(asyncio.wait_for(scenario(), 90))
