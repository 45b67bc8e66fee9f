"""Kafka clients built from settings: FastStream brokers for services, plain aiokafka
clients for tools (admin, tail, snapshot replay). Security options reach every client."""

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from services.runtime.settings import Settings


class KafkaNotConfigured(RuntimeError):
    """No bootstrap address: the caller must start an embedded broker or pass one."""


def bootstrap_of(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise KafkaNotConfigured(
            "no Kafka bootstrap: set AGENSBUS_KAFKA_BOOTSTRAP or --kafka-bootstrap "
            "(agensbus up and agensbus demo start an embedded broker when it is unset)"
        )
    return settings.kafka_bootstrap


def faststream_security(settings: Settings) -> BaseSecurity | None:
    options = settings.kafka_client_options()
    protocol = settings.kafka_security_protocol
    ssl_context = options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.kafka_sasl_mechanism
    ]
    return kind(
        username=options["sasl_plain_username"] or "",
        password=options["sasl_plain_password"] or "",
        ssl_context=ssl_context,
        use_ssl=protocol == "SASL_SSL",
    )


async def undecoded(message: StreamMessage[Any]) -> Any:
    """The body as received: handlers decode it themselves (services.runtime.codec), so a
    body its content-type header misdescribes reaches them and is dead-lettered."""
    return message.body


def make_broker(settings: Settings, client_id: str, **extra: Any) -> KafkaBroker:
    """A FastStream broker for one service. A publish is acknowledged once every in-sync
    replica has it, so a leader that dies right after cannot take it along; consumers
    deduplicate what a retry repeats (idempotent producers are a setting: see
    ``Settings.kafka_idempotence`` for why they are off by default)."""
    return KafkaBroker(
        # One address per entry: FastStream would hand a comma-separated string to aiokafka
        # as one host name.
        [address.strip() for address in bootstrap_of(settings).split(",")],
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        security=faststream_security(settings),
        logger=logging.getLogger(f"agensbus.{client_id}.kafka"),
        # "Received"/"Processed" per message is debugging detail, not an operator's log.
        log_level=logging.DEBUG,
        graceful_timeout=settings.graceful_timeout_s,
        decoder=undecoded,
        **extra,
    )


def aiokafka_producer(broker: KafkaBroker) -> AIOKafkaProducer:
    """The aiokafka producer of a connected ``broker``: a hot path hands records to it
    directly, past FastStream's per-publish machinery, and keeps the broker's settings
    (acks, idempotence, security) and lifecycle. It reaches into FastStream's producer
    state, which has no public accessor; a FastStream that moved it fails here, loudly."""
    producer = getattr(getattr(broker.config.producer, "_producer", None), "producer", None)
    if not isinstance(producer, AIOKafkaProducer):
        raise RuntimeError("the FastStream broker is not connected, or hides its producer")
    return producer


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producer, consumer and admin clients."""
    return {"bootstrap_servers": bootstrap_of(settings), **settings.kafka_client_options()}
