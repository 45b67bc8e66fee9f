"""The router service: tasks and outcomes in, decisions and completed trajectories out.

Handlers stay thin: decode, call :class:`RouterCore`, publish. Publishes of a batch go out
without waiting for each acknowledgement and are gathered at the end; the batch's offsets
are committed only after all of them are confirmed (at least once). A second
subscriber, with no consumer group, replays the compacted policy topic from the beginning on
every replica and hot-swaps to newer snapshots.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from schemas.events import (
    Decision,
    PolicySnapshot,
    StepOutcome,
    TaskSubmitted,
)
from schemas.records import Budget
from schemas.topics import topic_of
from services.pipeline import deployed_pipeline
from services.policy import CellPool
from services.policy.arms import deployed_arm
from services.policy.chunks import Chunks
from services.policy.gate import GateConfig, describe
from services.policy.governance import GovernanceConfig, parse_failure_kinds
from services.router.breaker import BreakerConfig, Breakers, BreakerState, Transition
from services.router.core import (
    Duplicate,
    RouterCore,
    RouterEvent,
    SnapshotResult,
    SnapshotVerdict,
)
from services.router.metrics import RouterMetrics
from services.router.readiness import PolicyCatchUp
from services.router.timeouts import StepTimeouts
from services.runtime.codec import Rejected, decode
from services.runtime.kafka import aiokafka_options
from services.runtime.limits import Limits, task_problem
from services.runtime.service import Service
from services.runtime.settings import Settings

#: Records per batch: enough to amortise a commit, few enough to keep a batch in milliseconds.
BATCH_MAX_RECORDS = 500
#: How long an idle poll waits for records; it bounds the latency a quiet router adds.
BATCH_TIMEOUT_MS = 50

#: What the router dead-letters beyond undecodable input (their series start at 0).
DEAD_LETTERS = (
    "invalid_task",
    "over_limit",
    "invalid_state",
    "unknown_tenant",
    "unknown_action",
    "unknown_trajectory",
    "unknown_step",
    "internal_error",
)

#: The verdicts of snapshots the off-policy gate judged.
GATE_JUDGED = (SnapshotVerdict.ADOPTED, SnapshotVerdict.GATED)

Records = Sequence["ConsumerRecord[bytes, bytes]"]
Sent = list["asyncio.Future[RecordMetadata]"]
E = TypeVar("E")
R = TypeVar("R")


def build(settings: Settings) -> Service:
    service = Service("router", settings, DEAD_LETTERS)
    pipeline = deployed_pipeline(settings)
    setup = deployed_arm(settings.policy_arm).setup(pipeline, settings.seed)
    core = RouterCore(
        setup,
        settings.tenant_list,
        budget=budget_of(settings, pipeline.budget),
        dedupe_window=settings.dedupe_window,
        governance=governance_config(settings),
        breakers=Breakers(models_of(setup.pool), breaker_config(settings), clock=time.time),
        gate=gate_config(settings),
    )
    Router(service, core).register()
    return service


def budget_of(settings: Settings, default: Budget) -> Budget:
    """The pipeline's budget, with what the settings set instead."""
    given = {"max_steps": settings.max_steps, "max_tokens": settings.max_tokens}
    return default.model_copy(update={k: v for k, v in given.items() if v is not None})


def governance_config(settings: Settings) -> GovernanceConfig:
    return GovernanceConfig(
        halt_on=parse_failure_kinds(settings.governance_halt_on),
        max_failures=settings.governance_max_failures,
    )


def gate_config(settings: Settings) -> GateConfig | None:
    if not settings.gate_enabled:
        return None
    return GateConfig(settings.gate_tolerance, settings.gate_min_trajectories)


def breaker_config(settings: Settings) -> BreakerConfig:
    return BreakerConfig(
        enabled=settings.breaker_enabled,
        window=settings.breaker_window,
        window_s=settings.breaker_window_s,
        failure_rate=settings.breaker_failure_rate,
        min_calls=settings.breaker_min_calls,
        cooldown_s=settings.breaker_cooldown_s,
    )


def _span_name(event: RouterEvent) -> str:
    return "decision" if isinstance(event, Decision) else "trajectory completed"


def models_of(pool: CellPool) -> set[str]:
    """The models the pool's variants name (the ones a breaker can guard)."""
    return {v.model for cell in pool.cells.values() for v in cell.variants if v.model}


class Router:
    def __init__(self, service: Service, core: RouterCore) -> None:
        self.service = service
        self.core = core
        self.log = service.log
        self.metrics = RouterMetrics(service.registry, core.tenants)
        if core.breakers is not None:
            self.metrics.watch(core.breakers)
        self.catch_up = PolicyCatchUp()
        self.chunks = Chunks()  # of snapshots published in chunks, until each is whole
        self.tasks_topic = service.topic(topic_of(TaskSubmitted))
        self.outcomes_topic = service.topic(topic_of(StepOutcome))
        self.policy_topic = service.topic(topic_of(PolicySnapshot))
        timeout_s = service.settings.step_timeout_s
        self.timeouts = StepTimeouts(service) if timeout_s > 0 else None
        self.limits = Limits.from_settings(service.settings)

    def register(self) -> None:
        broker = self.service.broker
        fetch_max_wait_ms = self.service.settings.kafka_fetch_max_wait_ms

        @broker.subscriber(
            self.tasks_topic,
            self.outcomes_topic,
            group_id=self.service.settings.router_group,
            fetch_max_wait_ms=fetch_max_wait_ms,
            auto_offset_reset="earliest",
            # commit after a batch went through; on an error rewind and route it again
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=BATCH_MAX_RECORDS,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
        )
        async def route(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            await self.route_batch(raw if isinstance(raw, tuple) else (raw,))

        # No group: every replica reads every snapshot, so there is nothing to commit.
        @broker.subscriber(
            self.policy_topic,
            fetch_max_wait_ms=fetch_max_wait_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
        )
        async def follow(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            for record in raw if isinstance(raw, tuple) else (raw,):
                self.follow_policy(record)

        self.service.on_startup(self.measure_policy_topic)
        if self.timeouts is not None:
            self.timeouts.register()
        self.service.add_check("policy", lambda: self.catch_up.check(self.core))

    # --- tasks and outcomes --------------------------------------------------------------

    async def route_batch(self, records: Records) -> None:
        if self.timeouts is not None:
            await self.timeouts.caught_up.wait()
        received = time.perf_counter()
        sent: list[tuple[ConsumerRecord[bytes, bytes], list[RouterEvent], Sent]] = []
        absorbed: list[tuple[str, int]] = []
        started = 0
        tracing = self.service.tracing
        try:
            for record in records:
                with tracing.span("route", record.headers, topic=record.topic):
                    if record.topic == self.tasks_topic:
                        routed = await self._task(record)
                        started += len({e.trajectory_id for e in routed})
                    else:
                        routed = await self._outcome(record, absorbed)
                    publishing = await self._publish_all(record, routed) if routed else None
                if publishing is None:
                    continue
                sent.append((record, routed, publishing))
                self.metrics.decision_latency.observe(time.perf_counter() - received)
            events = await self._confirmed(sent)
        except BaseException:
            # Nothing of this batch is committed and it will be routed again: its outcomes
            # must then be absorbed, not dropped as duplicates of themselves.
            for trajectory_id, step in absorbed:
                self.core.forget(trajectory_id, step)
            raise
        self.metrics.started_trajectories(started)
        self.metrics.count(events)
        self._log_events(events)
        if self.core.breakers is not None:
            self._breakers_moved(self.core.breakers.drain())

    async def _publish_all(
        self, record: "ConsumerRecord[bytes, bytes]", routed: list[RouterEvent]
    ) -> Sent | None:
        """Start publishing what ``record`` routed to; None when it is poison (an event too
        large to send): dead-lettered, and the batch goes on without it."""
        try:
            return [await self._publish(event) for event in routed]
        except Exception as error:
            if await self.service.poisoned(record, error):
                return None
            raise

    async def _confirmed(
        self, sent: list[tuple["ConsumerRecord[bytes, bytes]", list[RouterEvent], Sent]]
    ) -> list[RouterEvent]:
        """Wait for every publish; a record the broker refused for good is dead-lettered,
        any other failure fails the batch (it is routed again)."""
        results = await asyncio.gather(
            *(future for _, _, futures in sent for future in futures), return_exceptions=True
        )
        confirmed: list[RouterEvent] = []
        at = 0
        for record, routed, futures in sent:
            failures = [r for r in results[at : at + len(futures)] if isinstance(r, BaseException)]
            at += len(futures)
            for failure in failures[:1]:
                if not await self.service.poisoned(record, failure):
                    raise failure
            if not failures:
                confirmed += routed
        return confirmed

    async def _task(self, record: "ConsumerRecord[bytes, bytes]") -> list[RouterEvent]:
        task = decode(record.value, TaskSubmitted)
        if not isinstance(task, Rejected):
            task = task_problem(task, len(record.value or b""), self.limits) or task
        routed = (
            task if isinstance(task, Rejected) else self._guard(record, self.core.on_task, task)
        )
        if isinstance(routed, Rejected):
            await self.service.dead_letter(record, routed)
            return []
        return routed

    async def _outcome(
        self, record: "ConsumerRecord[bytes, bytes]", absorbed: list[tuple[str, int]]
    ) -> list[RouterEvent]:
        outcome = decode(record.value, StepOutcome)
        if isinstance(outcome, Rejected):
            await self.service.dead_letter(record, outcome)
            return []
        if self.timeouts is not None and self.timeouts.is_late(outcome):
            return []
        routed = self._guard(record, self.core.on_outcome, outcome)
        if isinstance(routed, Rejected):
            await self.service.dead_letter(record, routed)
            return []
        if isinstance(routed, Duplicate):
            self.metrics.duplicates.inc()
            self.log.debug(
                "duplicate outcome dropped",
                extra={"trajectory_id": routed.trajectory_id, "step": routed.step},
            )
            return []
        absorbed.append((outcome.trajectory_id, outcome.step))
        return routed

    def _guard(
        self, record: "ConsumerRecord[bytes, bytes]", route: Callable[[E], R], event: E
    ) -> R | Rejected:
        """``route(event)``, or the reason it raised. The core is deterministic, so an input
        it fails on would fail again on every retry: it is dead-lettered rather than left to
        stall its partition (publish failures, worth retrying, happen outside this)."""
        try:
            return route(event)
        except Exception as error:
            self.log.exception(
                "routing failed", extra={"topic": record.topic, "offset": record.offset}
            )
            return Rejected("internal_error", f"{type(error).__name__}: {error}")

    async def _publish(self, event: RouterEvent) -> "asyncio.Future[RecordMetadata]":
        topic = self.service.topic(topic_of(type(event)))
        with self.service.tracing.span(_span_name(event), trajectory_id=event.trajectory_id):
            return await self.service.send(event, topic, event.trajectory_id.encode())

    def _breakers_moved(self, transitions: list[Transition]) -> None:
        self.metrics.moved(transitions)
        for moved in transitions:
            opened = moved.target is BreakerState.OPEN
            self.log.log(
                logging.WARNING if opened else logging.INFO,
                "circuit breaker moved",
                extra={"model": moved.model, "from": moved.source.label, "to": moved.target.label},
            )

    def _log_events(self, events: list[RouterEvent]) -> None:
        if not self.log.isEnabledFor(logging.DEBUG):
            return
        for event in events:
            if isinstance(event, Decision):
                self.log.debug(
                    "decision",
                    extra={
                        "decision_id": event.decision_id,
                        "action": event.action,
                        "reason": event.reason.value,
                        "propensity": event.propensity,
                        "policy_version": event.policy_version,
                        "exploration_c": event.exploration_c,
                        "signature": event.signature,
                        "scores": [s.model_dump() for s in event.scores],
                    },
                )
            else:
                self.log.debug(
                    "trajectory completed",
                    extra={
                        "trajectory_id": event.trajectory_id,
                        "termination": event.termination.value,
                        "halt_reason": event.halt_reason,
                        "steps": event.steps,
                        "tokens": event.tokens,
                    },
                )

    # --- the policy ------------------------------------------------------------------------

    async def measure_policy_topic(self) -> None:
        """Note where the policy topic ends before following it: readiness waits for that."""
        # Naming the topic makes start() wait for its metadata, which partitions_for_topic
        # reads; without a group this consumer commits nothing and is gone in a moment.
        consumer = AIOKafkaConsumer(self.policy_topic, **aiokafka_options(self.service.settings))
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.policy_topic, p)
                for p in sorted(consumer.partitions_for_topic(self.policy_topic) or ())
            ]
            beginnings = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        self.catch_up.expect(
            {tp.partition: offset for tp, offset in beginnings.items()},
            {tp.partition: offset for tp, offset in ends.items()},
        )
        self.log.info(
            "following the policy topic",
            extra={"topic": self.policy_topic, "to_replay": self.catch_up.remaining()},
        )

    def follow_policy(self, record: "ConsumerRecord[bytes, bytes]") -> None:
        # Every replica replays every snapshot at every start, so a bad one is logged and
        # counted here rather than dead-lettered once per replica and restart.
        self.catch_up.read(record.partition, record.offset)
        with self.service.tracing.span("follow policy", record.headers, offset=record.offset):
            self._follow(record)

    def _follow(self, record: "ConsumerRecord[bytes, bytes]") -> None:
        read = decode(record.value, PolicySnapshot)
        if isinstance(read, Rejected):
            self._refused(read.error_type, read.reason, offset=record.offset)
            return
        snapshot = self.chunks.add(read)
        if snapshot is None:
            return  # a chunk of a version not whole yet
        result = self.core.on_snapshot(snapshot)
        if self.core.gate is not None and result.verdict in GATE_JUDGED:
            self.metrics.gated(snapshot.gate, result.gate_reason)
        if result.gate_reason is not None:
            self.log.warning(
                "policy snapshot kept out by the off-policy gate",
                extra={
                    "tenant": result.tenant,
                    "version": result.version,
                    "reason": result.gate_reason,
                    "detail": f"{result.detail}; {describe(snapshot.gate)}",
                },
            )
        elif result.adopted:
            self.metrics.adopted(snapshot, self.core.policy_version(snapshot.tenant))
            self.log.info(
                "policy adopted",
                extra={"tenant": result.tenant, "version": result.version, "detail": result.detail},
            )
        elif result.verdict in (SnapshotVerdict.FOLD_MISMATCH, SnapshotVerdict.INVALID):
            self._refused(result.verdict.value, result.detail, offset=record.offset, result=result)
        else:
            self.log.debug(
                "policy snapshot ignored",
                extra={"tenant": result.tenant, "version": result.version, "detail": result.detail},
            )

    def _refused(
        self, reason: str, detail: str, *, offset: int, result: SnapshotResult | None = None
    ) -> None:
        self.metrics.policy_refused.labels(reason=reason).inc()
        extra: dict[str, object] = {"offset": offset, "reason": reason, "detail": detail}
        if result is not None:
            extra |= {"tenant": result.tenant, "version": result.version}
        self.log.error("policy snapshot refused", extra=extra)
