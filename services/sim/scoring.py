"""The simulated judge as the judge service's scorer: the scenario's judges score each
trajectory's latent quality (the ``simulated`` entry point of ``agensbus.judges``)."""

import logging
from collections.abc import Collection, Iterable

from schemas.events import RewardObserved, TrajectoryCompleted
from services.judge import core
from services.judge.metrics import JudgeMetrics
from services.policy.pipeline import Pipeline
from services.runtime.settings import Settings
from services.sim.backend import scenario_over
from services.sim.judge import SimulatedJudge
from services.sim.scenario import Scenario
from services.sim.world import World


def score_group(
    trajectories: Iterable[TrajectoryCompleted], world: World, judge: SimulatedJudge
) -> list[RewardObserved]:
    """One RewardObserved per trajectory, scored side by side, sharing the group's id."""
    members = list(trajectories)
    judgements = judge.score_group((t.trajectory_id, world.true_quality(t.state)) for t in members)
    return core.rewards(members, judgements)


class SimulatedScorer:
    def __init__(self, scenario: Scenario, seed: int, metrics: JudgeMetrics) -> None:
        self.scenario = scenario
        self.world = World(scenario, seed)
        self.judge = SimulatedJudge(scenario.judges, seed)
        self.metrics = metrics

    @property
    def classes(self) -> Collection[str] | None:
        # The simulated judge scores the scenario's latent quality, known per class only.
        return tuple(self.scenario.classes)

    async def score(self, members: list[TrajectoryCompleted]) -> list[RewardObserved]:
        rewards = score_group(members, self.world, self.judge)
        self.metrics.scored(rewards)
        return rewards

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def readiness(self) -> tuple[bool, str]:
        return True, "simulated judge: runs in this process"


def simulated_scorer(
    settings: Settings, pipeline: Pipeline, metrics: JudgeMetrics, log: logging.Logger
) -> SimulatedScorer:
    return SimulatedScorer(scenario_over(settings, pipeline), settings.seed, metrics)
