"""Reading a topic whole: every record from its beginning to its end as of the first look,
with no consumer group, so nobody's committed offsets move."""

import asyncio
from collections.abc import Callable
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError

from services.runtime.kafka import aiokafka_options
from services.runtime.settings import Settings

Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def read_to_end(
    settings: Settings, topic: str, on_record: Callable[[Record], None], *, timeout_s: float
) -> None:
    """Hand every record of ``topic`` to ``on_record``, oldest first per partition, up to
    the end each partition had when it was first assigned; raises TimeoutError after
    ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with asyncio.timeout_at(deadline):
        consumer = await _started(settings, topic)
    try:
        async with asyncio.timeout_at(deadline):
            await _drain(consumer, on_record)
    finally:
        await consumer.stop()


async def _started(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A started consumer of every partition of ``topic``. Starting fails while the broker
    that answers does not know the topic yet (on a cluster, one created a moment ago), so it
    is tried again until the caller's deadline."""
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            **aiokafka_options(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
        except UnknownTopicOrPartitionError:
            await consumer.stop()
            await asyncio.sleep(0.2)
            continue
        except BaseException:  # the deadline, mid-start: close what was opened
            await consumer.stop()
            raise
        return consumer


async def _drain(consumer: AIOKafkaConsumer, on_record: Callable[[Record], None]) -> None:
    end: dict[TopicPartition, int] | None = None
    while True:
        # The first fetch also waits for the partitions to be assigned: a topic created a
        # moment ago may take a few metadata rounds to show up.
        fetched = await consumer.getmany(timeout_ms=200)
        for records in fetched.values():
            for record in records:
                on_record(record)
        assigned = consumer.assignment()
        if not assigned:
            continue
        if end is None:
            end = await consumer.end_offsets(list(assigned))
        # Positions, not record offsets: compaction and control records leave gaps.
        behind = [tp for tp in assigned if await consumer.position(tp) < end[tp]]
        if not behind:
            return
