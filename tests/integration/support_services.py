"""Services run in process on the real broker, for the integration tests of the worker,
the judge and governance: settings with topics and groups of the test's own, decisions and
raw records published, a topic read from its start until enough has arrived, a service
served in the test's event loop and stopped as on SIGTERM, the offsets a group committed,
and its /readyz (for a worker on the openai backend: once its endpoints were probed)."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from schemas.events import Decision, StepOutcome
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.sim import load_scenario

SCENARIO = load_scenario("security-advisories")
SEED = 3


def settings_for(bootstrap: str, **values: Any) -> Settings:
    """Topics and group of the test's own; HTTP on any free port."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"worker-{tag}.",
        worker_group=f"worker-{tag}",
        judge_group=f"judge-{tag}",
        http_port=0,
        seed=SEED,
        **values,
    )


#: What a producer of JSON says it sends, broken values too: a reader must not trust it.
JSON_HEADERS = [("content-type", b"application/json")]


async def produce(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        sent = [
            await producer.send(topic, value, key=key.encode(), headers=JSON_HEADERS)
            for key, value in values
        ]
        await asyncio.gather(*sent)


async def publish(settings: Settings, decisions: list[Decision]) -> None:
    await ensure_topics(settings)
    values = [(d.trajectory_id, encode(d)) for d in decisions]
    await produce(settings.kafka_bootstrap or "", settings.topic("decisions"), values)


@asynccontextmanager
async def reading(bootstrap: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A reader of a whole topic, outside any group."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_until(
    consumer: AIOKafkaConsumer, done: Callable[[list[bytes]], bool], quiet_s: float = 0.0
) -> list[bytes]:
    """Values until ``done`` holds, then whatever else arrives within ``quiet_s``."""
    values: list[bytes] = []
    while not done(values):
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            values += [r.value for r in batch]
    if quiet_s:
        for batch in (await consumer.getmany(timeout_ms=int(quiet_s * 1000))).values():
            values += [r.value for r in batch]
    return values


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[Service]:
    """The service running in this event loop; stopped as on SIGTERM on the way out."""
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        service.stop()
        await task


async def committed(settings: Settings, group: str | None = None) -> dict[int, int]:
    """The offsets committed by ``group`` (default: the settings' worker group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group or settings.worker_group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


def outcomes(values: list[bytes]) -> list[StepOutcome]:
    return [StepOutcome.model_validate_json(v) for v in values]


async def readyz(service: Service) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.http.port)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    response = await reader.read()
    writer.close()
    head, body = response.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def openai_settings(bootstrap: str, base_url: str, tmp_path: Path, **values: Any) -> Settings:
    table = tmp_path / "models.yaml"
    table.write_text(
        "default_model: small\nmodels:\n  small:\n    model: tiny-1\n"
        "    price_in_per_1k: 1.0\n    price_out_per_1k: 2.0\n"
    )
    return settings_for(
        bootstrap,
        worker_backend="openai",
        openai_base_url=base_url,
        openai_models_file=table,
        **values,
    )


async def backend_check(service: Any) -> dict[str, Any]:
    """The backend's /readyz entry once the first probe has run and the consumer runs
    (stopping a service still starting up would leave its consumer unclosed)."""
    for _ in range(400):
        await asyncio.sleep(0.05)
        with contextlib.suppress(RuntimeError):  # raised until the endpoint serves
            _, body = await readyz(service)
            check: dict[str, Any] = body["checks"]["backend"]
            probed = not check["detail"].startswith("endpoints not probed yet")
            if probed and body["checks"]["started"]["ok"]:
                return check
    raise AssertionError("the backend was never probed")
