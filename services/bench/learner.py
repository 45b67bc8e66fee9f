"""``agensbus bench learner``: how fast learners back up a backlog of trajectories, one
learner and two sharded learner replicas (``learner_sharded``) beside it.

Each run has topics of its own (of ``PARTITIONS`` partitions, so that two replicas own two
each). Its learners start first, as child processes, and once they have settled in their
group (every replica holds shards, together all of them) they are frozen (SIGSTOP) while a
backlog of (TrajectoryCompleted, RewardObserved) pairs is put on the trajectories and
rewards topics, then thawed to drain it: a rebalance at start does not leave one replica
draining alone, and the put does not bound the rate. The pairs are real: a few hundred
trajectories run by the in-process engine over the scenario's simulated world and scored by
its simulated judge, repeated under fresh trajectory ids (the engine takes milliseconds a
trajectory, which would make building the backlog the bench); both runs get the same.

The rate is read off the learners' own ``backups_total`` counters (summed over the
replicas), sampled on their /metrics every few milliseconds: from the last sample before
the first backup to the first sample that counts them all.
"""

import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.events import RewardObserved, TrajectoryCompleted
from services.bench.router import (
    Progress,
    bench_broker,
    bench_settings,
    create_topics,
    producer_of,
)
from services.demo.run import kafka_env
from services.demo.stack import metric_values
from services.pipeline import deployed_pipeline
from services.policy.arms import deployed_arm
from services.runtime.codec import encode
from services.runtime.processes import (
    ServiceProcess,
    ServiceSpec,
    first_exited,
    start_all,
    stop_all,
)
from services.runtime.settings import Settings
from services.sim import Engine, load_scenario

#: Distinct trajectories the engine runs; the backlog repeats them under fresh ids.
DISTINCT = 200
#: How often the learners' counters are read.
SAMPLE_S = 0.05
BACKUPS = "agensbus_learner_backups_total"
SHARDS = "agensbus_learner_shards"
#: Partitions of each run's topics: two replicas own two each.
PARTITIONS = 4
#: The learner replicas of the sharded run.
SHARDED_REPLICAS = 2

Pair = tuple[TrajectoryCompleted, RewardObserved]
Sample = tuple[float, int]  # monotonic seconds, trajectories backed up by then


@dataclass(frozen=True)
class Drain:
    """One run: ``replicas`` learners (sharded when more than one) drained the backlog."""

    replicas: int
    backed_up: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.backed_up / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"per_s": self.per_s}


@dataclass(frozen=True)
class LearnerBenchResult:
    bootstrap: str
    embedded: bool
    trajectories: int
    one: Drain
    sharded: Drain

    @property
    def timed_out(self) -> bool:
        return min(self.one.backed_up, self.sharded.backed_up) < self.trajectories

    @property
    def ratio(self) -> float:
        """The sharded replicas' rate over one learner's (0 when one learner did nothing)."""
        return self.sharded.per_s / self.one.per_s if self.one.per_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "embedded": self.embedded,
            "trajectories": self.trajectories,
            "one": self.one.as_dict(),
            "sharded": self.sharded.as_dict(),
            "ratio": self.ratio,
            "timed_out": self.timed_out,
        }


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


def replica_env(settings: Settings, *, sharded: bool) -> dict[str, str]:
    """What a learner replica of this run reads from its environment."""
    values: dict[str, object] = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "topic_prefix": settings.topic_prefix,
        "topic_partitions": settings.topic_partitions,
        "pipeline": settings.pipeline,
        "scenario": settings.scenario,
        "seed": settings.seed,
        "policy_arm": settings.policy_arm,
        "tenant": settings.tenant,
        "tenants": settings.tenants,
        "learner_group": settings.learner_group,
        "learner_sharded": sharded,
        "log_level": "WARNING",
    }
    named = {f"AGENSBUS_{k.upper()}": str(v) for k, v in values.items() if v is not None}
    return kafka_env(settings) | named


async def _drain(
    settings: Settings,
    distinct: Sequence[Pair],
    count: int,
    replicas: int,
    deadline: float,
    log_dir: Path,
) -> Drain:
    """Start ``replicas`` learners on empty topics of a fresh prefix and wait until they
    share its partitions; then freeze them, put the backlog, thaw them and time the drain."""
    run = bench_settings(settings, settings.kafka_bootstrap or "").model_copy(
        update={"topic_partitions": PARTITIONS, "learner_group": f"bench-{uuid.uuid4().hex[:8]}"}
    )
    await create_topics(run, deadline)
    env = replica_env(run, sharded=replicas > 1)
    processes = [
        ServiceProcess(ServiceSpec(f"learner-{replicas}-{i}", ("learner",), env), log_dir)
        for i in range(replicas)
    ]
    start_all(processes)
    try:
        await _until_shared(processes, PARTITIONS if replicas > 1 else 1, deadline)
        # Frozen while the backlog goes in, so that the drain is timed on a backlog in place
        # (its put would bound the rate otherwise); far within their session timeout.
        for process in processes:
            process.pause()
        try:
            await _put(run, backlog(distinct, count))
        finally:
            for process in processes:
                process.resume()
        samples: list[Sample] = []
        counters = Counters(processes)
        while time.monotonic() < deadline:
            backed_up = counters.read(BACKUPS)
            samples.append((time.monotonic(), backed_up))
            if backed_up >= count:
                break
            await asyncio.sleep(SAMPLE_S)
    finally:
        await asyncio.to_thread(stop_all, processes)
    return Drain(replicas, *drained(samples))


class Counters:
    """A counter summed over replicas. A replica whose endpoint does not answer in time
    (its event loop busy with a batch) keeps the value it showed last: counters only grow."""

    def __init__(self, processes: Sequence[ServiceProcess]) -> None:
        self.processes = processes
        self._last = [0] * len(processes)

    def read(self, name: str) -> int:
        exited = first_exited(self.processes)
        if exited is not None:
            raise exited.failure(f"{exited.name} exited ({exited.describe_exit()})")
        for i, process in enumerate(self.processes):
            values = metric_values(process.metrics_url, name, timeout_s=0.5)
            if values is not None:
                self._last[i] = max(self._last[i], int(sum(values)))
        return sum(self._last)


async def _until_shared(processes: Sequence[ServiceProcess], shards: int, deadline: float) -> None:
    """Until every replica holds shards and together they hold ``shards``: the group has
    settled, and no rebalance is left to disturb the drain."""
    held: list[list[float] | None] = []
    while time.monotonic() < deadline:
        first = first_exited(processes)
        if first is not None:
            raise first.failure(f"{first.name} exited ({first.describe_exit()})")
        held = [metric_values(p.metrics_url, SHARDS) for p in processes]
        counts = [int(sum(h)) if h else 0 for h in held]
        if all(counts) and sum(counts) == shards:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the learners never shared the {shards} shards: they held {held}")


async def _bench(
    settings: Settings, count: int, timeout_s: float, progress: Progress, log_dir: Path
) -> tuple[Drain, Drain]:
    deadline = time.monotonic() + timeout_s
    progress(f"running {min(count, DISTINCT)} trajectories in the engine")
    distinct = await asyncio.to_thread(engine_pairs, settings, min(count, DISTINCT))
    progress(f"one learner: draining a backlog of {count} trajectories")
    one = await _drain(settings, distinct, count, 1, deadline, log_dir)
    progress(f"{SHARDED_REPLICAS} sharded learners: draining a backlog of {count} trajectories")
    sharded = await _drain(settings, distinct, count, SHARDED_REPLICAS, deadline, log_dir)
    return one, sharded


def run_learner_bench(
    settings: Settings,
    *,
    trajectories: int,
    timeout_s: float,
    progress: Progress = lambda _stage: None,
) -> LearnerBenchResult:
    """Drain a backlog of ``trajectories`` on the broker of ``settings`` (an embedded one
    when it names none) with one learner, then with two sharded replicas, each run on topics
    of a fresh prefix; both together stop at ``timeout_s``."""
    with bench_broker(settings) as (bootstrap, embedded), tempfile.TemporaryDirectory() as logs:
        progress("starting" if embedded else f"connecting to {bootstrap}")
        run = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        one, sharded = asyncio.run(_bench(run, trajectories, timeout_s, progress, Path(logs)))
    return LearnerBenchResult(
        bootstrap=bootstrap,
        embedded=embedded,
        trajectories=trajectories,
        one=one,
        sharded=sharded,
    )
