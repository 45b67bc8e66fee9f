"""Which failures a record will meet again on every redelivery (poison) and which a retry
can cure. A poison record is dead-lettered once and its offset moves on; anything else
(broker unreachable, not the leader, a timeout) keeps the record for a retry."""

import hashlib

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from services.runtime.codec import Rejected

#: Every reason a record is found poison with (their series start at 0).
POISON_REASONS = (
    "record_too_large",
    "invalid_output",
    "serialisation",
    "payload_missing",
    "payload_corrupt",
)
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class Poison(Exception):
    """Raised by code that knows its input can never succeed (a payload missing from the
    store, an output over a size limit): the record is dead-lettered with this reason."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.rejected = Rejected(error_type, reason)


def poison_reason(error: BaseException) -> Rejected | None:
    """Why ``error`` would recur on every retry of its record, or None when it might not."""
    if isinstance(error, Poison):
        return error.rejected
    if isinstance(error, _TOO_LARGE):
        return Rejected(
            "record_too_large", f"an event this record produces is too large to publish: {error}"
        )
    if isinstance(error, ValidationError):
        # Raised while building an event from the record: the same record builds it again.
        return Rejected("invalid_output", f"an event this record produces is invalid: {error}")
    if isinstance(error, PydanticSerializationError | UnicodeError):
        return Rejected(
            "serialisation", f"an event this record produces cannot be encoded: {error}"
        )
    return None


def dead_letter_id(service: str, topic: str, partition: int | None, offset: int | None) -> str:
    """The same record, however often redelivered, gets the same dead-letter id."""
    key = f"dead-letter:{service}:{topic}:{partition}:{offset}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


async def raise_(error: BaseException) -> None:
    """Work that fails with ``error``: hands a failure met elsewhere to code that handles
    the failures of work (a committer's poison path)."""
    raise error
