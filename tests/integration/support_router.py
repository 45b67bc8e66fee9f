"""The router run in process on the real broker for the integration tests: a fake worker that
executes every invoke decision in the simulated world, the router's topics read back, and
the scenario, tasks and settings those tests share."""

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.events import (
    ActionKind,
    DeadLetter,
    Decision,
    Event,
    TaskSubmitted,
    TrajectoryCompleted,
)
from services.router.app import build
from services.runtime.codec import encode
from services.runtime.kafka import aiokafka_options
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.sim import load_scenario
from tests.unit.support_router import execute

SCENARIO = load_scenario("security-advisories")


def task(task_id: str, class_name: str = "C1") -> TaskSubmitted:
    task_class = SCENARIO.classes[class_name]
    return TaskSubmitted(
        task_id=task_id,
        goal=task_class.description,
        features=task_class.features,
        task_class=task_class.name,
    )


@dataclass
class Loop:
    """A router in process, a fake worker, and what came out on the router's topics."""

    settings: Settings
    duplicate_outcomes: bool = False
    decisions: list[Decision] = field(default_factory=list)
    completed: list[TrajectoryCompleted] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    async def publish(self, event_or_bytes: Event | bytes, topic: str, key: str) -> None:
        value = event_or_bytes if isinstance(event_or_bytes, bytes) else encode(event_or_bytes)
        await self.producer.send_and_wait(self.settings.topic(topic), value, key=key.encode())

    async def until(self, what: str, holds: Callable[[], bool], timeout_s: float = 45.0) -> None:
        async def poll() -> None:
            while not holds():
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(poll(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def metric(self, name: str, **labels: str) -> float:
        return self.service.registry.get_sample_value(name, labels) or 0.0

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        def get() -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(f"{self.service.http.url}/readyz", timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        return await asyncio.to_thread(get)

    async def ready(self) -> dict[str, Any]:
        """The /readyz body once the router says it is ready."""
        body: dict[str, Any] = {}

        async def poll() -> None:
            nonlocal body
            status = 0
            while status != 200:
                await asyncio.sleep(0.1)
                with contextlib.suppress(RuntimeError):  # HTTP endpoint not started yet
                    status, body = await self.readyz()

        await asyncio.wait_for(poll(), 30)
        return body

    async def _work(self) -> None:
        """The fake worker: every invoke decision runs in the world (seed 0, as the
        router's settings) and its outcome goes to the outcomes topic, twice when asked."""
        readers: dict[str, Callable[[bytes], None]] = {
            self.settings.topic("decisions"): self._on_decision,
            self.settings.topic("trajectories"): lambda raw: self.completed.append(
                TrajectoryCompleted.model_validate_json(raw)
            ),
            self.settings.topic("dlq"): lambda raw: self.dead.append(
                DeadLetter.model_validate_json(raw)
            ),
        }
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    readers[record.topic](record.value)
            for outcome in self._outbox:
                copies = 2 if self.duplicate_outcomes else 1
                for _ in range(copies):
                    await self.publish(outcome, "outcomes", outcome.trajectory_id)
            self._outbox.clear()

    def _on_decision(self, raw: bytes) -> None:
        decision = Decision.model_validate_json(raw)
        self.decisions.append(decision)
        if decision.action_kind is ActionKind.INVOKE:
            self._outbox.append(execute(decision))

    @contextlib.asynccontextmanager
    async def running(
        self, preload: Sequence[tuple[Event, str, str]] = ()
    ) -> AsyncIterator["Loop"]:
        """Start everything; ``preload`` (event, topic, key) is published before the router."""
        await ensure_topics(self.settings)
        self._outbox: list[Any] = []
        options = aiokafka_options(self.settings)
        self.producer = AIOKafkaProducer(**options)
        self.consumer = AIOKafkaConsumer(
            *(self.settings.topic(t) for t in ("decisions", "trajectories", "dlq")),
            auto_offset_reset="earliest",
            **options,
        )
        await self.producer.start()
        await self.consumer.start()
        for event, topic, key in preload:
            await self.publish(event, topic, key)
        self.service: Service = build(self.settings)
        router = asyncio.create_task(self.service.run())
        worker = asyncio.create_task(self._work())
        try:
            yield self
        finally:
            self.service.stop()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await asyncio.wait_for(router, 20)
            await self.consumer.stop()
            await self.producer.stop()


def settings_for(bootstrap: str) -> Settings:
    run_id = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"router-{run_id}.",
        router_group=f"router-{run_id}",
        topic_partitions=2,
        http_port=0,
        graceful_timeout_s=5.0,
        # the router's mechanics, checked against paper-mode decisions
        policy_arm="paper",
    )
