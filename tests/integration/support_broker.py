"""Kafka through plain aiokafka clients, for the tests of the broker itself (the embedded
one and the fallback): unique names, topics created with their partitions and configs,
keyed records produced in order, group consumers with manual commits that read exactly a
count; and the bound on every scenario (also of the tests that serve services in process)
so that a hung broker fails its test."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

SCENARIO_TIMEOUT_S = 90.0
T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T], timeout_s: float = SCENARIO_TIMEOUT_S) -> T:
    # A hung broker, client or service fails the test instead of hanging the suite.
    return asyncio.run(asyncio.wait_for(scenario, timeout_s))


async def until(condition: Callable[[], bool], what: str, wait_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topic(
    bootstrap: str, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    async with admin_client(bootstrap) as admin:
        response = await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=configs or {})]
        )
    assert [(topic, code) for topic, code, _ in response.topic_errors] == [(name, 0)]


async def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]
) -> list[RecordMetadata]:
    """Send (key, value) pairs in order; returns each one's RecordMetadata."""
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        sent = [await producer.send(topic, value, key=key) for key, value in items]
        return list(await asyncio.gather(*sent))


def group_consumer(
    bootstrap: str, topic: str, group: str, *, fetch_max_wait_ms: int = 500
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


async def consume(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Exactly ``count`` records: fetch until there are that many, then check that one more
    poll brings nothing."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    while len(records) < count:
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    extra = await consumer.getmany(timeout_ms=500)
    assert not any(extra.values()), f"expected {count} records, got more: {extra}"
    return records
