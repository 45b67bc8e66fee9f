"""Base classes: every contract forbids unknown fields and is immutable once built."""

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A value carried inside events; frozen so a handler cannot mutate what it received."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
