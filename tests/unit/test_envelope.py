"""What travels around an event: its CloudEvents headers, the Confluent framing readers
accept, the newer contract revisions they accept, and trace context in the headers."""

import json
import struct
from typing import cast

import jsonschema
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.events import TaskSubmitted, TrajectoryCompleted
from schemas.headers import as_kafka, event_headers, headers_schema
from services.runtime.codec import Rejected, decode, encode
from services.runtime.settings import Settings
from services.runtime.tracing import Tracing, start_tracing
from tests.contract.samples import build_samples

TASK = cast(TaskSubmitted, build_samples()["TaskSubmitted"])
COMPLETED = cast(TrajectoryCompleted, build_samples()["TrajectoryCompleted"])


def test_the_cloudevents_headers_come_from_the_events_own_fields() -> None:
    headers = event_headers(TASK, "cli")
    assert headers == {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": TASK.event_id,
        "ce_type": "agensbus.TaskSubmitted",
        "ce_source": "agensbus/cli",
        "ce_time": TASK.produced_at.isoformat().replace("+00:00", "Z"),
    }
    assert as_kafka(headers)[0] == ("content-type", b"application/json")


def test_the_asyncapi_headers_schema_describes_the_headers_sent() -> None:
    jsonschema.validate(event_headers(TASK, "router"), headers_schema("TaskSubmitted"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event_headers(TASK, "router"), headers_schema("Decision"))


def test_a_value_in_the_confluent_wire_format_decodes_as_plain_json() -> None:
    framed = b"\x00" + struct.pack(">I", 17) + encode(TASK)
    assert decode(framed, TaskSubmitted) == TASK
    assert isinstance(decode(b"\x00\x00\x00", TaskSubmitted), Rejected)


def with_fields(event: TrajectoryCompleted, minor: int) -> bytes:
    document = json.loads(encode(event))
    document |= {"schema_minor": minor, "priority": "high"}
    document["state"]["lane"] = 3
    return json.dumps(document).encode()


def test_a_newer_revision_loses_its_unknown_fields_an_older_or_equal_one_is_refused() -> None:
    assert decode(with_fields(COMPLETED, 2), TrajectoryCompleted) == COMPLETED.model_copy(
        update={"schema_minor": 2}
    )
    refused = decode(with_fields(COMPLETED, 0), TrajectoryCompleted)
    assert isinstance(refused, Rejected) and refused.error_type == "schema_invalid"
    assert "priority" in refused.reason and "state.lane" in refused.reason


def test_a_newer_revision_must_still_be_valid_where_it_is_known() -> None:
    document = json.loads(with_fields(COMPLETED, 2))
    document["steps"] = -1
    refused = decode(json.dumps(document).encode(), TrajectoryCompleted)
    assert isinstance(refused, Rejected) and "steps" in refused.reason


def test_tracing_is_off_without_an_endpoint() -> None:
    tracing = start_tracing(Settings(), "router")
    assert not tracing.enabled
    with tracing.span("decision", [("traceparent", b"junk")]):
        assert dict(tracing.headers()) == {}


def test_a_span_continues_the_trace_named_in_the_headers_it_was_given() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sender, receiver = Tracing(provider), Tracing(provider)
    with sender.span("submit"):
        headers = as_kafka(dict(sender.headers()))
    with receiver.span("decision", headers, step=0):
        pass
    with receiver.span("snapshot", links=[headers]):
        pass
    submit, decision, snapshot = exporter.get_finished_spans()
    assert [name for name, _ in headers] == ["traceparent"]
    assert decision.context.trace_id == submit.context.trace_id
    assert decision.parent is not None and decision.parent.span_id == submit.context.span_id
    assert snapshot.context.trace_id != submit.context.trace_id
    assert [link.context.span_id for link in snapshot.links] == [submit.context.span_id]
