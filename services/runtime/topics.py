"""Creating the topics of agensbus (the table of schemas.topics) on a cluster."""

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.topics import TOPICS
from services.runtime.settings import Settings

log = logging.getLogger("agensbus.topics")


class PartitionsDiffer(RuntimeError):
    """Topics that must have one partition count do not (a sharded learner's inputs: a
    trajectory and its reward would land on different partition numbers)."""


async def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left as
    they are (their partition counts are the operator's choice)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **settings.kafka_client_options(),
    )
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return await _create_missing(admin, settings)
            except KafkaError as error:
                # Another process may create a topic between our list and create; a broker
                # that has just started may answer metadata with no brokers yet.
                if time.monotonic() >= deadline:
                    raise
                if not isinstance(error, TopicAlreadyExistsError):
                    await asyncio.sleep(0.5)
    finally:
        await admin.close()


def replication(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of topics created on a cluster of
    ``brokers``: the settings', capped to what the cluster can hold, with a warning when the
    factor is cut."""
    factor = min(settings.kafka_replication, brokers)
    if factor < settings.kafka_replication:
        log.warning(
            "topics get replication factor %d, not %d: the cluster has %d broker(s)",
            factor,
            settings.kafka_replication,
            brokers,
        )
    return factor, min(settings.kafka_min_insync_replicas, factor)


async def _create_missing(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [spec for spec in TOPICS if settings.topic(spec.name) not in existing]
    if not missing:
        return []
    brokers = len((await admin.describe_cluster())["brokers"])
    if brokers == 0:
        raise KafkaError("the cluster lists no brokers yet")
    factor, min_isr = replication(settings, brokers)
    wanted = [
        NewTopic(
            settings.topic(spec.name),
            num_partitions=spec.partitions or settings.topic_partitions,
            replication_factor=factor,
            topic_configs={**spec.configs, "min.insync.replicas": str(min_isr)},
        )
        for spec in missing
    ]
    await admin.create_topics(wanted)
    return [t.name for t in wanted]


async def partition_counts(
    settings: Settings, topics: list[str], *, timeout_s: float = 30.0
) -> dict[str, int]:
    """How many partitions each of ``topics`` has on the cluster."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **settings.kafka_client_options(),
    )
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}
