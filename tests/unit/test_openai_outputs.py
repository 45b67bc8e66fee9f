"""Per-role output schemas and the parsing of answers into HandoffDelta."""

import json
from typing import Any

import jsonschema
import pytest

from schemas.records import HandoffDelta, Role, Verdict, Verification
from services.worker.openai.outputs import OutputError, output_schema, parse, response_format

ANSWERS: dict[Role, tuple[dict[str, Any], HandoffDelta, bool]] = {
    Role.PLANNER: ({"subproblem": "1. a 2. b"}, HandoffDelta(subproblem="1. a 2. b"), False),
    Role.MEMORY: ({"evidence": ["x", " ", "y"]}, HandoffDelta(evidence=["x", "y"]), False),
    Role.WEB_SEARCH: ({"evidence": []}, HandoffDelta(), False),
    Role.SOLVER: ({"draft_answer": "42"}, HandoffDelta(draft_answer="42"), False),
    Role.CRITIC: ({"critique": "thin"}, HandoffDelta(critique="thin"), False),
    Role.VERIFIER: (
        {"verdict": "partially_supported", "rationale": "one source"},
        HandoffDelta(
            verification=Verification(verdict=Verdict.PARTIALLY_SUPPORTED, rationale="one source")
        ),
        False,
    ),
    Role.SYNTHESIZER: ({"merged_answer": "43"}, HandoffDelta(merged_answer="43"), False),
    Role.EVALUATOR: ({"done": True, "final_answer": "44"}, HandoffDelta(merged_answer="44"), True),
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_parses_its_answer_which_its_schema_accepts(role: Role) -> None:
    answer, delta, done = ANSWERS[role]
    jsonschema.validate(answer, output_schema(role))
    assert parse(role, json.dumps(answer)) == (delta, done)


@pytest.mark.parametrize("role", list(Role))
def test_schemas_fit_strict_structured_outputs(role: Role) -> None:
    schema = output_schema(role)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    strict = response_format(role, "json_schema")
    assert strict["type"] == "json_schema"
    assert strict["json_schema"]["strict"] is True
    assert strict["json_schema"]["schema"] == schema
    assert response_format(role, "json_object") == {"type": "json_object"}


def test_an_evaluator_not_done_writes_nothing() -> None:
    answer = json.dumps({"done": False, "final_answer": "draft"})
    assert parse(Role.EVALUATOR, answer) == (HandoffDelta(), False)


def test_a_fenced_answer_is_read() -> None:
    assert parse(Role.SOLVER, '```json\n{"draft_answer": "42"}\n```')[0].draft_answer == "42"


@pytest.mark.parametrize(
    ("role", "content", "problem"),
    [
        (Role.SOLVER, "The answer is 42.", "invalid_json"),
        (Role.SOLVER, '{"draft_answer": "42"', "invalid_json"),
        (Role.SOLVER, '{"answer": "42"}', "schema"),
        (Role.SOLVER, '{"draft_answer": ""}', "schema"),
        (Role.SOLVER, '["42"]', "schema"),
        (Role.VERIFIER, '{"verdict": "maybe", "rationale": ""}', "schema"),
        (Role.VERIFIER, json.dumps({"verdict": "supported", "rationale": "x" * 2001}), "schema"),
        (Role.MEMORY, json.dumps({"evidence": ["e"] * 17}), "schema"),
        (Role.EVALUATOR, '{"done": "perhaps", "final_answer": ""}', "schema"),
    ],
)
def test_unusable_answers_say_why(role: Role, content: str, problem: str) -> None:
    with pytest.raises(OutputError) as raised:
        parse(role, content)
    assert raised.value.problem == problem
