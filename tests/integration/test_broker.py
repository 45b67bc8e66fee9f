"""The broker the services rely on, exercised with aiokafka: topics, keyed ordering, consumer
groups with manual commits, compaction settings and durability across a broker restart."""

import json
import re
import socket
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.runtime.broker import (
    HOST,
    KAFKA_VERSION,
    STATE_FILE,
    BrokerError,
    EmbeddedKafka,
    broker_from_env,
    find_java,
    kafka_home,
)
from services.runtime.local_broker import settings_for
from services.runtime.settings import Settings
from tests.integration.support_broker import (
    admin_client,
    consume,
    create_topic,
    group_consumer,
    produce,
    run,
    unique,
)

POM = Path(__file__).parents[2] / "infra" / "kafka" / "pom.xml"


def test_kafka_version_matches_the_fetched_jars() -> None:
    declared = re.search(r"<kafka\.version>(.+?)</kafka\.version>", POM.read_text())
    assert declared is not None
    assert declared[1] == KAFKA_VERSION


def test_broker_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENSBUS_KAFKA_BOOTSTRAP", " kafka-1:9092,kafka-2:9092 ")
    assert broker_from_env() == "kafka-1:9092,kafka-2:9092"
    monkeypatch.setenv("AGENSBUS_KAFKA_BOOTSTRAP", "")
    assert broker_from_env() is None
    monkeypatch.delenv("AGENSBUS_KAFKA_BOOTSTRAP")
    assert broker_from_env() is None


def test_missing_jvm_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="no JVM found") as raised:
        find_java()
    assert "AGENSBUS_KAFKA_BOOTSTRAP" in str(raised.value)
    assert "fallback broker" in str(raised.value)


def test_missing_jars_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENSBUS_KAFKA_HOME", str(tmp_path))
    with pytest.raises(BrokerError, match=r"Kafka jars missing .*run infra/kafka/fetch\.sh"):
        kafka_home()


def test_a_broker_that_cannot_start_shows_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    broker = EmbeddedKafka(properties={"num.partitions": "several"})
    with pytest.raises(BrokerError, match="formatting Kafka storage failed") as raised:
        broker.start()
    # The reason is Kafka's own words, quoted from the log...
    assert "num.partitions" in str(raised.value)
    # ...and the failed start cleaned up after itself.
    assert not broker.running
    assert list(tmp_path.iterdir()) == []


def test_keyed_messages_keep_their_order_per_partition(kafka_bootstrap: str) -> None:
    topic, group = unique("keyed"), unique("group")
    items = [(f"key-{i % 7}".encode(), str(i).encode()) for i in range(100)]

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, partitions=3)
        sent = await produce(kafka_bootstrap, topic, items)
        async with group_consumer(kafka_bootstrap, topic, group) as consumer:
            records = await consume(consumer, 100)
            await consumer.commit()
            committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}

        assert sorted(int(r.value) for r in records) == list(range(100))
        # Each record arrives where the producer was told it was written...
        written = {int(v): (m.partition, m.offset) for (_, v), m in zip(items, sent, strict=True)}
        assert {int(r.value): (r.partition, r.offset) for r in records} == written
        # ...every key lives in one partition, and each partition keeps the send order.
        partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
        per_partition: dict[int, list[int]] = defaultdict(list)
        for record in records:
            partitions_of_key[record.key].add(record.partition)
            per_partition[record.partition].append(int(record.value))
        assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
        assert len(per_partition) > 1, "seven keys over three partitions should spread"
        for values in per_partition.values():
            assert values == sorted(values)
        # The manual commit covers everything consumed.
        assert committed == {p: len(values) for p, values in per_partition.items()} | {
            p: 0 for p in range(3) if p not in per_partition
        }

    run(scenario())


def test_a_group_resumes_from_its_committed_offset(kafka_bootstrap: str) -> None:
    topic, group = unique("resume"), unique("group")

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, partitions=1)
        await produce(kafka_bootstrap, topic, [(b"k", str(i).encode()) for i in range(10)])
        partition = TopicPartition(topic, 0)
        async with group_consumer(kafka_bootstrap, topic, group) as first:
            assert len(await consume(first, 10)) == 10
            # Commit short of the end, as a consumer that crashed mid-batch would have.
            await first.commit({partition: 6})
        async with group_consumer(kafka_bootstrap, topic, group) as second:
            resumed = await consume(second, 4)
        assert [(r.offset, int(r.value)) for r in resumed] == [(i, i) for i in range(6, 10)]

    run(scenario())


def test_compacted_topic_config_reads_back(kafka_bootstrap: str) -> None:
    topic = unique("policy")

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, 1, {"cleanup.policy": "compact"})
        async with admin_client(kafka_bootstrap) as admin:
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
        (resource,) = response.to_object()["resources"]
        assert resource["error_code"] == 0
        configs = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        assert configs["cleanup.policy"] == "compact"

    run(scenario())


@pytest.mark.skipif(
    broker_from_env() is not None,
    reason="AGENSBUS_KAFKA_BOOTSTRAP names an external cluster; this suite restarts only its own",
)
def test_restart_keeps_topics_data_and_committed_offsets() -> None:
    topic, group = unique("durable"), unique("group")
    first_half = [(f"k{i % 5}".encode(), str(i).encode()) for i in range(50)]
    second_half = [(f"k{i % 5}".encode(), str(i).encode()) for i in range(50, 100)]

    async def write_and_commit(bootstrap: str) -> None:
        await create_topic(bootstrap, topic, partitions=2)
        await produce(bootstrap, topic, first_half)
        async with group_consumer(bootstrap, topic, group) as consumer:
            await consume(consumer, 50)
            await consumer.commit()

    async def all_values(bootstrap: str, count: int) -> list[int]:
        async with group_consumer(bootstrap, topic, unique("reader")) as reader:
            return sorted(int(r.value) for r in await consume(reader, count))

    async def after_graceful_restart(bootstrap: str) -> None:
        async with admin_client(bootstrap) as admin:
            (described,) = await admin.describe_topics([topic])
        assert len(described["partitions"]) == 2
        assert await all_values(bootstrap, 50) == list(range(50))
        await produce(bootstrap, topic, second_half)
        # The group's commit survived too: it resumes with the new records only.
        async with group_consumer(bootstrap, topic, group) as consumer:
            resumed = await consume(consumer, 50)
        assert sorted(int(r.value) for r in resumed) == list(range(50, 100))

    with EmbeddedKafka() as broker:
        bootstrap = broker.bootstrap
        run(write_and_commit(bootstrap))
        broker.restart()
        assert broker.bootstrap == bootstrap
        run(after_graceful_restart(bootstrap))
        broker.restart(kill=True)
        # A crash (SIGKILL) loses nothing that was acknowledged either.
        assert run(all_values(bootstrap, 100)) == list(range(100))


def test_a_kept_directory_is_formatted_once_and_reused(tmp_path: Path) -> None:
    topic = unique("kept")
    home = tmp_path / "kafka"
    items = [(b"k", str(i).encode()) for i in range(20)]

    async def write(bootstrap: str) -> None:
        await create_topic(bootstrap, topic, partitions=1)
        await produce(bootstrap, topic, items)

    async def read_back(bootstrap: str) -> list[int]:
        async with group_consumer(bootstrap, topic, unique("reader")) as reader:
            return [int(r.value) for r in await consume(reader, 20)]

    with EmbeddedKafka(directory=home) as first:
        bootstrap = first.bootstrap
        run(write(bootstrap))
        # Services started on it create topics with one copy; it keeps idempotent producers
        # where they are asked for (the fallback broker cannot have them).
        suited = settings_for(first, Settings(kafka_idempotence=True))
        assert (suited.kafka_replication, suited.kafka_min_insync_replicas) == (1, 1)
        assert suited.kafka_idempotence is True
    state = (home / STATE_FILE).read_text()
    assert home.is_dir(), "a kept directory outlives its broker"

    with EmbeddedKafka(directory=home) as second:
        # The same cluster (no second format: that would have a new id and no topic) on the
        # same port, since nobody took it meanwhile.
        assert (home / STATE_FILE).read_text() == state
        assert second.bootstrap == bootstrap
        assert run(read_back(bootstrap)) == list(range(20))
        log = second.log_path.read_text()
    assert log.count("Formatting metadata directory") == 1


def test_a_kept_cluster_whose_port_was_taken_moves_to_a_free_one(tmp_path: Path) -> None:
    home = tmp_path / "kafka"
    topic = unique("moved")
    with EmbeddedKafka(directory=home) as first:
        old_port = int(first.bootstrap.rpartition(":")[2])
        run(create_topic(first.bootstrap, topic, partitions=2))
    with socket.socket() as squatter:
        squatter.bind((HOST, old_port))
        squatter.listen()
        with EmbeddedKafka(directory=home) as second:
            assert int(second.bootstrap.rpartition(":")[2]) != old_port

            async def partitions() -> int:
                async with admin_client(second.bootstrap) as admin:
                    (described,) = await admin.describe_topics([topic])
                return len(described["partitions"])

            assert run(partitions()) == 2


def test_a_kept_directory_of_another_size_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "kafka"
    home.mkdir()
    (home / STATE_FILE).write_text(json.dumps({"cluster_id": "x", "ports": [1, 2]}))
    broker = EmbeddedKafka(directory=home, brokers=3)
    with pytest.raises(BrokerError, match="holds a cluster of 1 brokers, not 3"):
        broker.start()
    assert not broker.running
    assert (home / STATE_FILE).is_file()
