"""What each role must answer: a JSON schema to ask the model for, and the parsing of the
answer into the HandoffDelta the router absorbs.

The schemas keep to the subset strict structured outputs accept (every property required,
no additional properties, no string lengths); the lengths the contracts allow are checked
here on parsing, and a violation is a schema mismatch like any other.
"""

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas._types import ShortText, Text
from schemas.records import HandoffDelta, Role, Verdict, Verification
from services.skills import output_of

MAX_EVIDENCE = 16


class OutputError(ValueError):
    """The model's answer is not usable: ``invalid_json`` or ``schema`` (a mismatch)."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem


class _Output(BaseModel):
    # Extra keys are ignored: they cost nothing and models in json_object mode add them.
    model_config = ConfigDict(extra="ignore")


class _Planner(_Output):
    subproblem: Text = Field(min_length=1)


class _Evidence(_Output):
    evidence: list[Text] = Field(max_length=MAX_EVIDENCE)


class _Solver(_Output):
    draft_answer: Text = Field(min_length=1)


class _Critic(_Output):
    critique: Text = Field(min_length=1)


class _Verifier(_Output):
    verdict: Verdict
    rationale: ShortText


class _Synthesizer(_Output):
    merged_answer: Text = Field(min_length=1)


class _Evaluator(_Output):
    done: bool
    final_answer: Text


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


_PROPERTIES: dict[Role, dict[str, dict[str, Any]]] = {
    Role.PLANNER: {"subproblem": _text("the subproblems to solve, in order")},
    Role.MEMORY: {
        "evidence": {
            "type": "array",
            "items": _text("one fact relevant to the goal, with its source if known"),
            "maxItems": MAX_EVIDENCE,
        }
    },
    Role.SOLVER: {"draft_answer": _text("the answer to the goal")},
    Role.CRITIC: {"critique": _text("the weaknesses of the draft answer")},
    Role.VERIFIER: {
        "verdict": {"type": "string", "enum": [v.value for v in Verdict]},
        "rationale": _text("why, in a few sentences (at most 2000 characters)"),
    },
    Role.SYNTHESIZER: {"merged_answer": _text("one answer merging the drafts and critique")},
    Role.EVALUATOR: {
        "done": {"type": "boolean", "description": "whether the answer is final"},
        "final_answer": _text("the final answer (empty when not done)"),
    },
}
_PROPERTIES[Role.WEB_SEARCH] = _PROPERTIES[Role.MEMORY]

_MODELS: dict[Role, type[_Output]] = {
    Role.PLANNER: _Planner,
    Role.MEMORY: _Evidence,
    Role.WEB_SEARCH: _Evidence,
    Role.SOLVER: _Solver,
    Role.CRITIC: _Critic,
    Role.VERIFIER: _Verifier,
    Role.SYNTHESIZER: _Synthesizer,
    Role.EVALUATOR: _Evaluator,
}


def output_schema(role: Role) -> dict[str, Any]:
    properties = _PROPERTIES[role]
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def response_format(role: Role, mode: str) -> dict[str, Any]:
    """The ``response_format`` of a request: the schema itself where the model supports
    structured outputs, else plain JSON mode (the schema then goes into the prompt)."""
    if mode == "json_object":
        return {"type": "json_object"}
    schema = {"name": output_of(role), "strict": True, "schema": output_schema(role)}
    return {"type": "json_schema", "json_schema": schema}


def parse(role: Role, content: str) -> tuple[HandoffDelta, bool]:
    """The delta and the done flag in a model's answer; raises :class:`OutputError`."""
    try:
        raw = json.loads(unfenced(content))
    except ValueError as error:
        raise OutputError("invalid_json", f"not JSON: {error}") from None
    try:
        output = _MODELS[role].model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in error.errors()
        )
        raise OutputError("schema", f"does not match the schema: {problems}") from None
    return _delta(output), isinstance(output, _Evaluator) and output.done


def _delta(output: _Output) -> HandoffDelta:
    match output:
        case _Planner():
            return HandoffDelta(subproblem=output.subproblem)
        case _Evidence():
            return HandoffDelta(evidence=[e for e in output.evidence if e.strip()])
        case _Solver():
            return HandoffDelta(draft_answer=output.draft_answer)
        case _Critic():
            return HandoffDelta(critique=output.critique)
        case _Verifier():
            return HandoffDelta(verification=Verification(**output.model_dump()))
        case _Synthesizer():
            return HandoffDelta(merged_answer=output.merged_answer)
        case _Evaluator():
            # The evaluator's final answer is the trajectory's answer (merged_answer is
            # what TrajectoryCompleted reports first).
            final = output.final_answer.strip()
            return HandoffDelta(merged_answer=final) if output.done and final else HandoffDelta()
    raise TypeError(f"no delta for {type(output).__name__}")


def unfenced(content: str) -> str:
    """JSON-mode models sometimes wrap the object in a Markdown code fence."""
    text = content.strip()
    if text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        return text.removeprefix("json").strip()
    return text


def correction(content: str, error: OutputError) -> list[dict[str, str]]:
    """Show the model its answer and what is wrong with it, once."""
    return [
        {"role": "assistant", "content": content},
        {
            "role": "user",
            "content": f"That reply is unusable ({error}). Reply again with only one JSON "
            "object matching the schema.",
        },
    ]
