"""Bytes to events and back; anything unusable becomes a DeadLetter with its reason."""

import base64
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import SCHEMA_MINOR, SCHEMA_VERSION, DeadLetter, Event

E = TypeVar("E", bound=Event)

_MAX_REASON = 2_000
#: The error types :func:`decode` rejects with, which any reader may dead-letter.
DECODE_ERRORS = ("empty", "malformed_json", "schema_invalid")
#: The Confluent Schema Registry wire format: this byte, then a 4-byte schema id.
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_PREFIX = 5
#: The most of a rejected value a dead letter keeps: its base64 and the envelope stay well
#: under the producer's 1 MiB request limit, so a too-large record can be dead-lettered.
MAX_KEPT_BYTES = 262_144


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message could not be used: a short error type and a readable reason."""

    error_type: str
    reason: str


def encode(event: BaseModel) -> bytes:
    """The event's JSON, straight to bytes (``model_dump_json`` makes a str first)."""
    return event.__pydantic_serializer__.to_json(event)


def decode(raw: bytes | None, model: type[E]) -> E | Rejected:
    """Parse ``raw`` as ``model``; never raises for bad input. Accepts the Confluent Schema
    Registry framing, and an event of a newer revision of the contract (fields unknown
    here are dropped)."""
    if raw is None:
        return Rejected("empty", "the message has no value (a tombstone?)")
    raw = unframed(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        newer = _of_newer_revision(raw, model, error)
        if newer is not None:
            return newer
        problems = error.errors()
        if problems and problems[0]["type"] == "json_invalid":
            return Rejected("malformed_json", f"not JSON: {problems[0]['msg']}")
        details = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
            for item in problems[:8]
        )
        more = f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""
        return Rejected("schema_invalid", f"not a valid {model.__name__}: {details}{more}")


def unframed(raw: bytes) -> bytes:
    """The JSON of a value in the Confluent wire format (a zero magic byte and a 4-byte
    schema id before it); any other value as it is. JSON never starts with a zero byte."""
    if raw[:1] == CONFLUENT_MAGIC and len(raw) > CONFLUENT_PREFIX:
        return raw[CONFLUENT_PREFIX:]
    return raw


def _of_newer_revision(raw: bytes, model: type[E], error: ValidationError) -> E | None:
    """``raw`` without its unknown fields, when unknown fields are all that is wrong with
    it and it says it was written by a newer revision of this schema version."""
    if any(problem["type"] != "extra_forbidden" for problem in error.errors()):
        return None
    document = json.loads(raw)
    if not (
        isinstance(document, dict)
        and document.get("schema_version") == SCHEMA_VERSION
        and isinstance(minor := document.get("schema_minor"), int)
        and minor > SCHEMA_MINOR
    ):
        return None
    try:
        for problem in error.errors():
            *path, name = problem["loc"]
            parent: Any = document
            for step in path:
                parent = parent[step]
            del parent[name]
        return model.model_validate_json(json.dumps(document))
    except (KeyError, IndexError, TypeError, ValidationError):
        return None  # a path through a union member's name: not a field to drop


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
