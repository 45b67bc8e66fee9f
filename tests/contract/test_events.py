"""What every reader of a topic may rely on, whoever wrote the message.

Each rule is checked against the pydantic models (what the services run) and, where JSON
Schema can say it, against the checked-in JSON Schema files (what other languages use), so
the two cannot disagree without a test failing.
"""

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from schemas.events import EVENT_TYPES, Event, TaskSubmitted
from schemas.generate import CONTRACTS, EVENTS_DOC, JSON_DIR, PROJECT_ROOT
from schemas.records import ActionScore, TrajectoryState
from tests.contract.samples import TRAJECTORY, build_samples, sample_json

Loc = tuple[str | int, ...]

EVENT_NAMES = [event.__name__ for event in EVENT_TYPES]
ENVELOPE_FIELDS = tuple(Event.model_fields)
VALIDATORS = (jsonschema.Draft202012Validator, jsonschema.Draft7Validator)
SCORE = sample_json("Decision")["scores"][0]
JUDGE = sample_json("RewardObserved")["judges"][0]


def checked_in_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((PROJECT_ROOT / JSON_DIR / f"{name}.json").read_text())
    return schema


def at(data: Any, path: Loc) -> Any:
    for step in path:
        data = data[step]
    return data


def replaced(data: dict[str, Any], path: Loc, value: Any) -> dict[str, Any]:
    at(data, path[:-1])[path[-1]] = value
    return data


def changed(name: str, path: Loc, value: Any) -> dict[str, Any]:
    """The sample of ``name`` as JSON, with the value at ``path`` replaced."""
    return replaced(sample_json(name), path, value)


def rejection_locs(model: type[BaseModel], data: Any) -> list[Loc]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [error["loc"] for error in info.value.errors()]


def assert_model_rejects(name: str, data: Any, path: Loc) -> None:
    locs = rejection_locs(CONTRACTS[name], data)
    assert any(loc[: len(path)] == path for loc in locs), f"rejected at {locs}, not at {path}"


def error_paths(errors: Iterable[jsonschema.ValidationError]) -> Iterator[Loc]:
    """Where each error and, below an ``anyOf`` (a nullable field), each sub-error points."""
    for error in errors:
        yield tuple(error.absolute_path)
        yield from error_paths(error.context or ())


def assert_schema_rejects(name: str, data: Any, path: Loc) -> None:
    schema = checked_in_schema(name)
    for validator in VALIDATORS:
        paths = list(error_paths(validator(schema).iter_errors(data)))
        assert any(p[: len(path)] == path for p in paths), (
            f"{validator.__name__} rejected {name} at {paths}, not at {path}"
        )


def assert_schema_accepts(name: str, data: Any) -> None:
    schema = checked_in_schema(name)
    for validator in VALIDATORS:
        errors = [e.message for e in validator(schema).iter_errors(data)]
        assert not errors, f"{validator.__name__} rejected a valid {name}: {errors}"


# --- round trip and envelope -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_samples_set_every_field(name: str) -> None:
    # The round trip below only proves something for the fields the sample sets.
    sample = build_samples()[name]
    assert sample.model_fields_set == set(type(sample).model_fields)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_json_round_trip_changes_nothing(name: str) -> None:
    original = build_samples()[name]
    text = original.model_dump_json()
    restored = type(original).model_validate_json(text)
    assert restored == original
    assert restored.model_dump_json() == text


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_event_carries_the_envelope(name: str) -> None:
    bare = {k: v for k, v in sample_json(name).items() if k not in ENVELOPE_FIELDS}
    first, second = (CONTRACTS[name].model_validate(bare) for _ in range(2))
    written = json.loads(first.model_dump_json())
    assert written["schema_version"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", written["event_id"])
    assert written["event_id"] != json.loads(second.model_dump_json())["event_id"]
    assert datetime.fromisoformat(written["produced_at"]).utcoffset() is not None
    assert written["tenant"] == "default"
    assert set(ENVELOPE_FIELDS) <= checked_in_schema(name)["properties"].keys()


@pytest.mark.parametrize("naive", ["2026-05-01T12:00:00", datetime(2026, 5, 1, 12)])
@pytest.mark.parametrize("name", EVENT_NAMES)
def test_a_naive_produced_at_is_rejected(name: str, naive: object) -> None:
    assert_model_rejects(name, changed(name, ("produced_at",), naive), ("produced_at",))


# --- unknown fields and bounds ---------------------------------------------------------------

UNKNOWN_FIELD_PLACES: list[tuple[str, Loc]] = [
    *((name, ()) for name in sorted(CONTRACTS)),
    ("TaskSubmitted", ("features",)),
    ("TaskSubmitted", ("budget",)),
    ("Decision", ("scores", 0)),
    ("Decision", ("state", "handoff")),
    ("Decision", ("state", "pending")),
    ("StepOutcome", ("delta", "verification")),
    ("TrajectoryCompleted", ("state", "visited", 0)),
    ("RewardObserved", ("judges", 0)),
    ("PolicySnapshot", ("input_offsets", 0)),
    ("PolicySnapshot", ("policy", "nodes", 0, "edges", "skip:critic")),
    ("PolicyDocument", ("fold",)),
]


@pytest.mark.parametrize(("name", "path"), UNKNOWN_FIELD_PLACES)
def test_unknown_fields_are_rejected(name: str, path: Loc) -> None:
    data = sample_json(name)
    at(data, path)["surprise"] = 1
    assert_model_rejects(name, data, (*path, "surprise"))
    assert_schema_rejects(name, data, path)


def case(name: str, path: Loc, value: Any, label: str) -> Any:
    return pytest.param(name, path, value, id=f"{name}-{label}")


INVALID = [
    # over-long and empty strings
    case("TaskSubmitted", ("goal",), "x" * 8_388_609, "goal-too-long"),
    case("TaskSubmitted", ("goal",), "", "goal-empty"),
    case("TaskSubmitted", ("task_id",), "t" * 129, "task-id-too-long"),
    case("TaskSubmitted", ("tenant",), "a" * 65, "tenant-too-long"),
    case("TaskSubmitted", ("constraints",), ["c" * 2_001], "constraint-too-long"),
    case("Decision", ("signature",), "s" * 513, "signature-too-long"),
    case("Decision", ("state", "handoff", "draft_answer"), "x" * 8_388_609, "draft-too-long"),
    case(
        "Decision",
        ("state", "handoff", "payloads"),
        [{"digest": "md5:0f", "bytes": 1, "field": "evidence"}],
        "payload-digest-not-sha256",
    ),
    case("DeadLetter", ("reason",), "r" * 2_001, "reason-too-long"),
    # unit floats
    case("TaskSubmitted", ("features", "ambiguity_level"), 1.01, "feature-above-1"),
    case("TaskSubmitted", ("features", "cost_sensitivity"), -0.01, "feature-below-0"),
    case("RewardObserved", ("quality",), 1.01, "quality-above-1"),
    case("RewardObserved", ("confidence",), -0.01, "confidence-below-0"),
    case("RewardObserved", ("judges", 0, "axes", "grounding"), 1.01, "axis-above-1"),
    case("Decision", ("state", "beliefs", "uncertainty"), -0.01, "belief-below-0"),
    # propensities
    case("Decision", ("propensity",), 0, "propensity-0"),
    case("Decision", ("propensity",), 1.01, "propensity-above-1"),
    case("Decision", ("state", "visited", 0, "propensity"), 0, "visited-propensity-0"),
    case("Decision", ("state", "pending", "propensity"), 0.0, "pending-propensity-0"),
    # counts
    case("StepOutcome", ("tokens_in",), -1, "negative-tokens"),
    case("StepOutcome", ("retries",), -1, "negative-retries"),
    case("StepOutcome", ("retries",), 101, "too-many-retries"),
    case("StepOutcome", ("cost_usd",), -0.01, "negative-cost"),
    case("TrajectoryCompleted", ("steps",), -1, "negative-steps"),
    case("Decision", ("step",), 1_001, "step-above-1000"),
    case("Decision", ("scores", 0, "visits"), -1, "negative-visits"),
    case("TaskSubmitted", ("rollouts",), 0, "no-rollouts"),
    case("TaskSubmitted", ("rollouts",), 17, "too-many-rollouts"),
    case("TaskSubmitted", ("rollouts",), "two", "rollouts-not-a-number"),
    case("PolicySnapshot", ("input_offsets", 0, "offset"), -1, "negative-offset"),
    case("PolicyDocument", ("nodes", 0, "visits"), -1, "negative-node-visits"),
    case("DeadLetter", ("partition",), -1, "negative-partition"),
    # enums and constants
    case("TrajectoryCompleted", ("regime",), "chaotic", "bad-regime"),
    case("TrajectoryCompleted", ("termination",), "tired", "bad-termination"),
    case("Decision", ("action_kind",), "jump", "bad-action-kind"),
    case("Decision", ("reason",), "hunch", "bad-reason"),
    case("StepOutcome", ("status",), "skipped", "skipped-outcome"),
    case("StepOutcome", ("failure_kind",), "gremlins", "bad-failure-kind"),
    case("StepOutcome", ("delta", "verification", "verdict"), "maybe", "bad-verdict"),
    case("RewardObserved", ("source",), "oracle", "bad-source"),
    case("RewardObserved", ("judges", 0, "axes"), {"style": 0.5}, "bad-axis"),
    case("PolicyDocument", ("selection", "mode"), "greedy", "bad-mode"),
    case("PolicyDocument", ("format",), "agensbus.policy/4", "bad-format"),
    case("TaskSubmitted", ("schema_version",), 2, "unknown-schema-version"),
    case("TaskSubmitted", ("event_type",), "Decision", "wrong-event-type"),
    # action ids and other ids
    *(
        case("Decision", ("action",), bad, f"action-{i}")
        for i, bad in enumerate(
            ["skip:", "a b", "", ".solver", "skip:skip:solver", "solver@", "solver.a.b"]
        )
    ),
    case("StepOutcome", ("action",), "a b", "outcome-action-with-space"),
    case("PolicyDocument", ("nodes", 0, "edges"), {"a b": {"visits": 1}}, "bad-edge-action"),
    case("Decision", ("decision_id",), TRAJECTORY, "decision-id-without-step"),
    case("Decision", ("trajectory_id",), "has space", "id-with-space"),
    case("TaskSubmitted", ("metadata",), {"bad key": "v"}, "bad-metadata-key"),
    case("Decision", ("state", "fold_keys"), {"task_class": "two words"}, "bad-fold-value"),
    # too many items
    case("TaskSubmitted", ("constraints",), ["c"] * 33, "too-many-constraints"),
    case("TaskSubmitted", ("metadata",), {f"k{i}": "v" for i in range(33)}, "big-metadata"),
    case("Decision", ("scores",), [SCORE] * 257, "too-many-scores"),
    case("Decision", ("state", "plan"), [f"c{i}" for i in range(65)], "plan-too-long"),
    case("StepOutcome", ("delta", "evidence"), ["e"] * 65, "too-much-evidence"),
    case("RewardObserved", ("judges",), [JUDGE] * 17, "too-many-judges"),
    case("PolicyDocument", ("fold", "extra_keys"), ["k"] * 9, "too-many-fold-keys"),
]


@pytest.mark.parametrize(("name", "path", "value"), INVALID)
def test_out_of_bounds_values_are_rejected(name: str, path: Loc, value: Any) -> None:
    data = changed(name, path, value)
    assert_model_rejects(name, data, path)
    assert_schema_rejects(name, data, path)


LIMIT_ID = "t" * 128

VALID_EDGES = [
    pytest.param("Decision", {("propensity",): 1}, id="propensity-1"),
    pytest.param("Decision", {("state", "pending", "propensity"): 1.0}, id="pending-1"),
    pytest.param("TaskSubmitted", {("features", "ambiguity_level"): 1.0}, id="feature-1"),
    pytest.param("TaskSubmitted", {("features", "ambiguity_level"): 0}, id="feature-0"),
    pytest.param("RewardObserved", {("quality",): 0.0, ("confidence",): 1}, id="unit-ends"),
    pytest.param("TaskSubmitted", {("goal",): "x" * 32_000}, id="goal-at-limit"),
    pytest.param("TaskSubmitted", {("tenant",): "a" * 64}, id="tenant-at-limit"),
    pytest.param("TaskSubmitted", {("constraints",): ["c"] * 32}, id="constraints-at-limit"),
    pytest.param("TaskSubmitted", {("rollouts",): 16}, id="rollouts-at-limit"),
    pytest.param("StepOutcome", {("retries",): 100}, id="retries-at-limit"),
    pytest.param(
        "Decision",
        {("trajectory_id",): LIMIT_ID, ("decision_id",): f"{LIMIT_ID}:1000", ("step",): 1000},
        id="longest-decision-id",
    ),
    *(
        pytest.param("Decision", {("action",): action}, id=f"action-{action}")
        for action in (
            "solver",
            "skip:critic",
            "solver.chain_of_thought",
            "solver-2.concise@openrouter/meta-llama/llama-3.1-8b:free",
        )
    ),
]


@pytest.mark.parametrize(("name", "changes"), VALID_EDGES)
def test_values_at_the_bounds_are_accepted(name: str, changes: dict[Loc, Any]) -> None:
    data = sample_json(name)
    for path, value in changes.items():
        replaced(data, path, value)
    CONTRACTS[name].model_validate(data)
    assert_schema_accepts(name, data)


@pytest.mark.parametrize("field", ["mean", "penalty", "score", "bonus"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_rejected(field: str, value: float) -> None:
    # JSON cannot carry them: a producer would write null, and its readers would reject it.
    assert rejection_locs(ActionScore, {**SCORE, field: value}) == [(field,)]


@pytest.mark.parametrize("name", ["TaskSubmitted", "Decision"])
def test_an_id_with_a_trailing_newline_is_rejected(name: str) -> None:
    # Model only: JSON Schema patterns follow ECMA-262, where ``$`` ends the text, but the
    # Python jsonschema package uses ``re``, whose ``$`` also matches before a final newline.
    path = ("task_id",) if name == "TaskSubmitted" else ("action",)
    assert_model_rejects(name, changed(name, path, "solver\n"), path)


# --- rules across fields ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["invoked", "skipped"])
def test_trajectory_state_rejects_cells_outside_its_plan(field: str) -> None:
    state = sample_json("Decision")["state"]
    state[field] = [*state[field], "critic"]
    with pytest.raises(ValidationError, match="critic"):
        TrajectoryState.model_validate(state)
    with pytest.raises(ValidationError, match="critic"):
        CONTRACTS["Decision"].model_validate(changed("Decision", ("state",), state))


def test_the_policy_document_rejects_duplicate_signatures() -> None:
    document = sample_json("PolicyDocument")
    document["nodes"][1]["signature"] = document["nodes"][0]["signature"]
    with pytest.raises(ValidationError, match="appears twice"):
        CONTRACTS["PolicyDocument"].model_validate(document)
    with pytest.raises(ValidationError, match="appears twice"):
        CONTRACTS["PolicySnapshot"].model_validate(changed("PolicySnapshot", ("policy",), document))


# --- what a non-Python client writes ---------------------------------------------------------

HAND_WRITTEN_TASK = """
{
  "schema_version": 1,
  "event_type": "TaskSubmitted",
  "event_id": "go-pipeline-000017",
  "produced_at": "2026-05-01T14:00:00.5+02:00",
  "tenant": "acme",
  "task_id": "ticket/OPS-1187",
  "goal": "Summarise the incident timeline \\u2014 with sources.",
  "features": {"ambiguity_level": 0.25, "verification_need": 1},
  "constraints": [],
  "rollouts": 3,
  "budget": {"max_tokens": 9000},
  "metadata": {"origin": "go-client"}
}
"""


def test_a_hand_written_task_validates() -> None:
    task = TaskSubmitted.model_validate_json(HAND_WRITTEN_TASK)
    assert task.task_id == "ticket/OPS-1187"
    assert task.goal == "Summarise the incident timeline \u2014 with sources."
    assert task.produced_at == datetime.fromisoformat("2026-05-01T12:00:00.5+00:00")
    assert (task.features.ambiguity_level, task.features.verification_need) == (0.25, 1.0)
    assert task.features.novelty_level == 0.0
    assert task.budget is not None
    assert (task.budget.max_steps, task.budget.max_tokens) == (24, 9_000)
    assert_schema_accepts("TaskSubmitted", json.loads(HAND_WRITTEN_TASK))


def test_the_smallest_task_needs_only_an_id_and_a_goal() -> None:
    text = '{"task_id": "t-1", "goal": "Say hello."}'
    task = TaskSubmitted.model_validate_json(text)
    assert (task.tenant, task.rollouts, task.schema_version) == ("default", 1, 1)
    assert_schema_accepts("TaskSubmitted", json.loads(text))


def doc_examples() -> list[Any]:
    text = (PROJECT_ROOT / EVENTS_DOC).read_text("utf-8")
    found = re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)```", text, re.S)
    return [pytest.param(name, body, id=name) for name, body in found]


def test_the_docs_show_a_task_example() -> None:
    assert "TaskSubmitted" in [param.values[0] for param in doc_examples()]


@pytest.mark.parametrize(("name", "body"), doc_examples())
def test_the_examples_in_the_docs_validate(name: str, body: str) -> None:
    CONTRACTS[name].model_validate_json(body)
    assert_schema_accepts(name, json.loads(body))


# --- the JSON Schema files -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_each_schema_is_valid_and_accepts_its_sample(name: str) -> None:
    schema = checked_in_schema(name)
    for validator in VALIDATORS:
        validator.check_schema(schema)
    assert_schema_accepts(name, sample_json(name))


@pytest.mark.parametrize(
    ("name", "field"),
    [
        (name, field)
        for name in sorted(CONTRACTS)
        for field in checked_in_schema(name).get("required", [])
    ],
)
def test_a_missing_required_field_is_rejected(name: str, field: str) -> None:
    data = sample_json(name)
    del data[field]
    assert_model_rejects(name, data, (field,))
    for validator in VALIDATORS:
        assert not validator(checked_in_schema(name)).is_valid(data)
