"""A service's shutdown does not wait on a Kafka probe that ignores its cancellation (as
aiokafka's offsets request can while a busy broker makes it retry)."""

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.runtime import monitor
from services.runtime.monitor import KafkaMonitor


class StubbornConsumer:
    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue  # keeps retrying, as a request stuck on broker retries does
        return dict.fromkeys(partitions, 0)


class AnsweringBroker:
    def __init__(self) -> None:
        admin = SimpleNamespace(list_topics=self._topics)
        self.config = SimpleNamespace(admin_client=admin)

    async def ping(self, timeout: float) -> bool:
        return True

    async def _topics(self) -> list[str]:
        return ["t"]


def test_stop_returns_while_a_probe_ignores_its_cancellation(monkeypatch: Any) -> None:
    # A short bound for the test; the mechanism is what is tested, not the number.
    monkeypatch.setattr(monitor, "PROBE_TIMEOUT_S", 0.2)
    consumer = StubbornConsumer()

    async def scenario() -> None:
        probe = KafkaMonitor(
            "probe",
            CollectorRegistry(),
            AnsweringBroker(),  # type: ignore[arg-type]
            ["t"],
            lambda: [consumer],
            logging.getLogger("test"),
        )
        probe.start()
        await asyncio.wait_for(consumer.asked.wait(), 10)
        stopping = asyncio.ensure_future(probe.stop())
        stopped, _ = await asyncio.wait({stopping}, timeout=10)
        consumer.release.set()  # the late probe ends by itself, its ending retrieved
        await stopping
        assert stopped, "stop() waited on the probe"
        assert probe.kafka_check() == (True, "the broker answers")

    asyncio.run(scenario())
