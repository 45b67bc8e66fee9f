"""Base classes: every contract forbids unknown fields and is immutable once built."""

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A value carried inside events; frozen so a handler cannot mutate what it received."""

    # JSON has no NaN or infinity: pydantic would write them as null, which the reader then
    # rejects, so a non-finite float must fail where the event is built, not downstream.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )
