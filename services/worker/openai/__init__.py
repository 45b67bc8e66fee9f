"""The openai backend: cells run by models behind OpenAI-compatible chat-completions
endpoints (see docs/models.md)."""

import logging

from services.policy import CellPool
from services.runtime.settings import Settings
from services.worker.openai.backend import OpenAIBackend
from services.worker.openai.client import ChatClient, RetryPolicy
from services.worker.openai.models import ModelConfigError, load_models


def build_backend(settings: Settings, pool: CellPool) -> OpenAIBackend:
    """The backend for ``settings``, serving every model the pool's variants name;
    raises :class:`ModelConfigError` when the configuration cannot serve them."""
    names = [v.model for cell in pool.cells.values() for v in cell.variants]
    table = load_models(settings, names)
    log = logging.getLogger("agensbus.worker.openai")
    # httpx logs every request at INFO; the worker's own metrics and logs already tell.
    logging.getLogger("httpx").setLevel(max(logging.getLogger().level, logging.WARNING))
    client = ChatClient(RetryPolicy(max_retries=settings.openai_max_retries), log=log)
    return OpenAIBackend(pool, table, client, log)


__all__ = ["ModelConfigError", "OpenAIBackend", "build_backend"]
