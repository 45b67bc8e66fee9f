"""``agensbus bench learner``: how fast the learner backs up a backlog of trajectories.

A backlog of (TrajectoryCompleted, RewardObserved) pairs is put on the trajectories and
rewards topics first; then the learner service starts in this process and drains it. The
pairs are real: a few hundred trajectories run by the in-process engine over the scenario's
simulated world and scored by its simulated judge, repeated under fresh trajectory ids (the
engine takes milliseconds a trajectory, which would make building the backlog the bench).

The rate is read off the learner's own ``backups_total`` counter, sampled every few
milliseconds: from the last sample before the first backup to the first sample that counts
them all, so neither its start (restore, group join) nor the sampling is measured.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from schemas.events import RewardObserved, TrajectoryCompleted
from services.bench.router import (
    Progress,
    bench_broker,
    bench_settings,
    create_topics,
    producer_of,
)
from services.learner.app import build
from services.pipeline import deployed_pipeline
from services.policy.arms import deployed_arm
from services.runtime.codec import encode
from services.runtime.settings import Settings
from services.sim import Engine, load_scenario

#: Distinct trajectories the engine runs; the backlog repeats them under fresh ids.
DISTINCT = 200
#: How often the learner's counter is read.
SAMPLE_S = 0.005
BACKUPS = "agensbus_learner_backups_total"

Pair = tuple[TrajectoryCompleted, RewardObserved]
Sample = tuple[float, int]  # monotonic seconds, trajectories backed up by then


@dataclass(frozen=True)
class LearnerBenchResult:
    bootstrap: str
    embedded: bool
    trajectories: int
    backed_up: int
    seconds: float
    timed_out: bool

    @property
    def per_s(self) -> float:
        return self.backed_up / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"per_s": self.per_s}


def drained(samples: Sequence[Sample]) -> tuple[int, float]:
    """Backups and seconds of a drain sampled as (time, backups so far): from the last
    sample that saw none to the first that saw the most."""
    if not samples:
        return 0, 0.0
    most = max(count for _, count in samples)
    if most == 0:
        return 0, 0.0
    start = max((at for at, count in samples if count == 0), default=samples[0][0])
    end = min(at for at, count in samples if count == most)
    return most, end - start


def engine_pairs(settings: Settings, count: int) -> list[Pair]:
    """``count`` trajectories run by the in-process engine, with the simulated judge's
    reward, under the setup the deployed router and learner use."""
    scenario = load_scenario(settings.scenario)
    setup = deployed_arm(settings.policy_arm).setup(deployed_pipeline(settings), settings.seed)
    engine = Engine(scenario, setup, seed=settings.seed)
    classes = list(scenario.classes.values())
    pairs = []
    for i in range(count):
        record = engine.trajectory(1, classes[i % len(classes)], f"bench-{i:06d}")
        reward = record.judgement.to_event(task_id=record.state.task_id, tenant=settings.tenant)
        pairs.append((record.completed(settings.tenant), reward))
    return pairs


def renamed(pair: Pair, trajectory_id: str) -> Pair:
    """The same trajectory and reward as new events of trajectory (and task) ``trajectory_id``."""
    trajectory, reward = pair
    ids = {"trajectory_id": trajectory_id, "task_id": trajectory_id}
    state = trajectory.state.model_copy(update=ids)
    return (
        trajectory.model_copy(update={**ids, "state": state, "event_id": uuid.uuid4().hex}),
        reward.model_copy(update={**ids, "event_id": uuid.uuid4().hex}),
    )


def backlog(distinct: Sequence[Pair], count: int) -> Iterator[Pair]:
    for i in range(count):
        yield renamed(distinct[i % len(distinct)], f"backlog-{i:07d}")


async def _put(settings: Settings, pairs: Iterator[Pair]) -> None:
    """Every pair on its topics, keyed by trajectory as the router and judge key them."""
    async with producer_of(settings) as producer:
        sent = []
        for trajectory, reward in pairs:
            key = trajectory.trajectory_id.encode()
            sent.append(
                await producer.send(settings.topic("trajectories"), encode(trajectory), key=key)
            )
            sent.append(await producer.send(settings.topic("rewards"), encode(reward), key=key))
        await asyncio.gather(*sent)


async def _drain(
    settings: Settings, count: int, timeout_s: float, progress: Progress
) -> tuple[int, float]:
    deadline = time.monotonic() + timeout_s
    progress("creating topics")
    await create_topics(settings, deadline)
    progress(f"running {min(count, DISTINCT)} trajectories in the engine")
    distinct = await asyncio.to_thread(engine_pairs, settings, min(count, DISTINCT))
    progress(f"putting a backlog of {count} trajectories and rewards")
    await _put(settings, backlog(distinct, count))
    service = build(settings)
    service.log.setLevel(logging.ERROR)
    running = asyncio.create_task(service.run())
    samples: list[Sample] = []
    progress("learner: draining the backlog")
    try:
        while time.monotonic() < deadline and not running.done():
            backed_up = int(service.registry.get_sample_value(BACKUPS) or 0)
            samples.append((time.monotonic(), backed_up))
            if backed_up >= count:
                break
            await asyncio.sleep(SAMPLE_S)
    finally:
        service.stop()
        await running
    return drained(samples)


def run_learner_bench(
    settings: Settings,
    *,
    trajectories: int,
    timeout_s: float,
    progress: Progress = lambda _stage: None,
) -> LearnerBenchResult:
    """Drain a backlog of ``trajectories`` on the broker of ``settings`` (an embedded one
    when it names none), on topics of a fresh prefix, stopping at ``timeout_s``."""
    with bench_broker(settings) as (bootstrap, embedded):
        progress("starting" if embedded else f"connecting to {bootstrap}")
        run = bench_settings(settings, bootstrap)
        backed_up, seconds = asyncio.run(_drain(run, trajectories, timeout_s, progress))
    return LearnerBenchResult(
        bootstrap=bootstrap,
        embedded=embedded,
        trajectories=trajectories,
        backed_up=backed_up,
        seconds=seconds,
        timed_out=backed_up < trajectories,
    )
