"""End-to-end tests: the services run as real child processes on a real Kafka broker (the
``kafka_bootstrap`` fixture of tests/conftest.py: the cluster named by
AGENSBUS_KAFKA_BOOTSTRAP, or else an embedded broker started once per session).

The ``bus`` and ``agensbus`` fixtures serve the CLI tests: a topic prefix and consumer groups
of the test's own, and the ``agensbus`` command run as a child process.
"""

import asyncio
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.runtime.kafka import aiokafka_options
from services.runtime.processes import agensbus_command
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics

HERE = Path(__file__).parent
#: Bounds one CLI call: a hung command fails its test instead of hanging the suite.
CLI_TIMEOUT_S = 120.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything here needs a broker, so `-m "not integration"` leaves it out.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Bus:
    """The broker and this test's topics (created), with the environment that points the
    CLI and the services at them."""

    bootstrap: str
    prefix: str

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix)

    @property
    def env(self) -> dict[str, str]:
        group = self.prefix.rstrip(".")
        return {
            "AGENSBUS_KAFKA_BOOTSTRAP": self.bootstrap,
            "AGENSBUS_TOPIC_PREFIX": self.prefix,
            # Groups of its own, so that no other test's services share this one's work.
            **{
                f"AGENSBUS_{role.upper()}_GROUP": f"{group}.{role}"
                for role in ("router", "worker", "judge", "learner")
            },
        }

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def records(self, name: str) -> list["ConsumerRecord[bytes, bytes]"]:
        """Everything on a topic of this bus right now, oldest first per partition."""
        return asyncio.run(asyncio.wait_for(_read_all(self.settings, self.topic(name)), 60))


async def _read_all(settings: Settings, topic: str) -> list["ConsumerRecord[bytes, bytes]"]:
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []

    async def poll() -> None:
        for batch in (await consumer.getmany(timeout_ms=100)).values():
            records.extend(batch)

    try:
        while not consumer.assignment():
            await poll()
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                await poll()
        return records
    finally:
        await consumer.stop()


@pytest.fixture
def bus(kafka_bootstrap: str) -> Bus:
    created = Bus(kafka_bootstrap, f"e2e-{uuid.uuid4().hex[:8]}.")
    asyncio.run(asyncio.wait_for(ensure_topics(created.settings), 60))
    return created


Agensbus = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def agensbus(bus: Bus) -> Agensbus:
    """Run ``agensbus ARGS`` against the bus; returns the finished process (text output)."""

    def run(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            agensbus_command(args),
            input=stdin,
            env={**os.environ, **bus.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    return run
