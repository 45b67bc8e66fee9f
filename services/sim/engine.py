"""The in-process loop: router logic, simulated world and judge, online learning, no Kafka.

Per epoch every class contributes ``count`` tasks in an order shuffled by (seed, epoch).
Each trajectory runs to termination, is judged on its own (the simulated judge has no peer
effects, so grouping would not change a score), and its hybrid reward is backed up into
the graph before the next trajectory starts, as the learner would do online.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from schemas.events import Termination, TrajectoryCompleted
from schemas.records import RewardConfig, TrajectoryState
from services.policy import (
    PAPER_REWARD,
    PolicyGraph,
    PolicySetup,
    absorb,
    advance,
    backup,
    hybrid_reward,
    start_state,
    trajectory_completed,
)
from services.policy.outcomes import Judgement
from services.sim.judge import SimulatedJudge
from services.sim.oracle import Oracle
from services.sim.rng import stream
from services.sim.scenario import Scenario, TaskClass
from services.sim.world import World


def epoch_order(scenario: Scenario, seed: int, epoch: int) -> list[tuple[TaskClass, int]]:
    """Every class's ``count`` tasks as (class, index), in an order shuffled by (seed, epoch)."""
    tasks = [(c, i) for c in scenario.classes.values() for i in range(c.count)]
    stream(seed, "order", epoch).shuffle(tasks)
    return tasks


def epoch_tasks(scenario: Scenario, seed: int, epoch: int) -> list[tuple[str, TaskClass]]:
    """The epoch's tasks as (task_id, class) in the order they run. ``agensbus demo`` submits
    exactly these, so a replay through the services meets the same tasks as the engine."""
    return [
        (f"e{epoch:03d}-{c.name}-{index:04d}", c) for c, index in epoch_order(scenario, seed, epoch)
    ]


@dataclass(frozen=True, slots=True)
class TrajectoryRecord:
    epoch: int
    task_class: str
    state: TrajectoryState
    termination: Termination
    decisions: int
    skips: int
    true_quality: float
    judgement: Judgement
    reward: float
    regret: float

    def completed(self, tenant: str = "default", version: int = 0) -> TrajectoryCompleted:
        """The event a router publishes for this trajectory's end."""
        return trajectory_completed(self.state, self.termination, tenant, version)


@dataclass(frozen=True, slots=True)
class EpochReport:
    epoch: int
    trajectories: int
    true_quality: float
    judge_score: float
    judge_confidence: float
    reward: float
    tokens_per_trajectory: float
    skip_share: float
    regret: float
    per_class: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, epoch: int, records: Sequence[TrajectoryRecord]) -> "EpochReport":
        def mean(values: Sequence[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        decisions = sum(r.decisions for r in records)
        classes = dict.fromkeys(r.task_class for r in records)
        return cls(
            epoch=epoch,
            trajectories=len(records),
            true_quality=mean([r.true_quality for r in records]),
            judge_score=mean([r.judgement.quality for r in records]),
            judge_confidence=mean([r.judgement.confidence for r in records]),
            reward=mean([r.reward for r in records]),
            tokens_per_trajectory=mean([float(r.state.tokens_used) for r in records]),
            skip_share=sum(r.skips for r in records) / decisions if decisions else 0.0,
            regret=mean([r.regret for r in records]),
            per_class={
                name: mean([r.true_quality for r in records if r.task_class == name])
                for name in sorted(classes)
            },
        )


@dataclass
class Engine:
    """Runs epochs against one scenario; ``graph`` learns in place (pass a loaded graph to
    warm start). Engines of one scenario and reward may share an ``oracle``: its enumeration
    is the slowest part of setting up."""

    scenario: Scenario
    setup: PolicySetup
    seed: int = 0
    reward: RewardConfig = PAPER_REWARD
    graph: PolicyGraph = field(default_factory=PolicyGraph)
    oracle: Oracle | None = None

    def __post_init__(self) -> None:
        self.world = World(self.scenario, self.seed)
        self.judge = SimulatedJudge(self.scenario.judges, self.seed)
        self.regret_oracle = self.oracle or Oracle(
            self.scenario, self.reward, allow_skip=self.setup.allow_skip
        )

    def run(
        self,
        epochs: int,
        *,
        first_epoch: int = 1,
        on_trajectory: Callable[[TrajectoryRecord], None] | None = None,
    ) -> list[EpochReport]:
        """Run ``epochs`` epochs numbered from ``first_epoch``; the number keys task ids and
        the task order, so a resumed run continues exactly where a saved one stopped."""
        reports = []
        for epoch in range(first_epoch, first_epoch + epochs):
            records = []
            for record in self.epoch(epoch):
                records.append(record)
                if on_trajectory is not None:
                    on_trajectory(record)
            reports.append(EpochReport.of(epoch, records))
        return reports

    def epoch(self, epoch: int) -> Iterator[TrajectoryRecord]:
        """Run one epoch's tasks, learning after each trajectory."""
        for task_id, task_class in epoch_tasks(self.scenario, self.seed, epoch):
            yield self.trajectory(epoch, task_class, task_id)

    def tasks(self, epoch: int) -> list[tuple[TaskClass, int]]:
        return epoch_order(self.scenario, self.seed, epoch)

    def trajectory(
        self, epoch: int, task_class: TaskClass, task_id: str, trajectory_id: str | None = None
    ) -> TrajectoryRecord:
        """Run one task to its end and learn from it; ``trajectory_id`` names one of several
        rollouts of the task (by default the trajectory is the task's only one)."""
        state = start_state(
            task_id=task_id,
            trajectory_id=trajectory_id or task_id,
            goal=task_class.description,
            features=task_class.features,
            setup=self.setup,
            task_class=task_class.name,
            budget=self.scenario.pipeline.budget,
        )
        decisions = skips = 0
        while True:
            steps, ended = advance(state, self.graph, self.setup)
            decisions += len(steps)
            skips += sum(s.is_skip for s in steps)
            if steps:
                state = steps[-1].state
            if ended is not None:
                break
            variant = steps[-1].variant
            if variant is None:
                raise RuntimeError("advance returned without an invoke or a termination")
            state = absorb(state, self.world.execute(state, variant).result, self.setup)
        quality = self.world.true_quality(state)
        judgement = self.judge.score(state.trajectory_id, quality)
        reward = hybrid_reward(judgement.quality, state.tokens_used, state.retries, self.reward)
        backup(
            self.graph,
            [(state, reward)],
            self.reward,
            [judgement.confidence],
            floor=(self.setup.pool, [judgement.quality]),
        )
        return TrajectoryRecord(
            epoch=epoch,
            task_class=task_class.name,
            state=state,
            termination=ended,
            decisions=decisions,
            skips=skips,
            true_quality=quality,
            judgement=judgement,
            reward=reward,
            regret=self.regret_oracle.regret(state),
        )
