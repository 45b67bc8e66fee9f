"""How the judge role scores a group: the scenario's simulated judge, or judge models
behind OpenAI-compatible endpoints (``worker_backend=openai``). Either counts what it did
in the judge metrics and answers for its own readiness."""

import logging
from typing import Protocol

from schemas.events import RewardObserved, TrajectoryCompleted
from services.runtime.settings import Settings
from services.sim import Scenario, SimulatedJudge, World
from services.worker import judge as judging
from services.worker.metrics import JudgeMetrics


class Scorer(Protocol):
    #: The scenario whose task classes this scorer can judge; ``None``: any class.
    scenario: Scenario | None

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        """Rewards of the group's trajectories, in group order; one no judge scored has
        none."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]: ...


class SimulatedScorer:
    def __init__(self, scenario: Scenario, seed: int, metrics: JudgeMetrics) -> None:
        # The simulated judge scores the scenario's latent quality, known per class only.
        self.scenario: Scenario | None = scenario
        self.world = World(scenario, seed)
        self.judge = SimulatedJudge(scenario.judges, seed)
        self.metrics = metrics

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        rewards = judging.score_group(members, self.world, self.judge)
        self.metrics.scored(rewards)
        return rewards

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def readiness(self) -> tuple[bool, str]:
        return True, "simulated judge: runs in this process"


class LLMScorer:
    def __init__(self, settings: Settings, metrics: JudgeMetrics, log: logging.Logger) -> None:
        # Imported here: the openai package builds on the worker's modules.
        from services.worker.openai import build_judge
        from services.worker.openai.preflight import Preflight

        # Models judge what they read: any task class, named or not.
        self.scenario: Scenario | None = None
        self.judge, table = build_judge(settings)
        self.preflight = Preflight(table, self.judge.client, log)
        self.metrics = metrics
        metrics.expect(spec.name for spec in self.judge.judges)

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        verdict = await self.judge.score_group(members)
        for call in verdict.calls:
            self.metrics.called(call)
        rewards = judging.rewards(members, verdict.judgements)
        self.metrics.scored(rewards, unscored=len(verdict.unscored))
        return rewards

    async def start(self) -> None:
        self.preflight.start()

    async def stop(self) -> None:
        await self.preflight.stop()
        await self.judge.client.close()

    def readiness(self) -> tuple[bool, str]:
        return self.preflight.check()


def make_scorer(
    settings: Settings, scenario: Scenario, metrics: JudgeMetrics, log: logging.Logger
) -> Scorer:
    """The LLM judge where cells run on real models, the simulated one otherwise."""
    match settings.worker_backend:
        case "simulated":
            return SimulatedScorer(scenario, settings.seed, metrics)
        case "openai":
            return LLMScorer(settings, metrics, log)
