"""Reading a topic whole: every record from its beginning to its end as of the first look,
with no consumer group, so nobody's committed offsets move."""

import asyncio
from collections.abc import Callable
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.runtime.kafka import aiokafka_options
from services.runtime.settings import Settings

Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def read_to_end(
    settings: Settings, topic: str, on_record: Callable[[Record], None], *, timeout_s: float
) -> None:
    """Hand every record of ``topic`` to ``on_record``, oldest first per partition, up to
    the end each partition had when it was first assigned; raises TimeoutError after
    ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            await _drain(consumer, on_record)
    finally:
        await consumer.stop()


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
