"""The learner service: joins completed trajectories with their rewards,
backs the hybrid reward up into its tenant's policy graph and publishes versioned snapshots
that routers hot-swap.

The snapshot is the checkpoint. On startup the learner restores the newest snapshot of its
tenant from the policy topic and seeks every input partition to the offset that snapshot
reflects (the beginning when it has none), whatever the group's committed offsets say: so a
crash loses nothing and counts nothing twice, without Kafka transactions. Offsets are
committed after each delivered snapshot only so that lag metrics mean something.

One learner per tenant. Its consumer group is there for lag reporting, not to share work: a
second replica in the same group would split the input partitions with the first, each would
learn from part of the trajectories (and never join a trajectory with a reward the other one
read), and both would publish snapshots of the same tenant, each overwriting the other's
progress. Run exactly one learner per tenant, each tenant's in its own group.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from schemas.events import Decision, RewardObserved, TrajectoryCompleted
from schemas.headers import as_kafka
from schemas.topics import POLICY_MAX_BYTES
from services.learner.core import (
    Applied,
    LearnerConfig,
    LearnerCore,
    Verdict,
    input_offsets,
)
from services.learner.metrics import LearnerMetrics
from services.learner.restore import newest_snapshot
from services.pipeline import deployed_pipeline
from services.runtime.codec import Rejected, decode, encode
from services.runtime.service import Service
from services.runtime.settings import Settings

#: What the learner dead-letters beyond undecodable input (their series start at 0).
DEAD_LETTERS = (
    "unknown_tenant",
    "inconsistent_trajectory",
    "unknown_action",
    "invalid_signature",
    "learner_error",
)
#: Backups a snapshot's span links to at most (the newest ones).
TRACED_BACKUPS = 64
BATCH_RECORDS = 500
BATCH_TIMEOUT_MS = 100
#: How often, at most, joins are expired and the snapshot interval is checked.
TICK_S = 1.0


class Learner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = service = Service(
            "learner",
            settings,
            DEAD_LETTERS,
            # Snapshots carry the whole graph and join state: compress them, and let the
            # producer send as much as the policy topic accepts.
            compression_type="gzip",
            max_request_size=POLICY_MAX_BYTES,
        )
        self.log = service.log
        pipeline = deployed_pipeline(settings)
        self.config = LearnerConfig.from_settings(settings, pipeline)
        self.core = LearnerCore(self.config)
        self.metrics = LearnerMetrics(service.registry, pipeline.classes.values())
        self.version = 0
        self.offsets: dict[tuple[str, int], int] = {}
        self._kinds = {
            settings.topic("trajectories"): "trajectory",
            settings.topic("rewards"): "reward",
        }
        self._applying = asyncio.Lock()
        self._publishing = asyncio.Lock()
        self._snapshot_due = asyncio.Event()
        self._snapshot_backed_up = 0
        self._snapshot_at = 0.0
        self._dirty = False  # something was applied or expired since the last snapshot
        self._restored = False
        self._closing = False
        # Trace contexts of the backups since the last snapshot, for its span's links.
        self._traced_backups: deque[list[tuple[str, bytes]]] = deque(maxlen=TRACED_BACKUPS)

        self.subscriber = service.broker.subscriber(
            *self._kinds,
            group_id=settings.learner_group,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            batch=True,
            max_records=BATCH_RECORDS,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
            listener=_ResumeFromCheckpoint(self),
        )

        @self.subscriber
        async def handle(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            await self.consume(raw if isinstance(raw, tuple) else (raw,))

        if self.core.gate is not None:
            self._follow_decisions()
        service.on_startup(self._start)
        service.on_shutdown(self._stop)
        service.add_check("restored", self._restored_check)

    def _follow_decisions(self) -> None:
        """The off-policy gate's evidence: the decisions routers log from now on. No group
        and nothing committed: the window is recent evidence, refilled after a restart."""

        @self.service.broker.subscriber(
            self.settings.topic("decisions"),
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            auto_offset_reset="latest",
            ack_policy=AckPolicy.MANUAL,
            batch=True,
            max_records=BATCH_RECORDS,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
        )
        async def follow(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            for record in raw if isinstance(raw, tuple) else (raw,):
                decision = decode(record.value, Decision)
                # The audit trail's consumers dead-letter bad decisions; the gate only reads.
                if not isinstance(decision, Rejected):
                    self.core.on_decision(decision)
                    self.metrics.gate_decisions.inc()

    # --- lifecycle -----------------------------------------------------------------------

    async def _start(self) -> None:
        snapshot = await newest_snapshot(self.settings, self.settings.tenant)
        if snapshot is not None:
            self.core = LearnerCore.restore(snapshot, self.config, time.monotonic())
            self.version = snapshot.version
            self.offsets = input_offsets(snapshot)
            self._snapshot_backed_up = snapshot.backed_up
        self._snapshot_at = time.monotonic()
        self.metrics.restored(self.core, self.version)
        self._restored = True
        self.log.info(
            "restored" if snapshot else "no snapshot yet: learning from the beginning",
            extra={"version": self.version, "backed_up": self.core.backed_up},
        )
        # A task of the subscriber's, so it stops with the subscriber however that happens.
        self.subscriber.add_task(self._tick)

    async def _stop(self) -> None:
        async with self._applying:  # let the batch in hand finish, then take no more
            self._closing = True
        if self._dirty:
            await self.publish_snapshot()

    def _restored_check(self) -> tuple[bool, str]:
        if not self._restored:
            return False, "reading the policy topic"
        return True, f"policy version {self.version}"

    def resume(self, assigned: Iterable[TopicPartition]) -> None:
        """Seek newly assigned partitions to where the learner's state stands: the restored
        snapshot's offsets at startup (the beginning for a partition it does not list), the
        offsets applied so far at any later rebalance."""
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        for tp in assigned:
            # Offset 0 lies before the beginning once retention deleted the head; the
            # consumer's auto_offset_reset then starts at the oldest record kept.
            offset = self.offsets.get((tp.topic, tp.partition), 0)
            consumer.seek(tp, offset)
            self.log.info(
                "resuming", extra={"topic": tp.topic, "partition": tp.partition, "offset": offset}
            )

    # --- input ---------------------------------------------------------------------------

    async def consume(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        async with self._applying:
            if self._closing:
                return  # the final snapshot is taken: these are read again on restart
            at = time.monotonic()
            try:
                for record in records:
                    await self._consume_one(record, at)
            except Exception:
                # FastStream would log this and carry on past the batch: go back to the
                # first record not applied so that nothing is skipped.
                self._rewind(records)
                raise
            finally:
                self.metrics.state(self.core)

    async def _consume_one(self, record: ConsumerRecord[bytes, bytes], at: float) -> None:
        kind = self._kinds[record.topic]
        self.metrics.consumed[kind].inc()
        began = time.time_ns()
        applied = self._apply(kind, record.value, at)
        if applied.backup is not None and self.service.tracing.enabled:
            self._trace_backup(record, began)
        if applied.rejected is not None:
            await self.service.dead_letter(record, applied.rejected)
        # Applying and advancing happen without a pause between them, so any snapshot sees
        # a state and offsets that agree.
        self.offsets[(record.topic, record.partition)] = record.offset + 1
        self._dirty = True
        self.metrics.applied(kind, applied)
        if applied.backup is not None and self._pending() >= self.settings.snapshot_every:
            self._snapshot_due.set()

    def _trace_backup(self, record: ConsumerRecord[bytes, bytes], began: int) -> None:
        """A span for the backup that applying ``record`` (the second half of a join) made,
        in the trace of that record."""
        tracing = self.service.tracing
        with tracing.span("backup", record.headers, start_ns=began, topic=record.topic):
            self._traced_backups.append(as_kafka(dict(tracing.headers())))

    def _apply(self, kind: str, raw: bytes | None, at: float) -> Applied:
        event = (
            decode(raw, TrajectoryCompleted)
            if kind == "trajectory"
            else decode(raw, RewardObserved)
        )
        if isinstance(event, Rejected):
            return Applied(Verdict.REJECTED, rejected=event)
        try:
            if isinstance(event, TrajectoryCompleted):
                return self.core.on_trajectory(event, at)
            return self.core.on_reward(event, at)
        except Exception as error:  # a bug must not stall the learner on one record forever
            self.log.exception("could not apply a record")
            return Applied(
                Verdict.REJECTED,
                rejected=Rejected("learner_error", f"{type(error).__name__}: {error}"),
            )

    def _rewind(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault((record.topic, record.partition), record.offset)
        for key, offset in first.items():
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours
                consumer.seek(TopicPartition(*key), self.offsets.get(key, offset))

    # --- snapshots -----------------------------------------------------------------------

    def _pending(self) -> int:
        return self.core.backed_up - self._snapshot_backed_up

    async def _tick(self) -> None:
        """Expire stale joins and publish snapshots when they are due."""
        period = min(TICK_S, self.settings.snapshot_interval_s)
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._snapshot_due.wait(), period)
            self._snapshot_due.clear()
            if self._closing:
                return
            if self.core.expire(time.monotonic()):
                self._dirty = True
            self.metrics.state(self.core)
            pending = self._pending()
            overdue = time.monotonic() - self._snapshot_at >= self.settings.snapshot_interval_s
            due = pending >= self.settings.snapshot_every or (pending and overdue)
            if due and not await self.publish_snapshot():
                await asyncio.sleep(self.settings.snapshot_interval_s)  # before trying again

    async def publish_snapshot(self) -> bool:
        """Publish the current state as the next version and wait for its delivery; then
        commit the offsets it reflects. Returns whether it was delivered."""
        async with self._publishing:
            started = time.perf_counter()
            self.version += 1  # never reused, even when this one is not delivered
            snapshot = self.core.snapshot(self.version, self.offsets)
            self._dirty = False
            payload = encode(snapshot)
            # Set before publishing: a snapshot too large to deliver shows here first.
            self.metrics.snapshot_bytes.set(len(payload))
            backups, self._traced_backups = list(self._traced_backups), deque(maxlen=TRACED_BACKUPS)
            try:
                with self.service.tracing.span("snapshot", links=backups, version=self.version):
                    topic, key = self.settings.topic("policy"), self.settings.tenant.encode()
                    await self.service.publish(snapshot, topic, key, encoded=payload)
            except Exception:  # the next trigger tries again; learning goes on meanwhile
                self._dirty = True
                self.metrics.snapshot_failures.inc()
                self.log.exception(
                    "snapshot not delivered",
                    extra={"version": snapshot.version, "bytes": len(payload)},
                )
                return False
            self._snapshot_backed_up = snapshot.backed_up
            self._snapshot_at = time.monotonic()
            metrics = self.metrics
            metrics.snapshots.inc()
            metrics.snapshot_seconds.observe(time.perf_counter() - started)
            metrics.policy_version.set(snapshot.version)
            metrics.state(self.core, graph=True)
            self.log.info(
                "snapshot published",
                extra={
                    "version": snapshot.version,
                    "backed_up": snapshot.backed_up,
                    "bytes": len(payload),
                },
            )
            await self._commit(input_offsets(snapshot))
            return True

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        owned = consumer.assignment()
        commit = {tp: o for (t, p), o in offsets.items() if (tp := TopicPartition(t, p)) in owned}
        if not commit:
            return
        try:
            await consumer.commit(commit)
        except KafkaError as error:
            self.log.warning(
                "offset commit failed: lag metrics lag behind", extra={"error": str(error)}
            )


class _ResumeFromCheckpoint(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, learner: Learner) -> None:
        self._learner = learner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._learner.resume(assigned)


def build(settings: Settings) -> Service:
    return Learner(settings).service
