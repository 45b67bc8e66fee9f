"""Durability on a replicated cluster: three Apache Kafka nodes (replication 3, min ISR 2,
the defaults of created topics), the services as child processes, and the leader of the
decisions partition, then of the outcomes partition, killed with SIGKILL while tasks run.
Every task must complete once and be backed up once: an acknowledged event survives its
leader, and a retried one is not stored twice."""

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from services.demo.replay import Observed
from services.runtime.broker import EmbeddedKafka
from tests.e2e.support import (
    assert_backed_up_exactly_once,
    deployment,
    replay_with,
    run,
    small_scenario,
    until,
)

NODES = 3
DESCRIBE_S = 60.0
#: The topics whose leaders die, in turn.
VICTIMS = ("decisions", "outcomes")


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedKafka]:
    with EmbeddedKafka(brokers=NODES) as kafka:
        yield kafka


async def describe(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    """The topics' metadata; a node just killed or restarted is asked again (until
    ``DESCRIBE_S``): the cluster's own clients ride that out, the test's must too."""
    deadline = asyncio.get_running_loop().time() + DESCRIBE_S
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            described: list[dict[str, Any]] = await admin.describe_topics(topics)
            return described
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


async def min_isr(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    (resource,) = response.to_object()["resources"]
    configs = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    return str(configs["min.insync.replicas"])


async def leader_of(bootstrap: str, topic: str) -> int:
    """The node leading the topic's first partition."""
    (described,) = await describe(bootstrap, [topic])
    (first,) = [p for p in described["partitions"] if p["partition"] == 0]
    leader: int = first["leader"]
    return leader


async def fully_replicated(bootstrap: str, topics: list[str]) -> None:
    """Wait until every partition of ``topics`` has all its replicas in sync again."""
    while True:
        described = await describe(bootstrap, topics)
        partitions = [p for topic in described for p in topic["partitions"]]
        if all(len(p["isr"]) == NODES for p in partitions):
            return
        await asyncio.sleep(0.2)


def completed_at_least(observed: Observed, count: int) -> Callable[[], bool]:
    return lambda: len(observed.completed) >= count


def test_every_task_completes_once_while_the_leaders_of_decisions_and_outcomes_die(
    cluster: EmbeddedKafka, tmp_path: Path
) -> None:
    scenario = small_scenario(tmp_path, per_class=2)
    bootstrap = cluster.bootstrap
    # Steps sleep a twentieth of their simulated latency, so work is in flight at each kill.
    with deployment(bootstrap, scenario, tmp_path / "logs", sim_time_scale=0.05) as deployed:
        topics = [deployed.bus.topic(name) for name in ("tasks", *VICTIMS, "trajectories")]
        for topic in run(describe(bootstrap, topics)):
            assert {len(p["replicas"]) for p in topic["partitions"]} == {NODES}
        assert {run(min_isr(bootstrap, topic)) for topic in topics} == {"2"}
        replay = deployed.replay(concurrency=8)
        killed: list[tuple[str, int, int]] = []

        async def kill_the_leaders(observed: Observed) -> None:
            for turn, name in enumerate(VICTIMS):
                await until(completed_at_least(observed, 6 + 16 * turn), timeout_s=120.0)
                leader = await leader_of(bootstrap, deployed.bus.topic(name))
                await asyncio.to_thread(cluster.kill_node, leader)
                killed.append((name, leader, len(observed.completed)))
                # Work goes on with a node down before it comes back and catches up.
                await until(completed_at_least(observed, 12 + 16 * turn), timeout_s=120.0)
                await asyncio.to_thread(cluster.start_node, leader)
                await fully_replicated(bootstrap, topics)

        observed = run(replay_with(replay, range(1, 4), kill_the_leaders), timeout_s=400.0)

        assert [name for name, _, _ in killed] == list(VICTIMS)
        assert all(completed < 48 for _, _, completed in killed), killed
        assert len(observed.learned) == 48
        assert_backed_up_exactly_once(deployed.bus, 48)
