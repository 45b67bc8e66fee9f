"""How fast the router routes, next to what the bus itself allows, on one broker in one run.

* **echo**, the bus's own limit: a consumer that re-publishes every record of one topic to
  another and commits, in the router's batch shape but doing no work. Latency: from the
  input record's timestamp to the echo's.
* **router**: the router service in this process, against a fake instant worker in a child
  process (it answers every invoke decision at once with a StepOutcome built by the
  simulated ``World``), so the router has this process's core to itself. Latency: from the
  timestamp of the task or outcome a decision answers to the decision's own timestamp.

Both keep the same number of items in flight (records for echo, trajectories for the
router), so the latencies are those of a loaded, not a flooded, pipeline. Timestamps are
Kafka record timestamps (CreateTime, milliseconds).
"""

import asyncio
import contextlib
import logging
import multiprocessing
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord, RecordMetadata
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from schemas.events import ActionKind, Decision, TaskSubmitted
from schemas.topics import TOPICS
from services.router.app import build
from services.runtime.broker import EmbeddedKafka
from services.runtime.codec import Rejected, decode, encode
from services.runtime.kafka import aiokafka_options, make_broker
from services.runtime.processes import http_ok
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.sim import World, load_scenario
from services.worker.invoke import outcome_of

#: Bytes per echoed record: about the size of a Decision, whose state rides along.
ECHO_PAYLOAD_BYTES = 3_000
#: The router's batch shape (services/router/app.py), so echo moves records the same way.
BATCH_MAX_RECORDS = 500
BATCH_TIMEOUT_MS = 50
#: At most this many items (records, trajectories) go through before measuring, so that
#: group joins, first fetches and a freshly started broker's JIT are not what is measured.
WARMUP = 100
ECHO_TOPICS = ("echo-in", "echo-out")
#: Records echoed per task routed: about the decisions of a trajectory, so that both paths
#: move a similar number of records.
ECHO_RECORDS_PER_TASK = 8

#: How long a router replica in a child process may take to be ready.
REPLICA_START_S = 120.0

Progress = Callable[[str], None]
Check = Callable[[], None]
Stamps = dict[bytes, int]


@dataclass(frozen=True)
class Measured:
    """Items that went through, over how long, and their latencies (None: no items)."""

    items: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def of(cls, latencies_ms: Sequence[float], seconds: float) -> "Measured":
        if not latencies_ms:
            return cls(0, seconds, None, None)
        p50, p99 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 99])
        return cls(len(latencies_ms), seconds, float(p50), float(p99))


@dataclass(frozen=True)
class Pace:
    """How items are offered: ``in_flight`` of them unanswered at once (a closed loop), or,
    with ``per_s``, at that fixed rate whatever the answers (an open loop: an offered load)."""

    in_flight: int
    per_s: float | None = None


#: The warm-up's pace: all its items at once.
WARM = Pace(in_flight=WARMUP)


@dataclass(frozen=True)
class RouterBenchResult:
    bootstrap: str
    embedded: bool
    tasks: int
    in_flight: int
    echo: Measured
    router: Measured
    trajectories: int
    timed_out: bool

    @property
    def ratio(self) -> float:
        """Router decisions per second over echoed records per second."""
        return self.router.per_s / self.echo.per_s if self.echo.per_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["echo"]["per_s"] = self.echo.per_s
        data["router"]["per_s"] = self.router.per_s
        data["ratio"] = self.ratio
        return data


def _now_ms() -> int:
    return int(time.time() * 1000)


@asynccontextmanager
async def producer_of(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**aiokafka_options(settings))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def _reader(
    settings: Settings, *topics: str, group: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer from the earliest offset: every topic of a bench run is new."""
    consumer = AIOKafkaConsumer(
        *topics,
        **aiokafka_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _records(consumer: AIOKafkaConsumer) -> list["ConsumerRecord[bytes, bytes]"]:
    batches = await consumer.getmany(timeout_ms=BATCH_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
    return [record for batch in batches.values() for record in batch]


# --- (a) echo ---------------------------------------------------------------------------------


async def _echo(settings: Settings, source: str, target: str, stop: asyncio.Event) -> None:
    """Consume, re-publish each record, wait for the acks, commit: a router minus the work."""
    async with (
        producer_of(settings) as producer,
        _reader(settings, source, group=f"{source}-echo") as consumer,
    ):
        while not stop.is_set():
            records = await _records(consumer)
            sent = [await producer.send(target, r.value, key=r.key) for r in records]
            await asyncio.gather(*sent)
            if records:
                await consumer.commit()


async def _faststream_echo(
    settings: Settings, source: str, target: str, stop: asyncio.Event
) -> None:
    """The echo through FastStream, as services consume and publish: a batch subscriber that
    re-publishes each record with the broker's ``publish`` and commits once per batch."""
    broker = make_broker(settings, "bench-echo")

    @broker.subscriber(
        source,
        group_id=f"{source}-echo",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=BATCH_MAX_RECORDS,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
    )
    async def echo(msg: KafkaMessage) -> None:
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        sent = [await broker.publish(r.value, target, key=r.key, no_confirm=True) for r in records]
        await asyncio.gather(*sent)

    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.stop()


Echo = Callable[[Settings, str, str, asyncio.Event], Coroutine[Any, Any, None]]
#: The echoes by name: aiokafka alone (the bus's limit) and through FastStream.
ECHOES: dict[str, Echo] = {"raw echo": _echo, "faststream echo": _faststream_echo}


async def measure_echo(
    settings: Settings,
    count: int,
    pace: Pace,
    deadline: float,
    progress: Progress,
    name: str = "raw echo",
) -> tuple[Measured, int]:
    source, target = settings.topic(ECHO_TOPICS[0]), settings.topic(ECHO_TOPICS[1])
    stop = asyncio.Event()
    echo = asyncio.create_task(ECHOES[name](settings, source, target, stop))

    def check() -> None:
        if echo.done():
            echo.result()  # raises what stopped it
            raise RuntimeError(f"the {name} consumer stopped")

    def records(prefix: str, count: int) -> Iterator[tuple[bytes, bytes]]:
        payload = b"x" * ECHO_PAYLOAD_BYTES
        return ((f"{prefix}{i}".encode(), payload) for i in range(count))

    try:
        progress(f"{name}: warming up")
        warmup = min(count, WARMUP)
        await _drive(settings, source, records("w", warmup), target, warmup, WARM, deadline, check)
        progress(f"{name}: {count} records")
        sent_at, done_at = await _drive(
            settings, source, records("e", count), target, count, pace, deadline, check
        )
    finally:
        stop.set()
        await echo
    latencies = [float(done_at[key] - sent_at[key]) for key in done_at]
    return Measured.of(latencies, _span_s(sent_at.values(), done_at.values())), len(done_at)


# --- (b) router ---------------------------------------------------------------------------------


def _fake_worker(
    settings: Settings, ready: ProcessEvent, stop: ProcessEvent, results: Connection
) -> None:
    """Child process: answer every invoke decision at once; report each decision's
    (trajectory, step, timestamp) and each outcome's (trajectory, step, timestamp)."""
    decisions, outcomes = asyncio.run(_answer_decisions(settings, ready, stop))
    results.send((decisions, outcomes))
    results.close()


Stamp = tuple[str, int, int]  # trajectory_id, step, record timestamp in ms


async def _answer_decisions(
    settings: Settings, ready: ProcessEvent, stop: ProcessEvent
) -> tuple[list[Stamp], list[Stamp]]:
    scenario = load_scenario(settings.scenario)
    world = World(scenario, settings.seed)
    decisions: list[Stamp] = []
    outcomes: list[Stamp] = []
    async with (
        producer_of(settings) as producer,
        _reader(settings, settings.topic("decisions")) as consumer,
    ):
        ready.set()
        while not stop.is_set():
            sent: list[asyncio.Future[RecordMetadata]] = []
            for record in await _records(consumer):
                decision = decode(record.value, Decision)
                if isinstance(decision, Rejected):
                    continue
                decisions.append((decision.trajectory_id, decision.step, record.timestamp))
                if decision.action_kind is not ActionKind.INVOKE:
                    continue
                variant = scenario.pool.variant(decision.action)
                outcome = outcome_of(decision, world.execute(decision.state, variant))
                stamp = _now_ms()
                outcomes.append((outcome.trajectory_id, outcome.step, stamp))
                sent.append(
                    await producer.send(
                        settings.topic("outcomes"),
                        encode(outcome),
                        key=outcome.trajectory_id.encode(),
                        timestamp_ms=stamp,
                    )
                )
            await asyncio.gather(*sent)
    return decisions, outcomes


def decision_latencies(
    tasks: dict[str, int], decisions: Sequence[Stamp], outcomes: Sequence[Stamp]
) -> list[float]:
    """Per decision of a trajectory in ``tasks``: its timestamp minus that of what it
    answers, the latest outcome of an earlier step of its trajectory, else its task."""
    earlier: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for trajectory, step, stamp in outcomes:
        earlier[trajectory].append((step, stamp))
    latencies = []
    for trajectory, step, stamp in decisions:
        if trajectory not in tasks:
            continue
        before = [s for s in earlier[trajectory] if s[0] < step]
        cause = max(before)[1] if before else tasks[trajectory]
        latencies.append(float(stamp - cause))
    return latencies


def bench_tasks(settings: Settings, prefix: str, count: int) -> Iterator[TaskSubmitted]:
    """``count`` tasks cycling through the scenario's classes."""
    classes = list(load_scenario(settings.scenario).classes.values())
    for i in range(count):
        task_class = classes[i % len(classes)]
        yield TaskSubmitted(
            task_id=f"{prefix}-{i:06d}",
            goal=task_class.description,
            features=task_class.features,
            task_class=task_class.name,
        )


@contextmanager
def _spawned(name: str, target: Callable[..., None], *args: object) -> Iterator[BaseProcess]:
    """A child process running ``target(*args)``; the caller tells it to stop before the
    block ends, and it is killed if it has not within 30 s."""
    # spawn: a fork of a process with a running event loop and broker clients is unsafe.
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=args, name=name, daemon=True
    )
    process.start()
    try:
        yield process
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def _child(settings: Settings) -> Iterator[tuple[ProcessEvent, ProcessEvent, Connection]]:
    """The fake worker: its ready and stop events and where its results arrive."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    receive, send = context.Pipe(duplex=False)
    with _spawned("fake-worker", _fake_worker, settings, ready, stop, send):
        send.close()
        try:
            yield ready, stop, receive
        finally:
            stop.set()


async def _until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def _wait_ready(router: Service, running: "asyncio.Task[None]", deadline: float) -> None:
    def url() -> str | None:
        try:
            return router.http.url
        except RuntimeError:  # not listening yet
            return None

    await _until(lambda: url() is not None or running.done(), deadline, "the router's HTTP")
    while not running.done() and not await asyncio.to_thread(http_ok, f"{url()}/readyz"):
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting for the router to be ready")
        await asyncio.sleep(0.05)
    if running.done():
        running.result()
        raise RuntimeError("the router stopped during start")


@asynccontextmanager
async def _running_router(settings: Settings, deadline: float) -> AsyncIterator[Check]:
    """The router service in this process, ready; yields what raises once it stopped."""
    router = build(settings)
    # Its lifecycle messages are logged at the service's level; a bench wants only errors.
    router.log.setLevel(logging.ERROR)
    running = asyncio.create_task(router.run())

    def check() -> None:
        if running.done():
            running.result()
            raise RuntimeError("the router stopped")

    try:
        await _wait_ready(router, running, deadline)
        yield check
    finally:
        router.stop()
        await running


def _router_replica(settings: Settings, ready: ProcessEvent, stop: ProcessEvent) -> None:
    """Child process: one router replica, until ``stop``."""

    async def serve() -> None:
        async with _running_router(settings, time.monotonic() + REPLICA_START_S) as check:
            ready.set()
            while not stop.is_set():
                check()
                await asyncio.sleep(0.05)

    asyncio.run(serve())


@asynccontextmanager
async def _routers(settings: Settings, replicas: int, deadline: float) -> AsyncIterator[Check]:
    """``replicas`` routers in one consumer group, ready: one in this process, or each in a
    child process of its own (they then share the input partitions)."""
    if replicas == 1:
        async with _running_router(settings, deadline) as check:
            yield check
        return
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    readies = [context.Event() for _ in range(replicas)]
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(_spawned(f"router-{i}", _router_replica, settings, ready, stop))
            for i, ready in enumerate(readies)
        ]

        def check() -> None:
            if any(not process.is_alive() for process in processes):
                raise RuntimeError("a router replica stopped")

        def all_ready() -> bool:
            check()
            return all(ready.is_set() for ready in readies)

        try:
            await _until(all_ready, deadline, "the router replicas")
            yield check
        finally:
            stop.set()


async def measure_router(
    settings: Settings,
    count: int,
    pace: Pace,
    deadline: float,
    progress: Progress,
    replicas: int = 1,
) -> tuple[Measured, int]:
    with _child(settings) as (ready, stop, results):
        async with _routers(settings, replicas, deadline) as check:

            async def route(tasks: Iterator[TaskSubmitted], count: int, pace: Pace) -> Stamps:
                items = ((t.task_id.encode(), encode(t)) for t in tasks)
                sent_at, done_at = await _drive(
                    settings,
                    settings.topic("tasks"),
                    items,
                    settings.topic("trajectories"),
                    count,
                    pace,
                    deadline,
                    check,
                )
                return {key: sent_at[key] for key in done_at}

            await _until(ready.is_set, deadline, "the fake worker")
            progress("router: warming up")
            warmup = min(count, WARMUP)
            await route(bench_tasks(settings, "warmup", warmup), warmup, WARM)
            progress(f"router: {count} tasks")
            completed = await route(bench_tasks(settings, "bench", count), count, pace)
        stop.set()
        decisions, outcomes = await asyncio.to_thread(results.recv)
    tasks = {key.decode(): stamp for key, stamp in completed.items()}
    measured = [(t, step, stamp) for t, step, stamp in decisions if t in tasks]
    latencies = decision_latencies(tasks, measured, outcomes)
    seconds = _span_s(tasks.values(), [stamp for _, _, stamp in measured])
    return Measured.of(latencies, seconds), len(tasks)


# --- both ------------------------------------------------------------------------------------


async def create_topics(settings: Settings, deadline: float) -> None:
    """The router's topics and echo's, once every partition has a leader (producing to one
    that has none yet would only measure the wait)."""
    await ensure_topics(settings)
    names = [settings.topic(name) for name in ECHO_TOPICS]
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, settings.topic_partitions, 1) for n in names])
        names += [settings.topic(spec.name) for spec in TOPICS]

        async def led() -> bool:
            described = await admin.describe_topics(names)
            return all(
                t["error_code"] == 0 and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            )

        while not await led():
            if time.monotonic() > deadline:
                raise TimeoutError("gave up waiting for the bench topics to have leaders")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


def _span_s(starts: Iterable[int], ends: Iterable[int]) -> float:
    """Seconds from the first start to the last end, by record timestamps."""
    first, last = min(starts, default=0), max(ends, default=0)
    return max(last - first, 0) / 1000


async def _drive(
    settings: Settings,
    topic: str,
    items: Iterator[tuple[bytes, bytes]],
    answers: str,
    count: int,
    pace: Pace,
    deadline: float,
    check: Callable[[], None],
) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """Send (key, value) items to ``topic`` at ``pace`` until ``count`` keys were answered
    on ``answers`` or the deadline passed. Returns the timestamp of each key's item and of
    its answer."""
    sent_at: dict[bytes, int] = {}
    done_at: dict[bytes, int] = {}
    async with producer_of(settings) as producer, _reader(settings, answers) as answered:

        async def send() -> None:
            item = next(items, None)
            if item is not None:
                key, value = item
                sent_at[key] = _now_ms()
                await producer.send(topic, value, key=key, timestamp_ms=sent_at[key])

        async def offer(per_s: float) -> None:
            start = time.monotonic()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / per_s - time.monotonic()))
                await send()

        offering = None if pace.per_s is None else asyncio.create_task(offer(pace.per_s))
        if offering is None:
            for _ in range(pace.in_flight):
                await send()
        try:
            while len(done_at) < count and time.monotonic() < deadline:
                check()
                if offering is not None and offering.done():
                    offering.result()  # raises what stopped it
                for record in await _records(answered):
                    if record.key in sent_at and record.key not in done_at:
                        done_at[record.key] = record.timestamp
                        if offering is None:
                            await send()
        finally:
            if offering is not None:
                offering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await offering
    return sent_at, done_at


def bench_settings(settings: Settings, bootstrap: str) -> Settings:
    """``settings`` for a bench run on ``bootstrap``: a fresh topic prefix, any free HTTP
    port, only warnings logged."""
    return settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"bench-{uuid.uuid4().hex[:8]}.",
            "http_port": 0,
            "log_level": "WARNING",
        }
    )


@contextmanager
def bench_broker(settings: Settings) -> Iterator[tuple[str, bool]]:
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap, False
        return
    with EmbeddedKafka() as broker:
        yield broker.bootstrap, True


async def _bench(
    settings: Settings, tasks: int, in_flight: int, timeout_s: float, progress: Progress
) -> tuple[Measured, bool, Measured, int]:
    deadline = time.monotonic() + timeout_s
    progress("creating topics")
    await create_topics(settings, deadline)
    records = tasks * ECHO_RECORDS_PER_TASK
    pace = Pace(in_flight)
    echo, echoed = await measure_echo(settings, records, pace, deadline, progress)
    router, routed = await measure_router(settings, tasks, pace, deadline, progress)
    return echo, echoed < records, router, routed


def run_router_bench(
    settings: Settings,
    *,
    tasks: int,
    in_flight: int,
    timeout_s: float,
    progress: Progress = lambda _stage: None,
) -> RouterBenchResult:
    """Measure echo, then the router, on the broker of ``settings`` (an embedded one when
    it names none), on topics of a fresh prefix. Both stop at ``timeout_s`` overall."""
    with bench_broker(settings) as (bootstrap, embedded):
        progress("starting" if embedded else f"connecting to {bootstrap}")
        echo, echo_cut, router, routed = asyncio.run(
            _bench(bench_settings(settings, bootstrap), tasks, in_flight, timeout_s, progress)
        )
    return RouterBenchResult(
        bootstrap=bootstrap,
        embedded=embedded,
        tasks=tasks,
        in_flight=in_flight,
        echo=echo,
        router=router,
        trajectories=routed,
        timed_out=echo_cut or routed < tasks,
    )
