"""Concurrent execution and commits against a stand-in consumer: the cap pauses and
resumes the partitions, commits never pass a record still running or failed, a rebalance
commits and forgets, and draining waits, commits and abandons."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
)
from prometheus_client import CollectorRegistry, Gauge

from services.runtime.poison import Poison, poison_reason
from services.worker.commits import Committer, Rebalance
from services.worker.executor import Executor

LOG = logging.getLogger("test")
P0, P1 = TopicPartition("decisions", 0), TopicPartition("decisions", 1)


class FakeConsumer:
    """The parts of AIOKafkaConsumer the worker uses, with aiokafka's commit rules."""

    def __init__(self, *partitions: TopicPartition) -> None:
        self.assigned = set(partitions)
        self.held: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commits = False

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.held.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.held.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.held)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commits:
            raise CommitFailedError("rebalanced")
        if not set(offsets) <= self.assigned:
            raise IllegalStateError("not assigned")
        self.commits.append(dict(offsets))


def record(partition: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        partition.topic, partition.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ()
    )


class Harness:
    def __init__(self, concurrency: int, *partitions: TopicPartition) -> None:
        self.consumer = FakeConsumer(*partitions)
        self.registry = CollectorRegistry()
        self.gauge = Gauge("in_flight", "", registry=self.registry)
        self.committer = Committer(lambda: self.consumer, LOG)
        self.executor = Executor(self.committer, concurrency, self.gauge, LOG)
        self.gates: dict[tuple[int, int], asyncio.Future[None]] = {}

    def submit(self, partition: TopicPartition, offset: int) -> None:
        """Start work for the record that finishes when :meth:`release` says so."""
        gate = asyncio.get_running_loop().create_future()
        self.gates[partition.partition, offset] = gate
        self.executor.submit(record(partition, offset), lambda: gate)

    async def release(self, partition: TopicPartition, offset: int, error: bool = False) -> None:
        gate = self.gates[partition.partition, offset]
        if error:
            gate.set_exception(RuntimeError("publish failed"))
        else:
            gate.set_result(None)
        for _ in range(3):  # let the task and its done-callback run
            await asyncio.sleep(0)

    @property
    def in_flight(self) -> float:
        return self.registry.get_sample_value("in_flight") or 0.0

    async def committed(self) -> dict[TopicPartition, int]:
        await self.committer.commit()
        merged: dict[TopicPartition, int] = {}
        for commit in self.consumer.commits:
            merged.update(commit)
        return merged


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_the_cap_pauses_every_partition_and_a_free_slot_resumes_them() -> None:
    async def scenario() -> None:
        h = Harness(2, P0, P1)
        h.submit(P0, 0)
        assert h.consumer.paused() == set() and h.in_flight == 1
        h.submit(P1, 0)
        assert h.consumer.paused() == {P0, P1} and h.in_flight == 2
        await h.release(P1, 0)
        assert h.consumer.paused() == set() and h.in_flight == 1
        await h.release(P0, 0)
        assert h.in_flight == 0

    run(scenario)


def test_commits_never_pass_a_running_record() -> None:
    async def scenario() -> None:
        h = Harness(10, P0, P1)
        for offset in range(3):
            h.submit(P0, offset)
        h.submit(P1, 7)
        await h.release(P0, 2)
        await h.release(P0, 1)
        await h.release(P1, 7)
        assert await h.committed() == {P0: 0, P1: 8}
        await h.release(P0, 0)
        assert await h.committed() == {P0: 3, P1: 8}

    run(scenario)


def test_failed_work_stays_uncommitted_and_holds_its_partition_back() -> None:
    async def scenario() -> None:
        h = Harness(10, P0)
        h.submit(P0, 0)
        h.submit(P0, 1)
        await h.release(P0, 0, error=True)
        await h.release(P0, 1)
        assert h.in_flight == 0
        assert await h.committed() == {P0: 0}

    run(scenario)


def test_records_handled_inline_count_as_done_but_never_pass_submitted_ones() -> None:
    async def scenario() -> None:
        h = Harness(10, P0)

        async def dead_letter() -> None:
            return None

        await h.committer.tracked(record(P0, 0), dead_letter)
        assert await h.committed() == {P0: 1}
        # Submitted work counts as running at once, before its task had a chance to run.
        h.submit(P0, 1)
        await h.committer.tracked(record(P0, 2), dead_letter)
        assert await h.committed() == {P0: 1}
        await h.release(P0, 1)
        assert await h.committed() == {P0: 3}

    run(scenario)


def test_a_failed_commit_is_retried_with_the_same_offsets() -> None:
    async def scenario() -> None:
        h = Harness(10, P0)
        h.submit(P0, 0)
        await h.release(P0, 0)
        h.consumer.fail_commits = True
        assert await h.committed() == {}
        h.consumer.fail_commits = False
        assert await h.committed() == {P0: 1}

    run(scenario)


def test_a_rebalance_commits_what_is_done_then_forgets_the_revoked_partitions() -> None:
    async def scenario() -> None:
        h = Harness(2, P0, P1)
        listener = Rebalance(h.committer, assigned=h.executor.throttle)
        h.submit(P0, 0)
        h.submit(P1, 5)
        await h.release(P1, 5)
        h.submit(P1, 6)  # full again: paused
        await listener.on_partitions_revoked({P0, P1})
        assert h.consumer.commits == [{P0: 0, P1: 6}]
        # The new assignment comes unpaused; the listener pauses it while still full.
        h.consumer.assigned, h.consumer.held = {P1}, set()
        await listener.on_partitions_assigned({P1})
        assert h.consumer.paused() == {P1}
        # Work of the revoked partitions finishing late is not committed from here.
        await h.release(P0, 0)
        await h.release(P1, 6)
        assert await h.committed() == {P0: 0, P1: 6}

    run(scenario)


def test_draining_waits_commits_and_abandons_what_is_too_slow() -> None:
    async def scenario() -> None:
        h = Harness(10, P0)
        h.submit(P0, 0)
        h.submit(P0, 1)
        h.submit(P0, 2)
        await h.release(P0, 0)
        asyncio.get_running_loop().call_later(0.05, h.gates[0, 1].set_result, None)
        await h.executor.drain(timeout_s=0.3)
        assert not h.executor.accepting
        assert h.consumer.paused() == {P0}
        # 1 finished within the grace period, 2 did not: the commit stops at 2.
        assert h.consumer.commits[-1] == {P0: 2}
        assert h.gates[0, 2].cancelled() and h.in_flight == 0

    run(scenario)


def test_work_that_would_fail_on_every_retry_is_dead_lettered_and_committed() -> None:
    async def scenario() -> None:
        h = Harness(10, P0, P1)
        letters: list[tuple[int, str]] = []
        dlq_up = True

        async def poisoned(rec: ConsumerRecord[bytes, bytes], error: BaseException) -> bool:
            """The service's rule (poison_reason), with a list for the dead-letter topic."""
            rejected = poison_reason(error)
            if rejected is None:
                return False
            if not dlq_up:
                raise KafkaConnectionError("dlq unreachable")
            letters.append((rec.offset, rejected.error_type))
            return True

        h.committer = Committer(lambda: h.consumer, LOG, poisoned)

        async def fails(error: BaseException) -> None:
            raise error

        await h.committer.tracked(record(P0, 0), lambda: fails(MessageSizeTooLargeError()))
        await h.committer.tracked(record(P0, 1), lambda: fails(Poison("payload_missing", "-")))
        assert await h.committed() == {P0: 2}
        await h.committer.tracked(record(P0, 2), lambda: fails(KafkaConnectionError("down")))
        await h.committer.tracked(record(P0, 3), lambda: fails(MessageSizeTooLargeError()))
        assert await h.committed() == {P0: 2}
        # Without the dead-letter topic the record is kept for a retry, not skipped.
        dlq_up = False
        await h.committer.tracked(record(P1, 0), lambda: fails(MessageSizeTooLargeError()))
        assert letters == [(0, "record_too_large"), (1, "payload_missing"), (3, "record_too_large")]
        assert await h.committed() == {P0: 2, P1: 0}

    run(scenario)
