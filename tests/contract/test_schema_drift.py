"""The checked-in artefacts (JSON Schemas, AsyncAPI, docs/events.md) match the models."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import generate
from schemas._base import Record
from schemas.events import EVENT_TYPES
from schemas.generate import (
    ASYNCAPI_FILE,
    CONTRACTS,
    EVENTS_DOC,
    JSON_DIR,
    PROJECT_ROOT,
    REGENERATE_HINT,
    contract_version,
    expected_files,
    main,
    render_json,
    stale_files,
)
from schemas.topics import TOPICS, event_of, topic_of

# The key of every topic that is keyed by a field of its event.
DESIGN_KEYS = {
    "tasks": "task_id",
    "decisions": "trajectory_id",
    "outcomes": "trajectory_id",
    "trajectories": "trajectory_id",
    "rewards": "trajectory_id",
}
# Generated once: the tests below compare against it, none of them changes the models.
EXPECTED = expected_files()


@pytest.mark.parametrize("path", sorted(EXPECTED, key=str), ids=str)
def test_checked_in_file_matches_the_models(path: Path) -> None:
    target = PROJECT_ROOT / path
    assert target.exists(), f"{path} is missing: {REGENERATE_HINT}"
    assert target.read_text("utf-8") == EXPECTED[path], (
        f"{path} differs from what the models generate: {REGENERATE_HINT}"
    )


def test_no_schema_file_outlives_its_model() -> None:
    stale = stale_files(PROJECT_ROOT, EXPECTED)
    assert not stale, (
        f"{', '.join(map(str, stale))} belong to no model (renamed or removed?): {REGENERATE_HINT}"
    )


def test_check_names_every_drifted_file_and_write_repairs_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path)]
    assert main(out) == 0
    assert main(["--check", *out]) == 0
    (tmp_path / JSON_DIR / "Decision.json").write_text("{}\n")
    (tmp_path / JSON_DIR / "Ghost.json").write_text("{}\n")
    (tmp_path / EVENTS_DOC).unlink()
    capsys.readouterr()

    assert main(["--check", *out]) == 1
    report = capsys.readouterr().err
    assert f"{JSON_DIR / 'Decision.json'} differs" in report
    assert f"{JSON_DIR / 'Ghost.json'} has no model" in report
    assert f"{EVENTS_DOC} is missing" in report
    assert "python -m schemas.generate" in report
    assert "TaskSubmitted.json" not in report

    assert main(out) == 0
    assert not (tmp_path / JSON_DIR / "Ghost.json").exists()
    assert main(["--check", *out]) == 0


def test_generation_is_deterministic_and_canonical() -> None:
    assert expected_files() == EXPECTED
    for path, text in EXPECTED.items():
        if path.suffix == ".json":
            assert text == render_json(json.loads(text)), path


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_each_schema_names_itself_and_its_version(name: str) -> None:
    schema = json.loads(EXPECTED[JSON_DIR / f"{name}.json"])
    version = contract_version(name)
    assert schema["$id"] == f"urn:agensbus:schema:{name}:{version}"
    assert schema["title"] == f"{name} v{version}"
    assert schema["additionalProperties"] is False


def test_the_topics_follow_the_design() -> None:
    assert [topic.event for topic in TOPICS] == list(EVENT_TYPES)
    assert {t.name: t.key_field for t in TOPICS if t.key_field} == DESIGN_KEYS
    assert [t.name for t in TOPICS if t.compacted] == ["policy"]
    for topic in TOPICS:
        if topic.key_field:
            schema = json.loads(EXPECTED[JSON_DIR / f"{topic.event.__name__}.json"])
            assert topic.key_field in schema["required"], topic.name


def test_every_event_travels_on_one_topic_of_the_table() -> None:
    names = [topic.name for topic in TOPICS]
    assert len(set(names)) == len(names)
    for event in EVENT_TYPES:
        assert event_of(topic_of(event)) is event
    assert event_of("no-such-topic") is None


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_asyncapi_document_describes_every_topic() -> None:
    document = yaml.safe_load(EXPECTED[ASYNCAPI_FILE])
    assert document["asyncapi"] == "3.0.0"
    assert document["components"]["parameters"]["prefix"]["default"] == "agensbus."
    assert list(document["channels"]) == [topic.name for topic in TOPICS]
    for topic in TOPICS:
        name = topic.event.__name__
        channel = document["channels"][topic.name]
        assert channel["address"] == "{prefix}" + topic.name
        binding = channel["bindings"]["kafka"]
        configuration = dict(binding["topicConfiguration"])
        assert configuration.pop("cleanup.policy") == ["compact" if topic.compacted else "delete"]
        # The table's Kafka configs, as numbers where Kafka's text is one.
        expected = {k: v for k, v in topic.configs.items() if k != "cleanup.policy"}
        assert {k: str(v) for k, v in configuration.items()} == expected
        assert binding.get("partitions") == topic.partitions
        message = _resolve(document, channel["messages"][name]["$ref"])
        payload = PROJECT_ROOT / ASYNCAPI_FILE.parent / message["payload"]["schema"]["$ref"]
        assert json.loads(payload.read_text("utf-8"))["title"] == f"{name} v1"
        key = message["bindings"]["kafka"]["key"]
        assert (f"`{topic.key_field}`" in key["description"]) == bool(topic.key_field)
    for operation in document["operations"].values():
        channel = _resolve(document, operation["channel"]["$ref"])
        for ref in operation["messages"]:
            assert _resolve(document, ref["$ref"]) in channel["messages"].values()


def test_the_prefix_is_configurable(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--prefix", "prod.eu."]) == 0
    document = yaml.safe_load((tmp_path / ASYNCAPI_FILE).read_text("utf-8"))
    assert document["components"]["parameters"]["prefix"]["default"] == "prod.eu."
    assert "`prod.eu.tasks`" in (tmp_path / EVENTS_DOC).read_text("utf-8")


def test_the_docs_must_keep_every_generated_block() -> None:
    template = (PROJECT_ROOT / EVENTS_DOC).read_text("utf-8")
    without_records = template.replace("<!-- generated: records -->", "")
    with pytest.raises(ValueError, match="records"):
        generate.render_events_doc(without_records, "agensbus.")


def test_a_field_without_a_description_stops_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Undescribed(Record):
        count: int = 0

    monkeypatch.setitem(generate.CONTRACTS, "Undescribed", Undescribed)
    with pytest.raises(ValueError, match=r"Undescribed\.count has no description"):
        expected_files()
