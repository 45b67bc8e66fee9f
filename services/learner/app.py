"""The learner service: joins completed trajectories with their rewards,
backs the hybrid reward up into its tenant's policy graph and publishes versioned snapshots
that routers hot-swap.

The snapshot is the checkpoint. On startup the learner restores the newest snapshot of its
tenant from the policy topic and seeks every input partition to the offset that snapshot
reflects (the beginning when it has none), whatever the group's committed offsets say: so a
crash loses nothing and counts nothing twice, without Kafka transactions. Offsets are
committed after each delivered snapshot only so that lag metrics mean something.

Not sharded (the default), one learner serves a tenant: its consumer group is there for lag
reporting, and a second replica in it would split the inputs and overwrite the first one's
snapshots. Sharded (``learner_sharded``), replicas of the tenant share its input partitions
in the group and every partition number is a shard (``services.learner.shard``): the
replica owning partition p of both input topics restores the newest snapshot of shard p
when the group assigns it p, seeks p to that snapshot's offsets, and publishes shard p's
snapshots under the key ``tenant/p``; routers act with the merge of every shard's newest
snapshot. A replica that gives p up publishes its final snapshot of p first; one killed
gives it up with the snapshot it last delivered, whose offsets its successor seeks to, so
either way nothing is lost or counted twice.
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

from schemas.events import Decision, PolicySnapshot, RewardObserved, TrajectoryCompleted
from schemas.headers import as_kafka
from schemas.topics import POLICY_MAX_BYTES
from services.learner.core import Applied, LearnerConfig, Verdict, input_offsets
from services.learner.metrics import LearnerMetrics
from services.learner.restore import newest_snapshots, snapshot_key
from services.learner.shard import TRACED_BACKUPS, Shard, shard_of_key
from services.pipeline import deployed_pipeline
from services.policy.chunks import chunk_key, split
from services.policy.shards import WHOLE, ShardId
from services.runtime.codec import Rejected, decode, encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import PartitionsDiffer, partition_counts

#: What the learner dead-letters beyond undecodable input (their series start at 0).
DEAD_LETTERS = (
    "unknown_tenant",
    "inconsistent_trajectory",
    "unknown_action",
    "invalid_signature",
    "learner_error",
)
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
        self.metrics = LearnerMetrics(service.registry, pipeline.classes.values())
        self.sharded = settings.learner_sharded
        #: The shards held: WHOLE alone when not sharded, else the owned partitions'.
        self.shards: dict[ShardId, Shard] = {}
        #: The input topics' partition count, when sharded (known once started).
        self.partitions: int | None = None
        self._kinds = {
            settings.topic("trajectories"): "trajectory",
            settings.topic("rewards"): "reward",
        }
        self._applying = asyncio.Lock()
        self._publishing = asyncio.Lock()
        self._snapshot_due = asyncio.Event()
        self._restored = False
        self._closing = False

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

        if self.config.gate_window is not None:
            self._follow_decisions()
        service.on_startup(self._start)
        service.on_shutdown(self._stop)
        service.add_check("restored", self._restored_check)

    @property
    def version(self) -> int:
        """The newest snapshot version, summed over the shards held."""
        return sum(shard.version for shard in self.shards.values())

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
                if isinstance(decision, Rejected):
                    continue
                shard = self._shard_of_decision(decision)
                if shard is not None:
                    shard.core.on_decision(decision)
                    self.metrics.gate_decisions.inc()

    def _shard_of_decision(self, decision: Decision) -> Shard | None:
        """The shard whose trajectories hold ``decision``'s (None: not one held here)."""
        if self.partitions is None:
            return self.shards.get(WHOLE)
        return self.shards.get(shard_of_key(decision.trajectory_id.encode(), self.partitions))

    # --- lifecycle -----------------------------------------------------------------------

    async def _start(self) -> None:
        if self.sharded:
            self.partitions = await self._input_partitions()
            self.log.info(
                "sharded: learning the shards of the partitions the group assigns",
                extra={"shards": self.partitions},
            )
        else:
            snapshots = await newest_snapshots(self.settings, self.settings.tenant)
            self._hold(WHOLE, snapshots)
        self._restored = True
        # A task of the subscriber's, so it stops with the subscriber however that happens.
        self.subscriber.add_task(self._tick)

    async def _input_partitions(self) -> int:
        topics = list(self._kinds)
        counts = await partition_counts(self.settings, topics)
        if len(set(counts.values())) != 1:
            listed = ", ".join(f"{topic} has {counts.get(topic)}" for topic in topics)
            raise PartitionsDiffer(
                f"a sharded learner needs input topics of one partition count ({listed}): "
                "repartition them alike or run one learner that is not sharded"
            )
        return next(iter(counts.values()))

    def _hold(self, number: ShardId, snapshots: dict[ShardId, PolicySnapshot]) -> Shard:
        """Start holding shard ``number`` as its newest snapshot in ``snapshots`` left it."""
        snapshot = snapshots.get(number)
        shard = Shard.restored(number, snapshot, self.config, time.monotonic())
        self.shards[number] = shard
        self.metrics.restored(number, shard.core)
        self.metrics.shards.set(len(self.shards))
        self.metrics.policy_version.set(self.version)
        self.metrics.state({number: shard.core}, graph=True)
        self.log.info(
            "restored" if snapshot else "no snapshot yet: learning from the beginning",
            extra={"shard": number, "version": shard.version, "backed_up": shard.core.backed_up},
        )
        return shard

    async def _stop(self) -> None:
        async with self._applying:  # let the batch in hand finish, then take no more
            self._closing = True
        for shard in list(self.shards.values()):
            if shard.dirty:
                await self.publish_snapshot(shard)

    def _restored_check(self) -> tuple[bool, str]:
        if not self._restored:
            return False, "reading the policy topic"
        if self.sharded:
            held = ", ".join(str(n) for n in sorted(n for n in self.shards if n is not None))
            return True, f"shards [{held}] of {self.partitions}, versions summed {self.version}"
        return True, f"policy version {self.version}"

    async def assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Take the shards of newly assigned partitions (sharded), then seek every newly
        assigned partition to where its shard's state stands: the restored snapshot's
        offsets (the beginning for a partition it does not list), the offsets applied so
        far when the shard was held already."""
        assigned = list(assigned)
        if self.sharded:
            new = sorted({tp.partition for tp in assigned} - set(self.shards))
            if new:
                snapshots = await newest_snapshots(self.settings, self.settings.tenant)
                for number in new:
                    self._hold(number, snapshots)
        self.resume(assigned)

    async def revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Give up the shards of revoked partitions (sharded): publish each one's final
        snapshot, so that the replica the group gives them to starts from here, then drop
        them. Not sharded, the one shard stays: the learner reads every partition again."""
        if not self.sharded:
            return
        numbers = sorted({tp.partition for tp in revoked} & set(self.shards))
        async with self._applying:  # no record of a revoked shard is applied after this
            for number in numbers:
                shard = self.shards[number]
                if shard.dirty and not self._closing:
                    await self.publish_snapshot(shard)
                del self.shards[number]
                self.metrics.dropped(number)
                self.log.info("shard given up", extra={"shard": number, "version": shard.version})
        self.metrics.shards.set(len(self.shards))
        self.metrics.policy_version.set(self.version)

    def resume(self, assigned: Iterable[TopicPartition]) -> None:
        consumer = self.subscriber.consumer
        if consumer is None:
            return
        for tp in assigned:
            shard = self._shard_of(tp.partition)
            # Offset 0 lies before the beginning once retention deleted the head; the
            # consumer's auto_offset_reset then starts at the oldest record kept.
            offset = 0 if shard is None else shard.offsets.get((tp.topic, tp.partition), 0)
            consumer.seek(tp, offset)
            self.log.info(
                "resuming", extra={"topic": tp.topic, "partition": tp.partition, "offset": offset}
            )

    def _shard_of(self, partition: int) -> Shard | None:
        return self.shards.get(partition if self.sharded else WHOLE)

    # --- input ---------------------------------------------------------------------------

    async def consume(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        async with self._applying:
            if self._closing:
                return  # the final snapshot is taken: these are read again on restart
            at = time.monotonic()
            stale: set[tuple[str, int]] = set()
            try:
                for record in records:
                    await self._consume_one(record, at, stale)
            except Exception:
                # FastStream would log this and carry on past the batch: go back to the
                # first record not applied so that nothing is skipped.
                self._rewind(records)
                raise
            finally:
                self.metrics.state({n: shard.core for n, shard in self.shards.items()})

    async def _consume_one(
        self, record: ConsumerRecord[bytes, bytes], at: float, stale: set[tuple[str, int]]
    ) -> None:
        shard = self._shard_of(record.partition)
        where = (record.topic, record.partition)
        # A batch fetched before a rebalance may still hold records of a shard given up,
        # or of one taken over that its snapshot already reflects: neither is ours to apply.
        if shard is None or where in stale:
            return
        expected = shard.offsets.get(where, 0)
        if record.offset < expected:
            return
        # Or records past where the shard stands, fetched while it was being taken over and
        # before the seek to its offsets: applying them would skip the records between.
        if record.offset > expected and not await self._head_deleted(where, expected):
            stale.add(where)
            consumer = self.subscriber.consumer
            if consumer is not None:
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours
                    consumer.seek(TopicPartition(*where), expected)
            return
        kind = self._kinds[record.topic]
        self.metrics.consumed[kind].inc()
        began = time.time_ns()
        applied = self._apply(shard, kind, record.value, at)
        if applied.backup is not None and self.service.tracing.enabled:
            self._trace_backup(shard, record, began)
        if applied.rejected is not None:
            await self.service.dead_letter(record, applied.rejected)
        # Applying and advancing happen without a pause between them, so any snapshot sees
        # a state and offsets that agree.
        shard.offsets[where] = record.offset + 1
        shard.dirty = True
        self.metrics.applied(kind, applied)
        if applied.backup is not None and self._count_due(shard, time.monotonic()):
            self._snapshot_due.set()

    async def _head_deleted(self, where: tuple[str, int], expected: int) -> bool:
        """Whether retention deleted the records of ``where`` from ``expected`` on, so that
        the consumer's reset to the oldest record kept is the right place to go on."""
        consumer = self.subscriber.consumer
        if consumer is None:
            return False
        tp = TopicPartition(*where)
        oldest = (await consumer.beginning_offsets([tp]))[tp]
        if oldest <= expected:
            return False
        self.log.warning(
            "records deleted by retention before they were learned",
            extra={"topic": where[0], "partition": where[1], "from": expected, "to": oldest},
        )
        return True

    def _trace_backup(self, shard: Shard, record: ConsumerRecord[bytes, bytes], began: int) -> None:
        """A span for the backup that applying ``record`` (the second half of a join) made,
        in the trace of that record."""
        tracing = self.service.tracing
        with tracing.span("backup", record.headers, start_ns=began, topic=record.topic):
            shard.traced.append(as_kafka(dict(tracing.headers())))

    def _apply(self, shard: Shard, kind: str, raw: bytes | None, at: float) -> Applied:
        event = (
            decode(raw, TrajectoryCompleted)
            if kind == "trajectory"
            else decode(raw, RewardObserved)
        )
        if isinstance(event, Rejected):
            return Applied(Verdict.REJECTED, rejected=event)
        try:
            if isinstance(event, TrajectoryCompleted):
                return shard.core.on_trajectory(event, at)
            return shard.core.on_reward(event, at)
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
            shard = self._shard_of(key[1])
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours
                consumer.seek(
                    TopicPartition(*key),
                    offset if shard is None else shard.offsets.get(key, offset),
                )

    # --- snapshots -----------------------------------------------------------------------

    async def _tick(self) -> None:
        """Expire stale joins and publish snapshots when they are due."""
        period = min(TICK_S, self.settings.snapshot_interval_s)
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._snapshot_due.wait(), period)
            self._snapshot_due.clear()
            if self._closing:
                return
            failed = False
            for shard in list(self.shards.values()):
                if not await self._tick_shard(shard):
                    failed = True
            if failed:
                await asyncio.sleep(self.settings.snapshot_interval_s)  # before trying again

    async def _tick_shard(self, shard: Shard) -> bool:
        """Expire ``shard``'s stale joins and publish its snapshot when due; returns False
        when a snapshot was due and not delivered."""
        now = time.monotonic()
        if shard.core.expire(now):
            shard.dirty = True
        self.metrics.state({shard.number: shard.core})
        overdue = now - shard.snapshot_at >= self.settings.snapshot_interval_s
        due = self._count_due(shard, now) or (shard.pending > 0 and overdue)
        return not due or await self.publish_snapshot(shard)

    def _count_due(self, shard: Shard, now: float) -> bool:
        settings = self.settings
        return shard.count_due(settings.snapshot_every, settings.snapshot_min_interval_s, now)

    async def publish_snapshot(self, shard: Shard) -> bool:
        """Publish ``shard``'s state as its next version and wait for its delivery; then
        commit the offsets it reflects. Returns whether it was delivered."""
        async with self._publishing:
            if self.shards.get(shard.number) is not shard:
                return True  # given up meanwhile, its final snapshot published then
            started = time.perf_counter()
            snapshot = shard.snapshot(self.partitions)
            parts = split(snapshot, self.settings.snapshot_chunk_nodes)
            payloads = [encode(part) for part in parts]
            size = sum(len(payload) for payload in payloads)
            # Set before publishing: a snapshot too large to deliver shows here first.
            self.metrics.snapshot_bytes.set(size)
            backups, shard.traced = list(shard.traced), deque(maxlen=TRACED_BACKUPS)
            try:
                with self.service.tracing.span("snapshot", links=backups, version=snapshot.version):
                    topic = self.settings.topic("policy")
                    key = snapshot_key(self.settings.tenant, shard.number)
                    for part, payload in zip(parts, payloads, strict=True):
                        await self.service.publish(
                            part, topic, chunk_key(key, part), encoded=payload
                        )
            except Exception:  # the next trigger tries again; learning goes on meanwhile
                shard.dirty = True
                self.metrics.snapshot_failures.inc()
                self.log.exception(
                    "snapshot not delivered",
                    extra={
                        "shard": shard.number,
                        "version": snapshot.version,
                        "bytes": size,
                    },
                )
                return False
            shard.delivered(snapshot, time.monotonic())
            metrics = self.metrics
            metrics.snapshots.inc()
            metrics.snapshot_seconds.observe(time.perf_counter() - started)
            metrics.policy_version.set(self.version)
            metrics.state({n: s.core for n, s in self.shards.items()}, graph=True)
            self.log.info(
                "snapshot published",
                extra={
                    "shard": shard.number,
                    "version": snapshot.version,
                    "backed_up": snapshot.backed_up,
                    "bytes": size,
                    "chunks": len(parts),
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
        await self._learner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._learner.assigned(assigned)


def build(settings: Settings) -> Service:
    return Learner(settings).service
