"""What every service reports about its Kafka side, on the real broker: consumer lag per
partition as records wait and are read, and the kafka and topics readiness checks."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import generate_latest

from services.runtime.kafka import aiokafka_options
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from tests.integration.support_broker import run, until
from tests.integration.support_services import readyz

TIMEOUT_S = 60.0


def probe_settings(bootstrap: str) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"monitor-{uuid.uuid4().hex[:8]}.",
        http_port=0,
        graceful_timeout_s=2.0,
        log_level="WARNING",
    )


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[None]:
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: task.done() or serving_http(service), "HTTP")
        yield
    finally:
        service.stop()
        await task


def serving_http(service: Service) -> bool:
    try:
        return service.http.port > 0
    except RuntimeError:  # not started yet
        return False


def lag(service: Service) -> dict[tuple[str, str], float]:
    """(topic, partition) -> the lag the service exports now."""
    family = service.monitor.lag.gauge.collect()[0]
    return {(s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}


def test_lag_counts_the_records_a_busy_consumer_has_not_read(kafka_bootstrap: str) -> None:
    settings = probe_settings(kafka_bootstrap)
    topic = settings.topic("tasks")
    service = Service("probe", settings)
    service.monitor.interval_s = 0.1
    release = asyncio.Event()
    handled: list[int] = []

    @service.broker.subscriber(topic, group_id=f"{topic}.group", auto_offset_reset="earliest")
    async def handle(msg: KafkaMessage) -> None:
        await release.wait()  # the first record holds the consumer: the rest wait in Kafka
        record = msg.raw_message
        assert not isinstance(record, tuple)
        handled.append(record.offset)

    async def scenario() -> None:
        await ensure_topics(settings)
        async with AIOKafkaProducer(**aiokafka_options(settings)) as producer:
            for n in range(6):
                await producer.send_and_wait(topic, b"x%d" % n, partition=0)
        async with serving(service):
            # Read the first record, five behind it; the other partitions are empty.
            await until(lambda: lag(service).get((topic, "0")) == 5, "a lag of 5")
            assert lag(service) == {(topic, "0"): 5, (topic, "1"): 0, (topic, "2"): 0}
            release.set()
            await until(lambda: len(handled) == 6, "every record handled")
            await until(lambda: lag(service).get((topic, "0")) == 0, "no lag")
            text = generate_latest(service.registry).decode()
            assert (
                f'agensbus_consumer_lag{{partition="0",service="probe",topic="{topic}"}} 0.0'
                in text
            )

    run(scenario(), TIMEOUT_S)


def test_readiness_needs_the_broker_and_every_topic(kafka_bootstrap: str) -> None:
    settings = probe_settings(kafka_bootstrap)
    service = Service("probe", settings)
    service.monitor.interval_s = 0.1

    @service.broker.subscriber(settings.topic("tasks"), group_id=f"{settings.topic_prefix}g")
    async def handle(msg: KafkaMessage) -> None:
        return None

    async def scenario() -> None:
        async with serving(service):
            await until(lambda: service.monitor.topics_check()[0], "the topics check")
            status, body = await readyz(service)
            assert status == 200, body
            checks = body["checks"]
            assert checks["kafka"] == {"ok": True, "detail": "the broker answers"}
            assert checks["topics"] == {"ok": True, "detail": "all 7 present"}

            admin = AIOKafkaAdminClient(**aiokafka_options(settings))
            await admin.start()
            try:
                await admin.delete_topics([settings.topic("dlq")])
            finally:
                await admin.close()
            await until(lambda: not service.monitor.topics_check()[0], "a missing topic")
            status, body = await readyz(service)
            assert status == 503
            assert body["checks"]["topics"] == {
                "ok": False,
                "detail": f"missing: {settings.topic('dlq')}",
            }

    run(scenario(), TIMEOUT_S)
