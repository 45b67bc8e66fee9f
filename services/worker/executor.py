"""Concurrent consumption: the handler only starts work and returns, so a call that takes
minutes never holds up the consumer's polling.

At most ``concurrency`` records run at once: when that many are in flight the consumer's
partitions are paused (aiokafka ``pause``), and resumed when one finishes. Each record is
committed only once it (and every earlier record of its partition) has finished.
"""

import asyncio
import logging

from aiokafka import ConsumerRecord
from prometheus_client import Gauge

from services.worker.commits import Committer, Work


class Executor:
    def __init__(
        self, committer: Committer, concurrency: int, in_flight: Gauge, log: logging.Logger
    ) -> None:
        self.committer = committer
        self._concurrency = concurrency
        self._in_flight = in_flight
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def accepting(self) -> bool:
        """False once draining. A record the handler then leaves alone is never tracked, so
        it must not track any later record either (a finished later one would let the
        commit pass it): the handler ignores every record from then on."""
        return not self._stopping

    def submit(self, record: ConsumerRecord[bytes, bytes], work: Work) -> None:
        """Run ``work`` for ``record`` in the background."""
        # Tracked before the task first runs: a later record handled inline meanwhile must
        # not let the commit pass this one.
        self.committer.started(record)
        task = asyncio.create_task(self.committer.finish_after(record, work))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._changed()

    def throttle(self) -> None:
        """Pause every assigned partition while full or stopping, else resume them."""
        consumer = self.committer.consumer()
        if consumer is None:
            return
        if self._stopping or len(self._tasks) >= self._concurrency:
            consumer.pause(*consumer.assignment())
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    async def drain(self, timeout_s: float) -> None:
        """Stop taking work, let what runs finish within ``timeout_s``, commit, and cancel
        the rest (its records stay uncommitted and are redelivered)."""
        self._stopping = True
        self.throttle()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self.committer.stop()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            self._log.warning("abandoned unfinished work", extra={"records": len(pending)})

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed()

    def _changed(self) -> None:
        self._in_flight.set(len(self._tasks))
        self.throttle()
