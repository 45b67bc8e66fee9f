"""Your own agents as cells: decorate a function with ``@cell("solver")`` and serve it with
``agensbus serve-cells MODULE`` or :func:`run` (see docs/own-agents.md)."""

from services.sdk.registry import DEFAULT_CELLS, CellFailed, CellSet, SdkError, cell
from services.sdk.serving import cells_service, run
from services.sdk.task import Result, Task

__all__ = [
    "DEFAULT_CELLS",
    "CellFailed",
    "CellSet",
    "Result",
    "SdkError",
    "Task",
    "cell",
    "cells_service",
    "run",
]
