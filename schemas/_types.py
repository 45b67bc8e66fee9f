"""Constrained scalar types shared by every contract."""

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, StringConstraints


@dataclass(frozen=True, slots=True)
class Meaning:
    """What a scalar type is for, in the docs' table of scalar types; validation and the
    JSON Schemas ignore it (a field says what it holds in its own description)."""

    text: str


Unit = Annotated[float, Field(ge=0.0, le=1.0), Meaning("a probability-like score or feature")]

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"),
    Meaning("names of tenants, task classes, cells, models, judges: short and log-safe"),
]

# Kafka allows up to 249 of these characters.
TopicName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$"),
    Meaning("a Kafka topic name, prefix included (up to 249 characters)"),
]

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/~\-]+$"),
    Meaning("ids chosen by callers (task, trajectory, event): printable, no whitespace"),
]

# Longer than an Identifier so that every Identifier with any step up to 1000 still makes a
# valid decision id.
DecisionId = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=128 + 5, pattern=r"^[A-Za-z0-9_.:@/~\-]+:[0-9]{1,4}$"
    ),
    Meaning("`<trajectory_id>:<step>`, see [Ids and deduplication](#ids-and-deduplication)"),
]

ActionId = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=160,
        pattern=(
            r"^(skip:[A-Za-z0-9][A-Za-z0-9_\-]*"
            r"|[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)?(@[A-Za-z0-9_.:/\-]+)?)$"
        ),
    ),
    Meaning("`cell`, `cell.protocol`, `cell.protocol@model` or `skip:cell`"),
]

SignatureText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512),
    Meaning("the canonical text of a folded state (`services.policy.signature`)"),
]

Text = Annotated[
    str,
    StringConstraints(max_length=32_000),
    Meaning("free text written by cells or supplied with a task"),
]

ShortText = Annotated[
    str,
    StringConstraints(max_length=2_000),
    Meaning("short free text: constraints, rationales, reasons, metadata values"),
]
