"""The router's step timeout as a service part: read the decisions and outcomes topics (no
consumer group: every replica reads every partition, from ``step_timeout_replay_s`` back),
and publish a timeout outcome for every invoke nobody answered in time (see
services.router.deadlines for why this survives restarts).

Until the replay has reached the ends the topics had at start, the router routes nothing:
it must know which steps timed out before it absorbs an outcome that may be late.
"""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from schemas.events import Decision, StepOutcome
from schemas.topics import topic_of
from services.router.deadlines import Deadlines, timeout_outcome
from services.runtime.kafka import aiokafka_options
from services.runtime.service import Service

#: How often due steps are looked for, at most: a timeout is late by up to this much.
TICK_S = 0.5


class StepTimeouts:
    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.service = service
        self.log = service.log
        self.deadlines = Deadlines(
            settings.step_timeout_s, settings.step_timeout_replay_s, settings.dedupe_window
        )
        self.decisions_topic = service.topic(topic_of(Decision))
        self.outcomes_topic = service.topic(topic_of(StepOutcome))
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.timeouts = Counter(
            "agensbus_router_step_timeouts_total",
            "Invokes the router answered with a failed timeout outcome, nobody else having "
            "answered within the step timeout.",
            registry=service.registry,
        )
        self.late = Counter(
            "agensbus_router_late_outcomes_total",
            "Outcomes that arrived after their step had timed out, and were ignored.",
            registry=service.registry,
        )
        Gauge(
            "agensbus_router_steps_waiting",
            "Invokes this router sees waiting for their outcome.",
            registry=service.registry,
        ).set_function(lambda: self.deadlines.waiting)

    def register(self) -> None:
        self.service.on_startup(self.start)
        self.service.on_shutdown(self.stop)
        self.service.add_check("step_timeouts", self.check)

    def check(self) -> tuple[bool, str]:
        if not self.caught_up.is_set():
            return False, "replaying decisions and outcomes to recover the step deadlines"
        return True, f"{self.deadlines.waiting} invokes waiting for their outcome"

    def is_late(self, outcome: StepOutcome) -> bool:
        """Whether to ignore ``outcome``: its step was already answered by a timeout."""
        if self.deadlines.late(outcome):
            self.late.inc()
            return True
        return False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Nothing is lost: the next round replays the window again.
                self.log.exception("following decisions and outcomes failed; retrying")
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        topics = (self.decisions_topic, self.outcomes_topic)
        consumer = AIOKafkaConsumer(
            *topics, **aiokafka_options(self.service.settings), enable_auto_commit=False
        )
        await consumer.start()
        try:
            ends = await self._rewind(consumer, topics)
            while True:
                batches = await consumer.getmany(timeout_ms=int(TICK_S * 1000), max_records=2000)
                for records in batches.values():
                    for record in records:
                        self._read(record)
                if not self.caught_up.is_set() and await _reached(consumer, ends):
                    self.caught_up.set()
                    waiting = self.deadlines.waiting
                    self.log.info("step deadlines recovered", extra={"waiting": waiting})
                if self.caught_up.is_set():
                    await self._expire()
        finally:
            await consumer.stop()

    async def _rewind(
        self, consumer: AIOKafkaConsumer, topics: tuple[str, ...]
    ) -> dict[TopicPartition, int]:
        """Seek every partition to the start of the replay window; the ends to catch up to."""
        partitions: list[TopicPartition] = []
        for topic in topics:
            known = consumer.partitions_for_topic(topic)
            if not known:
                # Following nothing would time nothing out: fail, and try again.
                raise RuntimeError(f"no partitions known for {topic}")
            partitions += [TopicPartition(topic, p) for p in sorted(known)]
        consumer.unsubscribe()
        consumer.assign(partitions)
        since_ms = int((time.time() - self.deadlines.horizon_s) * 1000)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        try:
            starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        except KafkaError:
            # A broker without time indexes: replay everything there is.
            starts = {}
        for tp in partitions:
            found = starts.get(tp)
            if found is None and tp in starts:
                consumer.seek(tp, ends[tp])
            elif found is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, found.offset)
        return ends

    def _read(self, record: "ConsumerRecord[bytes, bytes]") -> None:
        if record.topic == self.decisions_topic:
            self.deadlines.decision(record.value)
        else:
            self.deadlines.outcome(record.value)

    async def _expire(self) -> None:
        now = time.time()
        for decision in self.deadlines.due(now):
            outcome = timeout_outcome(decision, now)
            try:
                await self.service.publish(
                    outcome, self.outcomes_topic, key=decision.trajectory_id.encode()
                )
            except KafkaError:
                self.log.warning(
                    "could not publish a timeout outcome; retrying",
                    extra={"decision_id": decision.decision_id},
                )
                self.deadlines.retry(decision, now)
                continue
            self.deadlines.timed_out(decision)
            self.timeouts.inc()
            self.log.warning(
                "step timed out",
                extra={
                    "decision_id": decision.decision_id,
                    "cell": decision.cell,
                    "waited_s": round(outcome.latency_s, 3),
                },
            )


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
