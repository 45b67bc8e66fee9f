"""The Kafka headers every published event carries: its content type and the CloudEvents
attributes in binary mode (the JSON value is the event's data), so a consumer in any
language can route and deduplicate by headers alone without parsing agensbus JSON.

The attributes are read off the event itself, so a re-published event gets the same ones.
"""

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


def as_kafka(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """``headers`` as aiokafka takes them."""
    return [(name, value.encode()) for name, value in headers.items()]
