"""Finding the learner's checkpoint: the newest snapshot of its tenant on the policy topic."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.events import PolicySnapshot
from services.runtime.codec import Rejected, decode
from services.runtime.kafka import aiokafka_options
from services.runtime.settings import Settings

log = logging.getLogger("agensbus.learner.restore")


async def newest_snapshot(
    settings: Settings, tenant: str, *, timeout_s: float = 120.0
) -> PolicySnapshot | None:
    """Read the policy topic from its beginning to its current end and return ``tenant``'s
    snapshot with the highest version, or None when it has none.

    The topic is compacted, so usually one snapshot per key is left; until the cleaner
    runs there are more, and the highest version wins (the later one on a tie).
    """
    topic = settings.topic("policy")
    # No group: the consumer takes every partition of the topic and commits nothing.
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_to_end(consumer, tenant)
    finally:
        await consumer.stop()


async def _read_to_end(consumer: AIOKafkaConsumer, tenant: str) -> PolicySnapshot | None:
    best: PolicySnapshot | None = None
    end: dict[TopicPartition, int] | None = None
    while True:
        # The first fetch also waits for the partitions to be assigned: a topic created a
        # moment ago may take a few metadata rounds to show up.
        fetched = await consumer.getmany(timeout_ms=200)
        for records in fetched.values():
            for record in records:
                best = _newer(best, record, tenant)
        assigned = consumer.assignment()
        if not assigned:
            continue
        if end is None:
            end = await consumer.end_offsets(list(assigned))
        # Positions, not record offsets: compaction and control records leave gaps.
        behind = [tp for tp in assigned if await consumer.position(tp) < end[tp]]
        if not behind:
            return best


def _newer(
    best: PolicySnapshot | None, record: ConsumerRecord[bytes, bytes], tenant: str
) -> PolicySnapshot | None:
    if record.value is None:  # a tombstone deletes its key's policy so far
        return None if record.key == tenant.encode() else best
    snapshot = decode(record.value, PolicySnapshot)
    if isinstance(snapshot, Rejected):
        log.warning(
            "unreadable record on the policy topic",
            extra={"offset": record.offset, "reason": snapshot.reason},
        )
        return best
    if snapshot.tenant == tenant and (best is None or snapshot.version >= best.version):
        return snapshot
    return best
