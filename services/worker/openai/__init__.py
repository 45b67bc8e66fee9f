"""The openai backend: cells run by models behind OpenAI-compatible chat-completions
endpoints (see docs/models.md)."""

import logging

from services.policy import CellPool
from services.policy.pipeline import Pipeline
from services.runtime.plugins import PluginConfigError
from services.runtime.settings import Settings
from services.skills import SkillError, load_skills
from services.worker.openai.backend import OpenAIBackend
from services.worker.openai.client import ChatClient, RetryPolicy
from services.worker.openai.judge import LLMJudge
from services.worker.openai.models import ModelConfigError, ModelTable, load_models
from services.worker.tools import ToolConfigError, build_tools


def build_backend(settings: Settings, pool: CellPool) -> OpenAIBackend:
    """The backend for ``settings``, serving every model the pool's variants name, with its
    skill cards and tools (the document index is built here, once); raises
    :class:`ModelConfigError`, :class:`SkillError` or :class:`ToolConfigError` when the
    configuration cannot serve the pool."""
    names = [v.model for cell in pool.cells.values() for v in cell.variants]
    table = load_models(settings, names)
    skills = load_skills(settings.skills_dir)
    tools = build_tools(settings)
    log = logging.getLogger("agensbus.worker.openai")
    return OpenAIBackend(pool, table, _client(settings, log), log, skills=skills, tools=tools)


def build_judge(settings: Settings) -> tuple[LLMJudge, ModelTable]:
    """The LLM judge of ``settings.judge_models`` (none named: the default model) and the
    table of exactly those models, for the readiness preflight; raises
    :class:`ModelConfigError` when a judge model cannot be resolved."""
    names: list[str | None] = list(settings.judge_model_list) or [None]
    table = load_models(settings, names)
    judges = [table.resolve(name) for name in names]
    only = ModelTable({spec.name: spec for spec in judges}, table.default)
    log = logging.getLogger("agensbus.judge.openai")
    return LLMJudge(judges, _client(settings, log), log), only


def _client(settings: Settings, log: logging.Logger) -> ChatClient:
    # httpx logs every request at INFO; the worker's own metrics and logs already tell.
    logging.getLogger("httpx").setLevel(max(logging.getLogger().level, logging.WARNING))
    return ChatClient(RetryPolicy(max_retries=settings.openai_max_retries), log=log)


#: What stops a worker of this backend from starting: a user's configuration mistake.
CONFIG_ERRORS = (ModelConfigError, SkillError, ToolConfigError)


def openai_backend(settings: Settings, pipeline: Pipeline) -> OpenAIBackend:
    """The ``openai`` entry point of ``agensbus.backends``."""
    try:
        return build_backend(settings, pipeline.pool)
    except CONFIG_ERRORS as error:
        # Chained: the cause tells which part of the configuration failed.
        raise PluginConfigError(str(error)) from error


__all__ = [
    "CONFIG_ERRORS",
    "LLMJudge",
    "ModelConfigError",
    "OpenAIBackend",
    "build_backend",
    "build_judge",
    "openai_backend",
]
