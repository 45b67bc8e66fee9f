"""``agensbus submit`` and ``agensbus tail``: put tasks on the bus, watch any topic.

Both are plain Kafka clients (aiokafka): neither needs a service to run, and what they write
or read is exactly what any other producer or consumer of the topics sees.
"""

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas.events import (
    EVENT_TYPES,
    DeadLetter,
    Decision,
    Event,
    PolicySnapshot,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)
from schemas.headers import as_kafka, event_headers
from schemas.topics import TOPIC_NAMES, event_of
from services.cli._errors import UserError
from services.cli._render import listing
from services.cli._settings import KAFKA_FIELDS, require_bootstrap, settings_from
from services.runtime.codec import Rejected, decode, encode
from services.runtime.kafka import aiokafka_options
from services.runtime.limits import Limits, task_problem
from services.runtime.settings import Settings, settings_options
from services.runtime.tracing import TracingUnavailable, start_tracing

_MODEL_OF_TYPE: dict[str, type[Event]] = {model.__name__: model for model in EVENT_TYPES}


def topic_name(settings: Settings, name: str) -> str:
    """A short name (``tasks``, ``decisions``, ...) gets the prefix; anything else is taken
    as a full topic name."""
    return settings.topic(name) if name in TOPIC_NAMES else name


async def check_topic(settings: Settings, topic: str) -> None:
    """A clear error for a missing topic, where a client would wait on its metadata."""
    client = AIOKafkaConsumer(**aiokafka_options(settings))
    await client.start()
    try:
        # topics() asks the cluster afresh, so a topic created a moment ago is known.
        known = await client.topics()
    finally:
        await client.stop()
    if topic not in known:
        raise UserError(
            f"topic {topic} does not exist (services create their topics when they start, "
            "or run agensbus up)"
        )


# --- submit ----------------------------------------------------------------------------------


def parse_tasks(data: bytes, limits: Limits) -> tuple[list[TaskSubmitted], list[str]]:
    """Every non-blank line as a TaskSubmitted, and a ``line N: reason`` for each one that
    is not one, is over the size limits the router admits, or repeats a task_id (two
    trajectories under one id would be deduplicated into one downstream)."""
    tasks: list[TaskSubmitted] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        parsed = decode(line, TaskSubmitted)
        if not isinstance(parsed, Rejected):
            parsed = task_problem(parsed, len(encode(parsed)), limits) or parsed
        if isinstance(parsed, Rejected):
            problems.append(f"line {number}: {parsed.reason}")
        elif parsed.task_id in first_line:
            problems.append(
                f"line {number}: task_id {parsed.task_id!r} repeats line "
                f"{first_line[parsed.task_id]}"
            )
        else:
            first_line[parsed.task_id] = number
            tasks.append(parsed)
    return tasks, problems


async def publish_tasks(settings: Settings, topic: str, tasks: Sequence[TaskSubmitted]) -> None:
    """Publish ``tasks`` keyed by task_id, waiting for every acknowledgement; with tracing
    configured, each task starts its trace here."""
    await check_topic(settings, topic)
    tracing = start_tracing(settings, "cli")
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all")
    await producer.start()
    try:
        sent = []
        for task in tasks:
            with tracing.span("submit", task_id=task.task_id):
                headers = event_headers(task, "cli") | dict(tracing.headers())
                value, key = encode(task), task.task_id.encode()
                sent.append(await producer.send(topic, value, key=key, headers=as_kafka(headers)))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
        tracing.shutdown()


@click.command("submit")
@click.argument("file", metavar="FILE.jsonl", type=click.File("rb"))
@click.option(
    "--topic",
    default="tasks",
    show_default=True,
    help="Short topic name (gets --topic-prefix) or a full topic name.",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid lines and report the others (default: publish nothing if any "
    "line is invalid).",
)
@settings_options(KAFKA_FIELDS)
def submit(file: IO[bytes], topic: str, skip_invalid: bool, **flags: Any) -> None:
    """Publish each line of FILE.jsonl (- for stdin) as a TaskSubmitted, keyed by task_id.

    A line is a JSON object: task_id and goal are required; features, task_class,
    constraints, rollouts, budget, metadata and tenant are optional; event_id and
    produced_at are filled in when missing. Every line is validated before anything is
    published; a bad line is reported with its number and the reason. Example line:

    \b
    {"task_id": "t-1", "goal": "Assess CVE-2024-0001", "task_class": "C1",
     "features": {"verification_need": 0.9}}
    """
    settings = settings_from(flags)
    require_bootstrap(settings)
    source = "stdin" if file.name in ("-", "<stdin>") else Path(file.name).name
    tasks, problems = parse_tasks(file.read(), Limits.from_settings(settings))
    if problems and not skip_invalid:
        raise UserError(
            f"{source}: {len(problems)} invalid line(s), nothing published "
            f"(--skip-invalid publishes the valid ones):\n{listing(problems)}"
        )
    if problems:
        click.echo(
            f"{source}: skipped {len(problems)} invalid line(s):\n{listing(problems)}", err=True
        )
    target = topic_name(settings, topic)
    try:
        asyncio.run(publish_tasks(settings, target, tasks))
    except TracingUnavailable as error:
        raise UserError(str(error)) from None
    click.echo(f"published {len(tasks)} task(s) to {target}")


# --- tail ------------------------------------------------------------------------------------


def _model_for(topic: str, settings: Settings, value: Any) -> type[Event] | None:
    # A typed event names itself; a bare object (e.g. from kcat) is read as its topic's kind.
    if isinstance(value, dict) and isinstance(value.get("event_type"), str):
        return _MODEL_OF_TYPE.get(value["event_type"])
    return event_of(topic.removeprefix(settings.topic_prefix))


def _quote(text: str | None, limit: int = 60) -> str:
    if text is None:
        return "-"
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def summarize(event: Event) -> str:
    """One line with the event's key fields."""
    if isinstance(event, TaskSubmitted):
        return (
            f"task       {event.task_id} class={event.task_class or '-'} "
            f"rollouts={event.rollouts} goal={_quote(event.goal)}"
        )
    if isinstance(event, Decision):
        detail = f" detail={_quote(event.reason_detail, 160)}" if event.reason_detail else ""
        return (
            f"decision   {event.decision_id} {event.action_kind.value} {event.action} "
            f"reason={event.reason.value} p={event.propensity:.3f} policy=v{event.policy_version}"
            f"{detail}"
        )
    if isinstance(event, StepOutcome):
        failure = f" ({event.failure_kind.value})" if event.failure_kind else ""
        return (
            f"outcome    {event.decision_id} {event.action} {event.status.value}{failure} "
            f"tokens={event.tokens_in + event.tokens_out} latency={event.latency_s:.2f}s "
            f"retries={event.retries}{' done' if event.done else ''}"
        )
    if isinstance(event, TrajectoryCompleted):
        halt = f" ({event.halt_reason})" if event.halt_reason else ""
        return (
            f"completed  {event.trajectory_id} {event.termination.value}{halt} steps={event.steps} "
            f"tokens={event.tokens} retries={event.retries} regime={event.regime.value} "
            f"class={event.task_class or '-'} policy=v{event.policy_version}"
        )
    if isinstance(event, RewardObserved):
        return (
            f"reward     {event.trajectory_id} quality={event.quality:.3f} "
            f"confidence={event.confidence:.2f} source={event.source.value}"
        )
    if isinstance(event, PolicySnapshot):
        shard = "" if event.shard is None else f" shard={event.shard}/{event.shards}"
        if event.chunk is not None:
            shard += f" chunk={event.chunk}/{event.chunks}"
        return (
            f"policy     tenant={event.tenant}{shard} version={event.version} "
            f"nodes={len(event.policy.nodes)} backed_up={event.backed_up}"
        )
    if isinstance(event, DeadLetter):
        where = f"{event.source_topic}[{event.partition}]@{event.offset}"
        return (
            f"dead       {where} service={event.service} error={event.error_type} "
            f"reason={_quote(event.reason, 120)}"
        )
    return f"{type(event).__name__} {event.event_id}"


def render(record: ConsumerRecord, settings: Settings, *, as_json: bool) -> str | None:
    """The line ``tail`` prints for a record; None for a record --json cannot print."""
    value: bytes = record.value or b""
    try:
        data = json.loads(value)
    except ValueError:  # not JSON, or not UTF-8
        data = None
    where = f"[{record.partition}]@{record.offset}"
    if as_json:
        if data is None:
            click.echo(f"{record.topic}{where}: not JSON, left out", err=True)
            return None
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    at = datetime.fromtimestamp(record.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
    model = _model_for(record.topic, settings, data)
    if model is None:
        text = _quote(value.decode(errors="replace"))
        return f"{at} ?          {where} not an agensbus event: {text}"
    parsed = decode(value, model)
    if isinstance(parsed, Rejected):
        return f"{at} ?          {where} {parsed.reason}"
    return f"{at} {summarize(parsed)}"


async def tail_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    idle_s: float | None,
    as_json: bool,
) -> int:
    """Print records of ``topic`` until ``limit`` were printed or none came for ``idle_s``;
    returns how many were printed."""
    await check_topic(settings, topic)
    # No group: every partition is read, and nobody's committed offsets move.
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        printed = 0
        loop = asyncio.get_running_loop()
        last = loop.time()
        while limit is None or printed < limit:
            batches = await consumer.getmany(timeout_ms=200)
            records = sorted(
                (r for batch in batches.values() for r in batch), key=lambda r: r.timestamp
            )
            for record in records:
                line = render(record, settings, as_json=as_json)
                if line is not None:
                    click.echo(line)
                    printed += 1
                if printed == limit:
                    break
            if records:
                last = loop.time()
            elif idle_s is not None and loop.time() - last >= idle_s:
                break
        return printed
    finally:
        await consumer.stop()


@click.command(
    "tail",
    help=f"""Print the events of TOPIC: a short name ({", ".join(TOPIC_NAMES)}) or a full
    topic name.

    Each event is one line: its time, kind and key fields (ids, action, status, tokens,
    quality, version...). Reads every partition without a consumer group, so it changes
    nobody's offsets. With --max, exits 1 if fewer events came before the --timeout.
    """,
)
@click.argument("topic")
@click.option(
    "--from-beginning", is_flag=True, help="Start at the oldest record (default: new ones)."
)
@click.option(
    "--max",
    "limit",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after printing this many events (default: no limit).",
)
@click.option(
    "--timeout",
    "idle_s",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Stop after this many seconds without a new event (default: wait for ever).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each event's JSON on one line (default: one readable line per event).",
)
@settings_options(KAFKA_FIELDS)
def tail(
    topic: str,
    from_beginning: bool,
    limit: int | None,
    idle_s: float | None,
    as_json: bool,
    **flags: Any,
) -> None:
    settings = settings_from(flags)
    require_bootstrap(settings)
    target = topic_name(settings, topic)
    printed = asyncio.run(
        tail_topic(
            settings,
            target,
            from_beginning=from_beginning,
            limit=limit,
            idle_s=idle_s,
            as_json=as_json,
        )
    )
    if limit is not None and printed < limit:
        click.echo(f"{target}: {printed} of {limit} events before the timeout", err=True)
        raise SystemExit(1)
