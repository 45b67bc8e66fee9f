"""What a cell function of one's own sees (:class:`Task`) and gives back (:class:`Result`), and
how they map onto the trajectory state and the handoff delta. No I/O."""

import dataclasses
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from schemas.records import HandoffDelta, Role, TrajectoryState, Verdict, Verification
from services.policy import Variant


class ResultError(Exception):
    """A cell function returned something no handoff can hold (a bug of the function)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One invoke as a cell function sees it: the goal and the handoff so far, and the
    variant (protocol, model) the router chose for this step."""

    goal: str
    cell: str
    role: str
    protocol: str | None
    model: str | None
    task_id: str
    trajectory_id: str
    step: int
    #: 1 on the first try, 2 on the first retry...
    attempt: int
    task_class: str | None
    features: MappingProxyType[str, float]
    constraints: tuple[str, ...]
    subproblem: str | None
    evidence: tuple[str, ...]
    draft_answer: str | None
    critique: str | None
    verdict: str | None
    merged_answer: str | None

    @classmethod
    def of(cls, state: TrajectoryState, variant: Variant, role: Role, attempt: int) -> "Task":
        handoff = state.handoff
        return cls(
            goal=handoff.goal,
            cell=variant.cell,
            role=role.value,
            protocol=variant.protocol,
            model=variant.model,
            task_id=state.task_id,
            trajectory_id=state.trajectory_id,
            step=state.pending.step if state.pending else state.step,
            attempt=attempt,
            task_class=state.task_class,
            features=MappingProxyType(state.features.model_dump()),
            constraints=tuple(handoff.constraints),
            subproblem=handoff.subproblem,
            evidence=tuple(handoff.evidence),
            draft_answer=handoff.draft_answer,
            critique=handoff.critique,
            verdict=handoff.verification.verdict.value if handoff.verification else None,
            merged_answer=handoff.merged_answer,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What a step adds to the handoff, with what it cost. Set the fields of your cell's
    role (a solver's ``draft_answer``, a verifier's ``verdict``...); ``done`` is the
    evaluator's "this answer is final"."""

    subproblem: str | None = None
    evidence: Sequence[str] = ()
    draft_answer: str | None = None
    critique: str | None = None
    verdict: str | None = None
    rationale: str = ""
    merged_answer: str | None = None
    done: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


#: The field a plain string return fills, per role (a verifier must give a verdict).
_TEXT_FIELD: dict[Role, str] = {
    Role.PLANNER: "subproblem",
    Role.MEMORY: "evidence",
    Role.WEB_SEARCH: "evidence",
    Role.SOLVER: "draft_answer",
    Role.CRITIC: "critique",
    Role.SYNTHESIZER: "merged_answer",
    Role.EVALUATOR: "merged_answer",
}

RETURNS = "a cell function returns a str, a list of str (evidence) or a services.sdk.Result"


def as_result(returned: Any, role: Role) -> Result:
    """A function's return value as a :class:`Result`; raises :class:`ResultError`."""
    if isinstance(returned, Result):
        return returned
    if isinstance(returned, list) and all(isinstance(item, str) for item in returned):
        return Result(evidence=returned)
    if isinstance(returned, str):
        field = _TEXT_FIELD.get(role)
        if field is None:
            raise ResultError(f"a {role.value} cell returns Result(verdict=...), not a str")
        if field == "evidence":
            return Result(evidence=[returned])
        # An evaluator that answers in words calls the answer final.
        text: dict[str, Any] = {field: returned}
        return Result(**text, done=role is Role.EVALUATOR)
    raise ResultError(f"{RETURNS}; got {type(returned).__name__}")


def delta_of(result: Result) -> HandoffDelta:
    """The handoff delta of ``result``; raises :class:`ResultError` if it cannot be one."""
    try:
        verification = (
            None
            if result.verdict is None
            else Verification(verdict=Verdict(result.verdict), rationale=result.rationale)
        )
        return HandoffDelta(
            subproblem=result.subproblem,
            evidence=list(result.evidence),
            draft_answer=result.draft_answer,
            critique=result.critique,
            verification=verification,
            merged_answer=result.merged_answer,
        )
    except ValueError as error:  # pydantic's ValidationError, or an unknown verdict
        raise ResultError(_first_line(error)) from None


def _first_line(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(error)
