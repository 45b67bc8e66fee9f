"""How the judge scores a group: by the scorer ``settings.judge_scorer_name`` names, an entry
point of ``agensbus.judges`` (the simulated one follows the scenario's world, the openai one
asks judge models). Every scorer counts what it did in the judge metrics and answers for its
own readiness."""

import logging
from collections.abc import Collection
from typing import Protocol, cast

from schemas.events import RewardObserved, TrajectoryCompleted
from services.judge.metrics import JudgeMetrics
from services.policy.pipeline import Pipeline
from services.runtime.plugins import JUDGES, load_factory
from services.runtime.settings import Settings


class Scorer(Protocol):
    #: The task classes this scorer can judge; ``None``: any class.
    @property
    def classes(self) -> Collection[str] | None: ...

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        """Rewards of the group's trajectories, in group order; one no judge scored has
        none."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]: ...


class ScorerFactory(Protocol):
    """What an ``agensbus.judges`` entry point names: builds the scorer at start, or raises
    :class:`PluginConfigError` saying what to fix."""

    def __call__(
        self, settings: Settings, pipeline: Pipeline, metrics: JudgeMetrics, log: logging.Logger
    ) -> Scorer: ...


def make_scorer(
    settings: Settings, pipeline: Pipeline, metrics: JudgeMetrics, log: logging.Logger
) -> Scorer:
    """The scorer ``settings`` names (by default the one named like the worker backend)."""
    factory = load_factory(JUDGES, settings.judge_scorer_name)
    return cast(ScorerFactory, factory)(settings, pipeline, metrics, log)
