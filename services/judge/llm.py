"""The judge on real models: judge models behind OpenAI-compatible endpoints score each group
(``judge_scorer=openai``, docs/models.md)."""

import logging
from collections.abc import Collection

from schemas.events import RewardObserved, TrajectoryCompleted
from services.judge import core
from services.judge.metrics import JudgeMetrics
from services.policy.pipeline import Pipeline
from services.runtime.plugins import PluginConfigError
from services.runtime.settings import Settings
from services.worker.openai import CONFIG_ERRORS, build_judge
from services.worker.openai.preflight import Preflight


class LLMScorer:
    def __init__(self, settings: Settings, metrics: JudgeMetrics, log: logging.Logger) -> None:
        self.judge, table = build_judge(settings)
        self.preflight = Preflight(table, self.judge.client, log)
        self.metrics = metrics
        metrics.expect(spec.name for spec in self.judge.judges)

    @property
    def classes(self) -> Collection[str] | None:
        # Models judge what they read: any task class, named or not.
        return None

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        verdict = await self.judge.score_group(members)
        for call in verdict.calls:
            self.metrics.called(call)
        rewards = core.rewards(members, verdict.judgements)
        self.metrics.scored(rewards, unscored=len(verdict.unscored))
        return rewards

    async def start(self) -> None:
        self.preflight.start()

    async def stop(self) -> None:
        await self.preflight.stop()
        await self.judge.client.close()

    def readiness(self) -> tuple[bool, str]:
        return self.preflight.check()


def llm_scorer(
    settings: Settings, pipeline: Pipeline, metrics: JudgeMetrics, log: logging.Logger
) -> LLMScorer:
    """The ``openai`` entry point of ``agensbus.judges``."""
    try:
        return LLMScorer(settings, metrics, log)
    except CONFIG_ERRORS as error:
        # Chained: the cause tells which part of the configuration failed.
        raise PluginConfigError(str(error)) from error
