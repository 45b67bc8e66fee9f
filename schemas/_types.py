"""Constrained scalar types shared by every contract."""

from typing import Annotated

from pydantic import Field, StringConstraints

#: A probability-like score or feature, closed interval [0, 1].
Unit = Annotated[float, Field(ge=0.0, le=1.0)]

#: Names of tenants, task classes, cells, models, judges: short and log-safe.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]

#: A Kafka topic name (Kafka allows up to 249 of these characters).
TopicName = Annotated[
    str, StringConstraints(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$")
]

#: Task, trajectory and event ids chosen by callers: printable, no whitespace.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/~\-]+$")
]

#: ``<trajectory_id>:<step>``; longer than an Identifier so that every
#: Identifier with any step up to 1000 still makes a valid decision id.
DecisionId = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=128 + 5, pattern=r"^[A-Za-z0-9_.:@/~\-]+:[0-9]{1,4}$"
    ),
]

#: An action of the policy: a variant id (``cell``, ``cell.protocol``, ``cell.protocol@model``)
#: or ``skip:<cell>``.
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
]

#: A canonical signature string (see services.policy.signature).
SignatureText = Annotated[str, StringConstraints(min_length=1, max_length=512)]

#: Free text produced by cells or supplied with a task. The bound is the contract's outer
#: one; what a deployment admits is smaller and set in its settings (AGENSBUS_LIMIT_*), and
#: content over the inline limit travels by reference (a PayloadRef).
Text = Annotated[str, StringConstraints(max_length=8_388_608)]

#: A claim check: ``sha256:`` and the hex digest of the stored content's UTF-8 bytes.
PayloadDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]

ShortText = Annotated[str, StringConstraints(max_length=2_000)]
