"""The replay driver: submit a scenario's tasks epoch by epoch and follow what comes back.

A task counts as in flight from its submission until the learner has backed it up (its id
appears in a policy snapshot's checkpoint), so at most ``concurrency`` tasks are routed
with a policy that has not yet learned from the ones before them. An epoch ends when every
one of its tasks has completed, been judged and been backed up; the next epoch then routes
with everything learned so far. With ``concurrency`` 1 every task is routed with the policy
that learned from all earlier ones, exactly as the in-process engine runs.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.events import PolicySnapshot, RewardObserved, StepOutcome, TrajectoryCompleted
from schemas.headers import as_kafka, event_headers
from schemas.records import StepStatus
from services.demo.tasks import epoch_submissions
from services.policy.chunks import Chunks
from services.runtime.codec import Rejected, decode, encode
from services.runtime.kafka import aiokafka_options
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.sim.corpus import Corpus
from services.sim.scenario import Scenario

#: Waits until the routers serve at least this policy version.
RouterSync = Callable[[int], Awaitable[None]]
#: Raises when the run cannot go on (a service process died).
HealthCheck = Callable[[], None]

_FOLLOWED = ("trajectories", "rewards", "policy", "outcomes")
_TICK_S = 0.5


class Stalled(RuntimeError):
    """Nothing came back for too long; the message says what is missing."""


@dataclass
class Observed:
    """Everything the services published that a report needs, keyed by trajectory id."""

    completed: dict[str, TrajectoryCompleted] = field(default_factory=dict)
    rewards: dict[str, RewardObserved] = field(default_factory=dict)
    learned: set[str] = field(default_factory=set)
    snapshot: PolicySnapshot | None = None
    # What each step cost (USD), per trajectory and step: a redelivered outcome overwrites
    # its own entry instead of counting twice.
    step_costs: dict[str, dict[int, float]] = field(default_factory=dict)
    # A trajectory or reward seen more than once: at-least-once delivery made visible.
    repeated_completions: int = 0
    repeated_rewards: int = 0
    unreadable: int = 0

    @property
    def version(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.version

    def cost_usd(self, trajectory_id: str) -> float:
        return sum(self.step_costs.get(trajectory_id, {}).values())

    def outcomes_seen(self, trajectory_id: str) -> bool:
        """Every step the completed trajectory invoked has had its StepOutcome read (they
        are on another topic than the completion, so they may arrive after it)."""
        completed = self.completed.get(trajectory_id)
        if completed is None:
            return False
        invoked = {e.step for e in completed.state.visited if e.status is not StepStatus.SKIPPED}
        return invoked <= self.step_costs.get(trajectory_id, {}).keys()

    def finished(self, trajectory_id: str) -> bool:
        return (
            trajectory_id in self.learned
            and trajectory_id in self.completed
            and trajectory_id in self.rewards
        )


class Follower:
    """Reads the trajectories, rewards, policy and outcomes topics of one deployment from the
    start, with no consumer group (it must see everything and commit nothing)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.observed = Observed()
        self.changed = asyncio.Event()
        # No group: every partition is assigned at once and read from its beginning,
        # nothing is committed.
        self._consumer = AIOKafkaConsumer(
            *(settings.topic(name) for name in _FOLLOWED),
            **aiokafka_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A policy snapshot holds the whole graph; let one always fit a fetch.
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=min(100, settings.kafka_fetch_max_wait_ms),
        )
        self._task: asyncio.Task[None] | None = None
        self._chunks = Chunks()

    async def __aenter__(self) -> Self:
        # The services create their topics as they start; creating them here too (the call
        # leaves existing ones alone) lets the demo follow a deployment still starting.
        await ensure_topics(self.settings)
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow(), name="demo-follower")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self) -> None:
        topics = {self.settings.topic(name): name for name in _FOLLOWED}
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for partition, records in batches.items():
                kind = topics[partition.topic]
                for record in records:
                    self._take(kind, record.value)
            if batches:
                self.changed.set()

    def _take(self, kind: str, value: bytes | None) -> None:
        observed = self.observed
        if kind == "trajectories":
            completed = decode(value, TrajectoryCompleted)
            if isinstance(completed, Rejected):
                observed.unreadable += 1
                return
            observed.repeated_completions += completed.trajectory_id in observed.completed
            observed.completed[completed.trajectory_id] = completed
        elif kind == "rewards":
            reward = decode(value, RewardObserved)
            if isinstance(reward, Rejected):
                observed.unreadable += 1
                return
            observed.repeated_rewards += reward.trajectory_id in observed.rewards
            observed.rewards[reward.trajectory_id] = reward
        elif kind == "outcomes":
            outcome = decode(value, StepOutcome)
            if isinstance(outcome, Rejected):
                observed.unreadable += 1
                return
            costs = observed.step_costs.setdefault(outcome.trajectory_id, {})
            costs[outcome.step] = outcome.cost_usd
        else:
            read = decode(value, PolicySnapshot)
            if isinstance(read, Rejected):
                observed.unreadable += 1
                return
            snapshot = self._chunks.add(read)  # a snapshot in chunks counts once whole
            if snapshot is None:
                return
            if snapshot.tenant != self.settings.tenant or snapshot.version < observed.version:
                return
            observed.learned.update(snapshot.checkpoint.recent_ids)
            observed.snapshot = snapshot

    async def until(
        self,
        done: Callable[[], bool],
        *,
        waiting_for: Callable[[], str],
        stall_s: float,
        check: HealthCheck | None = None,
    ) -> None:
        """Wait until ``done()``; raise Stalled when nothing new arrives for ``stall_s``."""
        last_change = time.monotonic()
        while not done():
            if self._task is not None and self._task.done():
                self._task.result()  # the follower failed: raise its error here
            if check is not None:
                check()
            if time.monotonic() - last_change > stall_s:
                raise Stalled(f"nothing arrived for {stall_s:.0f} s; waiting for {waiting_for()}")
            try:
                await asyncio.wait_for(self.changed.wait(), _TICK_S)
            except TimeoutError:
                continue
            self.changed.clear()
            last_change = time.monotonic()


@dataclass
class EpochRun:
    epoch: int
    task_ids: list[str]
    wall_s: float


@dataclass
class Replay:
    """Replays ``scenario`` (seeded like the engine) into the deployment of ``settings``; with
    a ``corpus`` each task asks its question, with ``per_class`` only each class's first
    tasks are submitted."""

    settings: Settings
    scenario: Scenario
    seed: int
    concurrency: int = 8
    stall_s: float = 120.0
    sync_router: RouterSync | None = None
    check: HealthCheck | None = None
    on_finished: Callable[[int], None] = lambda count: None
    corpus: Corpus | None = None
    per_class: int | None = None
    #: A task stays in flight until its steps' outcomes were read too, so that the costs
    #: reported for it are complete.
    with_costs: bool = False
    follower: Follower | None = field(default=None, init=False)

    async def run(self, epochs: Iterable[int]) -> tuple[list[EpochRun], Observed]:
        runs = []
        async with (
            Follower(self.settings) as follower,
            AIOKafkaProducer(**aiokafka_options(self.settings), acks="all") as producer,
        ):
            self.follower = follower
            for epoch in epochs:
                runs.append(await self._epoch(epoch, follower, producer))
        return runs, follower.observed

    async def _epoch(self, epoch: int, follower: Follower, producer: AIOKafkaProducer) -> EpochRun:
        began = time.monotonic()
        observed = follower.observed
        topic = self.settings.topic("tasks")
        tasks = epoch_submissions(
            self.scenario,
            self.seed,
            epoch,
            tenant=self.settings.tenant,
            corpus=self.corpus,
            per_class=self.per_class,
        )
        in_flight: set[str] = set()

        def settle() -> int:
            finished = {
                t
                for t in in_flight
                if observed.finished(t) and (not self.with_costs or observed.outcomes_seen(t))
            }
            in_flight.difference_update(finished)
            if finished:
                self.on_finished(len(finished))
            return len(in_flight)

        def missing() -> str:
            return _describe_missing(in_flight, observed, self.with_costs)

        for task in tasks:
            await follower.until(
                lambda: settle() < self.concurrency,
                waiting_for=missing,
                stall_s=self.stall_s,
                check=self.check,
            )
            if self.sync_router is not None:
                await self.sync_router(observed.version)
            headers = as_kafka(event_headers(task, "demo"))
            await producer.send_and_wait(
                topic, encode(task), key=task.task_id.encode(), headers=headers
            )
            in_flight.add(task.task_id)
        await follower.until(
            lambda: settle() == 0, waiting_for=missing, stall_s=self.stall_s, check=self.check
        )
        return EpochRun(epoch, [t.task_id for t in tasks], time.monotonic() - began)


def _describe_missing(in_flight: set[str], observed: Observed, with_costs: bool) -> str:
    states = {
        "a TrajectoryCompleted": [t for t in in_flight if t not in observed.completed],
        "a RewardObserved": [t for t in in_flight if t not in observed.rewards],
        "a policy snapshot backing it up": [t for t in in_flight if t not in observed.learned],
    }
    if with_costs:
        states["the StepOutcomes of its steps"] = [
            t for t in in_flight if t in observed.completed and not observed.outcomes_seen(t)
        ]
    parts = [
        f"{len(ids)} without {what} (e.g. {sorted(ids)[0]})" for what, ids in states.items() if ids
    ]
    return f"{len(in_flight)} tasks in flight: " + "; ".join(parts)
