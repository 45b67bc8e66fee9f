"""Two sharded learner replicas as child processes in one consumer group on inputs of four
partitions, one of them killed with SIGKILL while events flow: the survivor takes the dead
one's shards over from their snapshots, and the merge of every shard's newest snapshot
counts each trajectory exactly once and equals, node for node, what one learner core learns
from the same events. A sharded learner refuses inputs whose partition counts differ."""

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from schemas.events import PolicySnapshot
from services.cli import cli
from services.learner.core import LearnerCore
from services.learner.restore import newest_snapshots
from services.learner.shard import shard_of_key
from services.policy import PolicyGraph
from services.policy.shards import ShardId, merged
from services.runtime.codec import encode
from services.runtime.processes import ServiceProcess, ServiceSpec, http_ok
from services.runtime.reading import Record, read_to_end
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from tests.integration.support_broker import create_topic, run, unique
from tests.unit.support_learner import Pair, assert_same_graph, learner_config, real_pairs

PARTITIONS = 4
PAIRS = 160
CHUNK = 10
CHUNK_NODES = 10
#: A learner is gone from its group once its session times out (aiokafka's 10 s default).
TAKEOVER_S = 40.0
READY_S = 30.0


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"shards-{tag}.",
        learner_group=f"learner-{tag}",
        topic_partitions=PARTITIONS,
        tenants="default,other",
        policy_arm="paper",
    )


@pytest.fixture
def replicas(settings: Settings, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    env = {
        "AGENSBUS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "AGENSBUS_TOPIC_PREFIX": settings.topic_prefix,
        "AGENSBUS_LEARNER_GROUP": settings.learner_group,
        "AGENSBUS_TOPIC_PARTITIONS": str(PARTITIONS),
        "AGENSBUS_TENANTS": settings.tenants,
        "AGENSBUS_POLICY_ARM": "paper",
        "AGENSBUS_LEARNER_SHARDED": "true",
        "AGENSBUS_SNAPSHOT_EVERY": "5",
        "AGENSBUS_SNAPSHOT_INTERVAL_S": "0.5",
        # snapshots go out in chunks: a replica may die between two chunks of a version
        "AGENSBUS_SNAPSHOT_CHUNK_NODES": str(CHUNK_NODES),
        "AGENSBUS_GRACEFUL_TIMEOUT_S": "5",
    }
    processes = [
        ServiceProcess(ServiceSpec(f"learner-{name}", ("learner",), env), tmp_path)
        for name in ("a", "b")
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop(timeout_s=10.0)


async def publish(settings: Settings, pairs: Sequence[Pair]) -> None:
    """Each trajectory and its reward, keyed by the trajectory id as router and judge key
    them, so the two land on the same partition number of their topics."""
    async with AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap) as producer:
        for trajectory, reward in pairs:
            key = trajectory.trajectory_id.encode()
            await producer.send(settings.topic("trajectories"), encode(trajectory), key=key)
            await producer.send(settings.topic("rewards"), encode(reward), key=key)
        await producer.flush()


async def publish_in_chunks(settings: Settings, pairs: Sequence[Pair]) -> None:
    """The pairs a few at a time, so that events are still flowing when a replica dies."""
    for start in range(0, len(pairs), CHUNK):
        await publish(settings, pairs[start : start + CHUNK])
        await asyncio.sleep(0.1)


async def until(
    settings: Settings,
    condition: Callable[[dict[ShardId, PolicySnapshot]], bool],
    timeout_s: float,
) -> dict[ShardId, PolicySnapshot]:
    """The newest snapshot of every shard, once they meet ``condition``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await newest_snapshots(settings, settings.tenant, timeout_s=20.0)
        if condition(found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            described = {n: (s.version, s.backed_up) for n, s in found.items()}
            raise AssertionError(f"the shards never got there: (version, backed_up) {described}")
        await asyncio.sleep(0.3)


async def chunk_records(settings: Settings) -> list[PolicySnapshot]:
    """The records of the policy topic that hold a chunk of a snapshot."""
    found: list[PolicySnapshot] = []

    def keep(record: Record) -> None:
        snapshot = PolicySnapshot.model_validate_json(record.value or b"")
        if snapshot.chunk is not None:
            found.append(snapshot)

    await read_to_end(settings, settings.topic("policy"), keep, timeout_s=20.0)
    return found


def test_two_replicas_and_a_kill_count_every_trajectory_once(
    settings: Settings, replicas: list[ServiceProcess]
) -> None:
    pairs = real_pairs(PAIRS, prefix="shard")
    assert len({shard_of_key(t.trajectory_id.encode(), PARTITIONS) for t, _ in pairs}) == 4

    async def scenario() -> dict[ShardId, PolicySnapshot]:
        await ensure_topics(settings)
        for process in replicas:
            process.start()
        for process in replicas:
            await asyncio.to_thread(process.wait_ready, READY_S)
        victim, survivor = replicas
        half = PAIRS // 2
        await publish(settings, pairs[:half])
        # Both replicas have learned: every shard has a snapshot, whoever owns it.
        before = await until(settings, lambda s: len(s) == PARTITIONS, TAKEOVER_S)
        # Mid-run: the victim dies while events of its shards keep coming.
        sending = asyncio.create_task(publish_in_chunks(settings, pairs[half:]))
        await asyncio.sleep(0.3)
        assert victim.kill() == -9
        await sending
        after = await until(
            settings, lambda s: sum(x.backed_up for x in s.values()) >= PAIRS, TAKEOVER_S
        )
        assert survivor.running, survivor.log_tail()
        assert http_ok(f"{survivor.url}/readyz")
        # every shard moved on from where it stood, the dead replica's from its snapshots
        assert all(after[n].version > before[n].version for n in before)
        return after

    final = asyncio.run(asyncio.wait_for(scenario(), 3 * TAKEOVER_S))
    assert all(len(s.policy.nodes) > CHUNK_NODES for s in final.values())
    chunked = asyncio.run(chunk_records(settings))
    assert chunked, "no snapshot went out in chunks"
    assert sorted(n for n in final if n is not None) == list(range(PARTITIONS))
    assert sum(s.backed_up for s in final.values()) == PAIRS
    learned = merged(PolicyGraph.from_document(s.policy) for s in final.values())
    one = LearnerCore(learner_config())
    for trajectory, reward in pairs:
        one.on_trajectory(trajectory, 0.0)
        one.on_reward(reward, 0.0)
    assert one.backed_up == PAIRS
    assert_same_graph(learned, one.graph)


def test_a_sharded_learner_refuses_inputs_of_different_partition_counts(
    kafka_bootstrap: str,
) -> None:
    prefix = unique("unalike") + "."
    names = Settings(topic_prefix=prefix)
    run(create_topic(kafka_bootstrap, names.topic("trajectories"), partitions=2))
    run(create_topic(kafka_bootstrap, names.topic("rewards"), partitions=3))
    env = {
        "AGENSBUS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AGENSBUS_TOPIC_PREFIX": prefix,
        "AGENSBUS_LEARNER_SHARDED": "true",
        "AGENSBUS_HTTP_PORT": "0",
    }

    done = CliRunner().invoke(cli, ["learner"], env=env)

    assert done.exit_code == 2, done.output
    (line,) = [line for line in done.output.splitlines() if line.startswith("Error")]
    assert f"{prefix}trajectories has 2, {prefix}rewards has 3" in line
