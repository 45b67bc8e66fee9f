"""Bytes to events and back; anything unusable becomes a DeadLetter with its reason."""

import base64
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import DeadLetter, Event

E = TypeVar("E", bound=Event)

_MAX_REASON = 2_000
#: The most of a rejected value a dead letter keeps: its base64 and the envelope stay well
#: under the producer's 1 MiB request limit, so a too-large record can be dead-lettered.
MAX_KEPT_BYTES = 262_144


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message could not be used: a short error type and a readable reason."""

    error_type: str
    reason: str


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


def decode(raw: bytes | None, model: type[E]) -> E | Rejected:
    """Parse ``raw`` as ``model``; never raises for bad input."""
    if raw is None:
        return Rejected("empty", "the message has no value (a tombstone?)")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = error.errors()
        if problems and problems[0]["type"] == "json_invalid":
            return Rejected("malformed_json", f"not JSON: {problems[0]['msg']}")
        details = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
            for item in problems[:8]
        )
        more = f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""
        return Rejected("schema_invalid", f"not a valid {model.__name__}: {details}{more}")


def dead_letter(
    *,
    event_id: str,
    service: str,
    tenant: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    rejected: Rejected,
) -> DeadLetter:
    reason = rejected.reason
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 1] + "…"
    original = value or b""
    kept = original[:MAX_KEPT_BYTES]
    return DeadLetter(
        event_id=event_id,
        tenant=tenant,
        service=service,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        payload_b64=base64.b64encode(kept).decode(),
        payload_bytes=len(original),
        payload_truncated=len(kept) < len(original),
        reason=reason,
        error_type=rejected.error_type,
    )
