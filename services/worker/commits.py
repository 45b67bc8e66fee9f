"""Committing only what has completed, when records of a partition finish out of order.

FastStream commits nothing itself (``AckPolicy.MANUAL``); the role's code reports each
record started and finished, and :class:`Committer` commits, about once a second, the
offsets :class:`OffsetTracker` allows, through the subscriber's own aiokafka consumer.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka.annotations import KafkaMessage

from services.runtime.offsets import OffsetTracker

#: The subscriber's aiokafka consumer, or None before it started.
ConsumerSource = Callable[[], Any]

Work = Callable[[], Awaitable[None]]
#: Dead-letters a record whose work failed for good and says whether it did.
Poisoned = Callable[[ConsumerRecord[bytes, bytes], BaseException], Awaitable[bool]]


def record_of(msg: KafkaMessage) -> ConsumerRecord[bytes, bytes]:
    """The one record a per-record subscriber's message carries."""
    record = msg.raw_message
    if isinstance(record, tuple):
        raise TypeError("a batch reached a per-record handler")
    return record


def partition_of(record: ConsumerRecord[bytes, bytes]) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


class Committer:
    def __init__(
        self,
        consumer: ConsumerSource,
        log: logging.Logger,
        poisoned: Poisoned | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.tracker = OffsetTracker()
        self.consumer = consumer
        self._poisoned = poisoned
        self._log = log
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def started(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.tracker.start(partition_of(record), record.offset)

    def finished(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.tracker.finish(partition_of(record), record.offset)

    async def tracked(self, record: ConsumerRecord[bytes, bytes], work: Work) -> None:
        """Run ``work`` for ``record`` now; see :meth:`finish_after`."""
        self.started(record)
        await self.finish_after(record, work)

    async def finish_after(self, record: ConsumerRecord[bytes, bytes], work: Work) -> None:
        """Run ``work`` for a started ``record`` and mark it done when that succeeds, or
        when it failed in a way every retry would repeat (dead-lettered: see ``poisoned``).
        Other failures leave the record uncommitted, holding back its partition's commits:
        it runs again after a restart or rebalance, nothing is lost."""
        try:
            await work()
        except Exception as error:
            if not await self._dead_lettered(record, error):
                self._log.exception(
                    "work failed; its record stays uncommitted",
                    extra={"partition": record.partition, "offset": record.offset},
                )
                return
        self.finished(record)

    async def _dead_lettered(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException
    ) -> bool:
        if self._poisoned is None:
            return False
        try:
            return await self._poisoned(record, error)
        except Exception:  # the dead letter itself did not go out: retry the record later
            self._log.exception("dead-lettering a poison record failed")
            return False

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit what may be committed, for ``partitions`` or all this consumer owns. A
        failed commit is logged and retried on the next round: at worst records repeat."""
        consumer = self.consumer()
        if consumer is None:
            return
        # Offsets of partitions no longer assigned would fail the whole commit.
        owned = consumer.assignment()
        wanted = owned if partitions is None else owned & set(partitions)
        ready = {tp: at for tp, at in self.tracker.committable().items() if tp in wanted}
        if not ready:
            return
        try:
            await consumer.commit(ready)
        except KafkaError as error:
            self._log.warning("commit failed, retrying later", extra={"error": repr(error)})
            return
        self.tracker.committed(ready)

    def start(self) -> None:
        """Commit every ``interval_s`` in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the background commits, then commit a last time."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.commit()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.commit()

    async def revoked(self, partitions: Collection[TopicPartition]) -> None:
        """Before a rebalance hands ``partitions`` to another member: commit what is done
        and forget them. Work still running on them finishes and publishes (a duplicate at
        worst: the new owner repeats it), but is no longer committed from here."""
        await self.commit(partitions)
        self.tracker.forget(list(partitions))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Routes aiokafka's rebalance callbacks to the committer and, optionally, to a hook
    for newly assigned partitions (the worker re-applies its pause there)."""

    def __init__(self, committer: Committer, assigned: Callable[[], None] | None = None) -> None:
        self._committer = committer
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._committer.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._assigned is not None:
            self._assigned()
