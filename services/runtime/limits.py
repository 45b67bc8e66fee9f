"""The sizes a deployment admits (settings ``limit_*``), checked where data enters so that
no service ever builds an event the producer or the broker refuses. Pure functions."""

from dataclasses import dataclass

from schemas.events import TaskSubmitted
from schemas.records import Handoff, HandoffDelta, TrajectoryState
from services.runtime.codec import Rejected
from services.runtime.settings import Settings

#: The handoff fields holding one free text each; evidence is a list of them.
TEXT_FIELDS: tuple[str, ...] = ("subproblem", "draft_answer", "critique", "merged_answer")


@dataclass(frozen=True, slots=True)
class Limits:
    goal_bytes: int
    task_bytes: int
    field_bytes: int
    state_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            goal_bytes=settings.limit_goal_bytes,
            task_bytes=settings.limit_task_bytes,
            field_bytes=settings.limit_field_bytes,
            state_bytes=settings.limit_state_bytes,
        )


def utf8_bytes(text: str) -> int:
    return len(text.encode())


def _over(what: str, size: int, limit: int, setting: str) -> str:
    return f"{what} is {size} bytes, over the limit of {limit} (AGENSBUS_{setting.upper()})"


def task_problem(task: TaskSubmitted, size: int, limits: Limits) -> Rejected | None:
    """Why the router must not admit ``task`` (``size``: its bytes on the topic)."""
    goal = utf8_bytes(task.goal)
    if goal > limits.goal_bytes:
        return Rejected(
            "over_limit", _over("the goal", goal, limits.goal_bytes, "limit_goal_bytes")
        )
    if size > limits.task_bytes:
        return Rejected(
            "over_limit", _over("the task", size, limits.task_bytes, "limit_task_bytes")
        )
    return None


def texts(handoff: Handoff | HandoffDelta) -> list[tuple[str, str]]:
    """Every free text of ``handoff`` with the name of its field, evidence item by item."""
    found = [(name, value) for name in TEXT_FIELDS if (value := getattr(handoff, name))]
    return found + [("evidence", item) for item in handoff.evidence]


def step_problem(delta: HandoffDelta, after: TrajectoryState, limits: Limits) -> str | None:
    """Why a step's output cannot be carried: an inline text or the state it makes over
    its limit. ``after``: the state with ``delta`` applied."""
    for name, value in texts(delta):
        if (size := utf8_bytes(value)) > limits.field_bytes:
            return _over(
                f"{name} written by the step", size, limits.field_bytes, "limit_field_bytes"
            )
    size = len(after.model_dump_json().encode())
    if size > limits.state_bytes:
        return _over("the state after the step", size, limits.state_bytes, "limit_state_bytes")
    return None
