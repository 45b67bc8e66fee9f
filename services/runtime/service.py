"""The shell every service runs in: Kafka broker, topics, HTTP endpoint, dead letters,
logging and graceful shutdown. A service module supplies its subscribers and readiness."""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from importlib.metadata import version
from typing import Any

from aiokafka.structs import ConsumerRecord, RecordMetadata
from faststream import FastStream
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Counter, Info, disable_created_metrics

from schemas.events import Event
from schemas.headers import as_kafka, event_headers
from schemas.topics import TOPICS
from services.runtime.codec import DECODE_ERRORS, Rejected, dead_letter, encode
from services.runtime.http import HttpEndpoint
from services.runtime.kafka import aiokafka_producer, make_broker
from services.runtime.logs import configure_logging
from services.runtime.monitor import KafkaMonitor
from services.runtime.poison import POISON_REASONS, dead_letter_id, poison_reason
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.runtime.tracing import start_tracing

Check = Callable[[], tuple[bool, str]]

#: Dead-letter ids remembered to drop a second letter for a redelivered record.
_LETTERED_WINDOW = 100_000

# ``*_created`` series double every counter's output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Service:
    """One agensbus process. Build it, register subscribers on ``broker``, then ``run()``."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        dead_letter_reasons: Collection[str] = (),
        **broker_options: Any,
    ) -> None:
        """``dead_letter_reasons``: the error types this service dead-letters beyond the
        decoding ones every reader has; their series start at 0."""
        self.name = name
        self.settings = settings
        self.log = logging.getLogger(f"agensbus.{name}")
        self.registry = CollectorRegistry()
        self.tracing = start_tracing(settings, name)
        self.broker: KafkaBroker = make_broker(
            settings, client_id=f"agensbus-{name}", **broker_options
        )
        # One family for every service, told apart by a `service` label, so a rule or a
        # panel reads one name.
        self.dead_letters_total = Counter(
            "agensbus_dead_letters_total",
            "Inputs sent to the dead-letter topic, by service and reason.",
            ["service", "reason"],
            registry=self.registry,
        )
        for reason in dict.fromkeys([*DECODE_ERRORS, *POISON_REASONS, *dead_letter_reasons]):
            self.dead_letters_total.labels(service=name, reason=reason)
        self.poison_records_total = Counter(
            "agensbus_poison_records_total",
            "Records whose processing fails the same way on every retry (dead-lettered, "
            "offset moved on), by service and reason.",
            ["service", "reason"],
            registry=self.registry,
        )
        for reason in POISON_REASONS:
            self.poison_records_total.labels(service=name, reason=reason)
        self._lettered: OrderedDict[str, None] = OrderedDict()
        Info("agensbus_build", "Version of the running agensbus.", registry=self.registry).info(
            {"version": version("agensbus"), "service": name}
        )
        self._checks: dict[str, Check] = {}
        self.monitor = KafkaMonitor(
            name,
            self.registry,
            self.broker,
            [settings.topic(spec.name) for spec in TOPICS],
            self._consumers,
            self.log,
        )
        self.add_check("kafka", self.monitor.kafka_check)
        self.add_check("topics", self.monitor.topics_check)
        self._started = False
        self._app: FastStream | None = None
        self._startup: list[Callable[[], Awaitable[None]]] = []
        self._shutdown: list[Callable[[], Awaitable[None]]] = []
        self.http = HttpEndpoint(
            self.registry, self._ready, host=settings.http_host, port=settings.http_port
        )

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    async def publish(
        self, event: Event, topic: str, key: bytes | None, *, encoded: bytes | None = None
    ) -> None:
        """Publish ``event`` to the full topic name ``topic`` and wait for its delivery.
        ``encoded``: the event's bytes, when the caller has them already."""
        await self.broker.publish(
            encode(event) if encoded is None else encoded,
            topic,
            key=key,
            headers=self._headers(event),
            correlation_id=event.event_id,
        )

    async def send(
        self, event: Event, topic: str, key: bytes | None
    ) -> "asyncio.Future[RecordMetadata]":
        """Publish ``event`` without waiting: the future tells its delivery. It goes to
        the broker's aiokafka producer itself, with the headers ``publish`` gives it."""
        headers = self._headers(event) | {"correlation_id": event.event_id}
        sent: asyncio.Future[RecordMetadata] = await aiokafka_producer(self.broker).send(
            topic, encode(event), key=key, headers=as_kafka(headers)
        )
        return sent

    def _headers(self, event: Event) -> dict[str, str]:
        """The envelope of ``event`` and the current trace context."""
        return event_headers(event, self.name) | dict(self.tracing.headers())

    def add_check(self, name: str, check: Check) -> None:
        """A readiness condition shown on /readyz; the service is ready when all hold."""
        self._checks[name] = check

    def _consumers(self) -> list[Any]:
        """The aiokafka consumers of the subscribers running now."""
        running = (getattr(s, "consumer", None) for s in self.broker.subscribers)
        return [consumer for consumer in running if consumer is not None]

    def on_startup(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Runs after topics exist and before subscribers start (e.g. restore state)."""
        self._startup.append(hook)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Runs on SIGTERM before the broker stops: subscribers and their consumers are still
        alive, so a hook can pause fetching, drain in-flight work, commit and flush."""
        self._shutdown.append(hook)

    def _ready(self) -> tuple[bool, dict[str, object]]:
        results = {
            "started": (self._started, "subscribers running" if self._started else "starting")
        }
        results.update({name: check() for name, check in self._checks.items()})
        ready = all(ok for ok, _ in results.values())
        return ready, {"checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in results.items()}}

    async def dead_letter(self, record: ConsumerRecord, rejected: Rejected) -> None:
        """Keep the original bytes with the reason; the consumer goes on. The letter's id
        comes from the record's coordinates: a record redelivered to this process is
        dead-lettered once, and a reader drops a repeat from another process by id."""
        letter_id = dead_letter_id(self.name, record.topic, record.partition, record.offset)
        if letter_id in self._lettered:
            return
        letter = dead_letter(
            event_id=letter_id,
            service=self.name,
            tenant=self.settings.tenant,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            rejected=rejected,
        )
        await self.publish(letter, self.topic("dlq"), record.key)
        self._lettered[letter_id] = None
        if len(self._lettered) > _LETTERED_WINDOW:
            self._lettered.popitem(last=False)
        self.dead_letters_total.labels(service=self.name, reason=rejected.error_type).inc()
        self.log.warning(
            "dead letter",
            extra={"topic": record.topic, "offset": record.offset, "reason": rejected.reason},
        )

    async def poisoned(self, record: ConsumerRecord, error: BaseException) -> bool:
        """Dead-letter ``record`` when ``error`` would recur on every retry of it, and say
        so; False leaves the error to the caller's retry (a transient failure)."""
        rejected = poison_reason(error)
        if rejected is None:
            return False
        self.log.error(
            "poison record",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": rejected.reason,
            },
        )
        await self.dead_letter(record, rejected)
        self.poison_records_total.labels(service=self.name, reason=rejected.error_type).inc()
        return True

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop fetching, let in-flight work finish
        (bounded by graceful_timeout_s), flush and exit."""
        configure_logging(self.name, self.settings.log_level)
        # Serving first: /healthz answers, and /readyz says what is missing, while Kafka
        # is still being reached.
        await self.http.start()
        self.log.info("serving", extra={"metrics": f"{self.http.url}/metrics"})

        async def started() -> None:
            self.monitor.start()
            self._started = True

        async def stopping() -> None:
            self._started = False
            await self.monitor.stop()
            for hook in self._shutdown:
                await hook()

        try:
            created = await ensure_topics(self.settings)
            if created:
                self.log.info("created topics", extra={"topics": created})
            self._app = FastStream(
                self.broker,
                logger=self.log,
                on_startup=list(self._startup),
                after_startup=[started],
                on_shutdown=[stopping],
            )
            await self._app.run(log_level=logging.getLevelName(self.settings.log_level.upper()))
        finally:
            await self.monitor.stop()
            await self.http.stop()
            self.tracing.shutdown()

    def stop(self) -> None:
        """Ask a running service to shut down as it would on SIGTERM (for in-process use)."""
        if self._app is not None:
            self._app.exit()


def run_service(service: Service) -> None:
    asyncio.run(service.run())
