"""The learner service on the real broker, in process: it learns from trajectories and
rewards, publishes snapshots, and resumes from its snapshot after a stop or a crash with
nothing lost and nothing counted twice."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.events import DeadLetter, PolicySnapshot, RewardObserved, TrajectoryCompleted
from schemas.policy_file import PolicyDocument
from schemas.topics import topic_of
from services.learner.app import build
from services.learner.restore import newest_snapshot
from services.policy import PolicyGraph
from services.policy.arms import deployed_arm
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from tests.unit.support_learner import Pair, backed_up_directly, real_pairs

SCENARIO_TIMEOUT_S = 90.0
WAIT_S = 30.0
Input = TrajectoryCompleted | RewardObserved | tuple[str, bytes]  # (topic, raw bytes)


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S))


def learner_settings(bootstrap: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"learner-{uuid.uuid4().hex[:8]}.",
        "topic_partitions": 2,
        "http_port": 0,
        "tenants": "default,other",
        "graceful_timeout_s": 5.0,
        "log_level": "WARNING",
        # the learner's exactness is checked against paper-mode backups
        "policy_arm": "paper",
    }
    values.update(changes)
    return Settings(**values)


async def start(settings: Settings) -> tuple[Service, "asyncio.Task[None]"]:
    """A learner serving in this event loop, once /readyz says so."""
    service = build(settings)
    task = asyncio.create_task(service.run())
    deadline = time.monotonic() + WAIT_S
    while not await is_ready(service):
        if task.done():
            await task  # raises what stopped it
        if task.done() or time.monotonic() > deadline:
            raise AssertionError("the learner never became ready")
        await asyncio.sleep(0.05)
    return service, task


async def is_ready(service: Service) -> bool:
    try:
        port = service.http.port
    except RuntimeError:  # not serving yet
        return False
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    status = await reader.readline()
    writer.close()
    return b" 200 " in status


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    """A ready learner; stopped on exit as SIGTERM would stop it."""
    service, task = await start(settings)
    try:
        yield service
    finally:
        service.stop()
        await task


async def crash(service: Service, task: "asyncio.Task[None]") -> None:
    """Stop a learner the hard way: no shutdown hook, so no final snapshot and no commit.
    Closing its Kafka clients is what the operating system does for a killed process."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await service.broker.stop()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def until_snapshot(
    settings: Settings, condition: Callable[[PolicySnapshot], bool]
) -> PolicySnapshot:
    deadline = time.monotonic() + WAIT_S
    while True:
        snapshot = await newest_snapshot(settings, settings.tenant)
        if snapshot is not None and condition(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"no such snapshot; the newest is {snapshot}")
        await asyncio.sleep(0.1)


def metric(service: Service, name: str, **labels: str) -> float:
    return service.registry.get_sample_value(f"agensbus_learner_{name}", labels) or 0.0


def consumed(service: Service) -> float:
    return metric(service, "trajectories_consumed_total") + metric(
        service, "rewards_consumed_total"
    )


async def publish(settings: Settings, items: Sequence[Input]) -> None:
    """Send events to their topics keyed by trajectory id; a (topic, bytes) pair as is."""
    async with AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap) as producer:
        for item in items:
            if isinstance(item, tuple):
                topic, value = item
                await producer.send_and_wait(settings.topic(topic), value, key=b"raw")
            else:
                key = item.trajectory_id.encode()
                await producer.send_and_wait(
                    settings.topic(topic_of(type(item))), encode(item), key=key
                )


async def dead_letters(settings: Settings, count: int) -> list[DeadLetter]:
    topic = settings.topic("dlq")
    async with AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    ) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + WAIT_S
        while len(letters) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                letters += [DeadLetter.model_validate_json(r.value) for r in records]
        return letters


def assert_learned_exactly(document: PolicyDocument, pairs: Sequence[Pair]) -> None:
    """The document holds each pair's backup exactly once. The learner joins in arrival
    order, so means may differ from a direct backup in the last bits, counts not at all."""
    learned, expected = PolicyGraph.from_document(document), backed_up_directly(pairs)
    assert sorted(learned.signatures) == sorted(expected.signatures)
    for signature in expected.signatures:
        assert learned.visits_of(signature) == expected.visits_of(signature)
        edges, want = learned.edges_of(signature), expected.edges_of(signature)
        assert edges.keys() == want.keys()
        for action, stats in want.items():
            got = edges[action]
            assert (got.visits, got.failures) == (stats.visits, stats.failures)
            assert got.mean_reward == pytest.approx(stats.mean_reward, abs=1e-9)
            assert got.reward_m2 == pytest.approx(stats.reward_m2, abs=1e-9)
            assert got.token_mean == pytest.approx(stats.token_mean)
    updates = sum(e.visits + e.failures for n in document.nodes for e in n.edges.values())
    assert updates == sum(len(t.state.visited) for t, _ in pairs)


def split(pairs: Sequence[Pair]) -> tuple[list[TrajectoryCompleted], list[RewardObserved]]:
    return [t for t, _ in pairs], [r for _, r in pairs]


def test_learns_from_trajectories_and_rewards_and_publishes_snapshots(
    kafka_bootstrap: str,
) -> None:
    settings = learner_settings(kafka_bootstrap, snapshot_every=5, snapshot_interval_s=0.3)
    pairs = real_pairs(16, prefix="learn")
    t, r = split(pairs)
    foreign = real_pairs(1, prefix="foreign", tenant="other")[0][0]
    stranger = r[0].model_copy(update={"tenant": "stranger", "trajectory_id": "nobody"})
    # Half the rewards come before their trajectories.
    inputs: list[Input] = [*t[:8], *r, *t[8:]]
    inputs += [("trajectories", b"{not json"), foreign, stranger]

    async def scenario() -> None:
        async with running(settings) as service:
            await publish(settings, inputs)
            snapshot = await until_snapshot(settings, lambda s: s.backed_up == 16)
            await until(lambda: consumed(service) == len(inputs), "every input consumed")
            assert metric(service, "backups_total") == 16
            assert metric(service, "foreign_events_total") == 1
            assert metric(service, "snapshots_published_total") >= 1
            assert metric(service, "policy_nodes") > 0
        assert snapshot.checkpoint.waiting_trajectories == []
        assert snapshot.checkpoint.waiting_rewards == []
        assert sorted(snapshot.checkpoint.recent_ids) == sorted(x.trajectory_id for x in t)
        assert snapshot.policy.selection == deployed_arm(settings.policy_arm).selection
        assert_learned_exactly(snapshot.policy, pairs)

        # The last snapshot (on shutdown, unless the one above had all) covers every input,
        # the rejected ones too.
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert final.version >= snapshot.version
        assert final.backed_up == 16
        read = {topic: 0 for topic in ("trajectories", "rewards")}
        for offset in final.input_offsets:
            read[offset.topic.removeprefix(settings.topic_prefix)] += offset.offset
        assert read == {"trajectories": 16 + 2, "rewards": 16 + 1}

        letters = await dead_letters(settings, 2)
        assert sorted((d.error_type, d.source_topic) for d in letters) == [
            ("malformed_json", settings.topic("trajectories")),
            ("unknown_tenant", settings.topic("rewards")),
        ]

    run(scenario())


def test_a_restarted_learner_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str,
) -> None:
    # Snapshots only on shutdown: whatever a crash interrupts is lost from memory and must
    # be read again from the inputs.
    settings = learner_settings(kafka_bootstrap, snapshot_every=1_000, snapshot_interval_s=60.0)
    pairs = real_pairs(22, prefix="restart")
    t, r = split(pairs)
    second_reward = r[3].model_copy(update={"event_id": "again", "quality": 0.0})

    async def scenario() -> None:
        # A learns 0-9, keeps r10 and t11 waiting and stops gracefully.
        first_inputs: list[Input] = [*t[:10], *r[:10], r[10], t[11]]
        async with running(settings) as service:
            await publish(settings, first_inputs)
            await until(lambda: consumed(service) == len(first_inputs), "A consumed")
        first = await newest_snapshot(settings, settings.tenant)
        assert first is not None
        assert first.backed_up == 10
        assert [x.trajectory_id for x in first.checkpoint.waiting_rewards] == ["restart-010"]
        assert [x.trajectory_id for x in first.checkpoint.waiting_trajectories] == ["restart-011"]

        # B completes both joins from A's checkpoint, learns 12-19, sees a second reward
        # and a replayed trajectory, and crashes before any snapshot.
        second_inputs: list[Input] = [
            t[10],
            r[11],
            *t[12:20],
            *r[12:20],
            second_reward,
            t[5],
            r[20],
            r[21],
        ]
        service, task = await start(settings)
        await publish(settings, second_inputs)
        await until(lambda: consumed(service) == len(second_inputs), "B consumed")
        assert metric(service, "backups_total") == 10
        assert metric(service, "duplicates_total", kind="reward") == 1
        assert metric(service, "duplicates_total", kind="trajectory") == 1
        await crash(service, task)
        assert (await newest_snapshot(settings, settings.tenant)) == first
        # Whatever the group committed is no checkpoint: pretend it ran ahead to the end.
        await commit_to_the_end(settings)

        # C reads B's inputs again from A's offsets, and the last two trajectories.
        async with running(settings) as service:
            await publish(settings, [t[20], t[21]])
            await until(lambda: metric(service, "backups_total") == 12, "C backed up")
            assert metric(service, "duplicates_total", kind="reward") == 1
            assert metric(service, "duplicates_total", kind="trajectory") == 1
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert final.version == first.version + 1
        assert final.backed_up == 22
        assert final.checkpoint.waiting_trajectories == []
        assert final.checkpoint.waiting_rewards == []
        assert sorted(final.checkpoint.recent_ids) == sorted(x.trajectory_id for x in t)
        assert_learned_exactly(final.policy, pairs)

    run(scenario())


async def commit_to_the_end(settings: Settings) -> None:
    partitions = [
        TopicPartition(settings.topic(name), p)
        for name in ("trajectories", "rewards")
        for p in range(settings.topic_partitions)
    ]
    async with AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.learner_group,
        enable_auto_commit=False,
    ) as consumer:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(ends)


def test_a_trajectory_whose_reward_never_comes_expires(kafka_bootstrap: str) -> None:
    settings = learner_settings(
        kafka_bootstrap, reward_ttl_s=0.5, snapshot_every=1, snapshot_interval_s=0.2
    )
    (t0, r0), (t1, _) = real_pairs(2, prefix="ttl")

    async def scenario() -> None:
        async with running(settings) as service:
            await publish(settings, [t0, r0, t1])
            await until(lambda: metric(service, "joins_expired_total") == 1, "an expiry")
            assert metric(service, "backups_total") == 1
            assert metric(service, "waiting_joins", kind="trajectory") == 0
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert (final.backed_up, final.checkpoint.expired) == (1, 1)
        assert final.checkpoint.waiting_trajectories == []

    run(scenario())
