"""Serving a :class:`CellSet` as a worker of its own: the built-in worker with the SDK as its
backend, taking only the invoke decisions of the cells the set serves, in a consumer group
named after them (``<worker_group>.<cell>+<cell>``) so that it never shares work with the
built-in worker or with another set."""

import asyncio
import logging

from services.pipeline import deployed_pipeline
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.sdk.backend import CellsBackend
from services.sdk.registry import CellSet
from services.worker.app import build as build_worker


def group_of(settings: Settings, cells: list[str]) -> str:
    """The consumer group of a worker serving ``cells``: the same for every process that
    serves the same cells (they share the work), another for any other set."""
    return f"{settings.worker_group}.{'+'.join(sorted(cells))}"


def cells_service(cells: CellSet, settings: Settings | None = None) -> Service:
    """A worker service running ``cells`` over the pipeline of ``settings``
    (``AGENSBUS_PIPELINE``); ``await service.run()`` in your own event loop and
    ``service.stop()`` to end it, or use :func:`run`. Raises SdkError on misuse."""
    settings = settings or Settings()
    handlers = cells.bind(deployed_pipeline(settings).pool)
    served = sorted({cell for cell, _, _ in handlers})
    settings = settings.model_copy(
        update={
            "worker_cells": ",".join(served),
            "worker_cells_except": "",
            "worker_group": group_of(settings, served),
        }
    )
    backend = CellsBackend(handlers, logging.getLogger("agensbus.worker.cells"))
    return build_worker(settings, backend)


def run(cells: CellSet, settings: Settings | None = None) -> None:
    """Serve ``cells`` until SIGTERM or Ctrl-C (settings: the AGENSBUS_* environment)."""
    asyncio.run(cells_service(cells, settings).run())
