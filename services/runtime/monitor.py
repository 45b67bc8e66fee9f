"""What every service reports about its Kafka side: consumer lag per partition, and whether
the broker answers and the topics exist (two of the /readyz checks).

A :class:`KafkaMonitor` probes in the background every ``interval_s`` while the service
runs. HTTP handlers and Prometheus scrapes read the last results and never wait on Kafka.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Gauge

#: How often lag and the broker are probed; a scrape every 15 s sees values this fresh.
INTERVAL_S = 5.0
#: How long one probe (a ping, a metadata or offsets request) may take.
PROBE_TIMEOUT_S = 5.0

Result = tuple[bool, str]
#: The aiokafka consumers of the service's subscribers that are running now.
Consumers = Callable[[], Iterable[AIOKafkaConsumer]]


class ConsumerLag:
    """``agensbus_consumer_lag{service,topic,partition}``: records on each assigned
    partition that the consumer has not read yet (end offset minus position). Partitions
    no longer assigned lose their series, so a rebalance leaves no stale lag behind."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "agensbus_consumer_lag",
            "Records on a partition this process consumes that it has not read yet "
            "(end offset minus the consumer's position), per assigned partition.",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self._service = service
        self._series: set[tuple[str, str]] = set()

    async def measure(self, consumers: Iterable[AIOKafkaConsumer]) -> None:
        lags: dict[tuple[str, str], int] = {}
        for consumer in consumers:
            lags |= await lag_of(consumer)
        # No await from here on: a scrape sees the old set of series or the new one.
        for gone in self._series - lags.keys():
            with contextlib.suppress(KeyError):
                self.gauge.remove(self._service, *gone)
        for labels, lag in lags.items():
            self.gauge.labels(self._service, *labels).set(lag)
        self._series = set(lags)


async def lag_of(consumer: AIOKafkaConsumer) -> dict[tuple[str, str], int]:
    """(topic, partition) -> lag of the partitions assigned to ``consumer`` whose position
    is known; empty when the broker does not answer in time."""
    assigned: Collection[TopicPartition] = consumer.assignment()
    if not assigned:
        return {}
    try:
        # The end offsets, not the fetcher's highwater: a paused partition (a busy worker)
        # is not fetched, and its highwater would stop growing with the backlog.
        ends = await asyncio.wait_for(consumer.end_offsets(list(assigned)), PROBE_TIMEOUT_S)
    except (KafkaError, TimeoutError):
        return {}
    lags = {}
    for tp, end in ends.items():
        try:
            position = await asyncio.wait_for(consumer.position(tp), PROBE_TIMEOUT_S)
        except (IllegalStateError, KafkaError, TimeoutError):
            continue  # revoked meanwhile, or not positioned yet: no number beats a wrong one
        lags[(tp.topic, str(tp.partition))] = max(0, end - position)
    return lags


class KafkaMonitor:
    """Probes the broker and the topics, and measures consumer lag, every ``interval_s``.
    ``kafka_check`` and ``topics_check`` are readiness checks over the last probe."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        broker: KafkaBroker,
        topics: Collection[str],
        consumers: Consumers,
        log: logging.Logger,
    ) -> None:
        self.interval_s = INTERVAL_S
        self.lag = ConsumerLag(service, registry)
        self._broker = broker
        self._topics = topics
        self._consumers = consumers
        self._log = log
        self._kafka: Result = (False, "not probed yet")
        self._present: Result = (False, "not probed yet")
        self._task: asyncio.Task[None] | None = None

    def kafka_check(self) -> Result:
        return self._kafka

    def topics_check(self) -> Result:
        return self._present

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # A cancelled offsets request of aiokafka's can wait on a busy broker's retries for
        # long; shutdown goes on without it (closing the consumers ends the request).
        _, pending = await asyncio.wait({task}, timeout=PROBE_TIMEOUT_S)
        if pending:
            self._log.warning("the Kafka probe did not stop within %.0f s", PROBE_TIMEOUT_S)
            task.add_done_callback(_retrieve)

    async def probe(self) -> None:
        """One round: the broker, the topics, the lag."""
        if not await self._broker.ping(timeout=PROBE_TIMEOUT_S):
            self._kafka = (False, f"no answer from the broker within {PROBE_TIMEOUT_S:.0f} s")
            self._present = (False, "unknown: the broker does not answer")
            return
        self._kafka = (True, "the broker answers")
        self._present = await self._probe_topics()
        await self.lag.measure(self._consumers())

    async def _probe_topics(self) -> Result:
        try:
            admin = self._broker.config.admin_client
            existing = set(await asyncio.wait_for(admin.list_topics(), PROBE_TIMEOUT_S))
        except (KafkaError, TimeoutError, IncorrectState) as error:
            return False, f"cannot list topics: {error!r}"
        missing = sorted(set(self._topics) - existing)
        if missing:
            return False, f"missing: {', '.join(missing)}"
        return True, f"all {len(self._topics)} present"

    async def _run(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # a bug here must not end the probing, nor the service
                self._log.exception("probing Kafka failed")
            await asyncio.sleep(self.interval_s)


def _retrieve(task: "asyncio.Task[None]") -> None:
    """Consume a late probe's ending, so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
