"""The Kafka headers every published event carries: its content type and the CloudEvents
attributes in binary mode (the JSON value is the event's data), so a consumer in any
language can route and deduplicate by headers alone without parsing agensbus JSON.

The attributes are read off the event itself, so a re-published event gets the same ones.
The AsyncAPI document describes them (``headers_schema``).
"""

from typing import Any

from schemas.events import Event

CONTENT_TYPE = "application/json"
#: The CloudEvents version the ``ce_`` headers follow (its Kafka protocol binding).
CE_SPEC_VERSION = "1.0"
#: ``ce_type`` is this prefix and the event's model name, e.g. ``agensbus.Decision``.
CE_TYPE_PREFIX = "agensbus."


def event_headers(event: Event, source: str) -> dict[str, str]:
    """Content type and CloudEvents headers of ``event``, published by ``source`` (a service
    name, or ``cli``)."""
    return {
        "content-type": CONTENT_TYPE,
        "ce_specversion": CE_SPEC_VERSION,
        "ce_id": event.event_id,
        "ce_type": CE_TYPE_PREFIX + type(event).__name__,
        "ce_source": f"agensbus/{source}",
        "ce_time": event.produced_at.isoformat().replace("+00:00", "Z"),
    }


def headers_schema(event: str) -> dict[str, Any]:
    """A JSON Schema of the headers of the event named ``event``. None is required: a
    reader never needs them, and producers outside agensbus may send none."""
    string = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "content-type": {"const": CONTENT_TYPE},
            "ce_specversion": {"const": CE_SPEC_VERSION},
            "ce_id": {**string, "description": "the event's event_id"},
            "ce_type": {"const": CE_TYPE_PREFIX + event},
            "ce_source": {
                **string,
                "pattern": "^agensbus/",
                "description": "agensbus/ and the publishing service (router, worker, judge, "
                "learner, cli, demo)",
            },
            "ce_time": {**string, "format": "date-time", "description": "the event's produced_at"},
            "traceparent": {**string, "description": "W3C trace context, when tracing is on"},
            "tracestate": {**string, "description": "W3C trace state, when tracing is on"},
        },
    }


def as_kafka(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """``headers`` as aiokafka takes them."""
    return [(name, value.encode()) for name, value in headers.items()]
