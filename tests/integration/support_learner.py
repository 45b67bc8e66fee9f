"""The learner run in process on the real broker for the integration tests: settings of a
test's own, a ready learner and a crashed one, inputs published, snapshots and metrics read
back."""

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
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from tests.unit.support_learner import Pair, backed_up_directly

WAIT_S = 30.0
Input = TrajectoryCompleted | RewardObserved | tuple[str, bytes]  # (topic, raw bytes)


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
