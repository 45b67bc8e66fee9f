"""Which broker to start on this machine when no cluster is named: Apache Kafka on the JVM
(EmbeddedKafka) whenever Java 17+ and the fetched jars are there, else the fallback broker
from PyPI (FallbackKafka, tansu) with a warning that names it and its caveats, else an error
naming both ways to fix it. docs/brokers.md explains the choice."""

import logging
from collections.abc import Callable

from services.runtime._broker_process import BrokerProcess
from services.runtime.broker import (
    BOOTSTRAP_ENV,
    KAFKA_VERSION,
    MIN_JAVA_MAJOR,
    BrokerError,
    EmbeddedKafka,
    find_java,
    kafka_home,
)
from services.runtime.fallback_broker import INSTALL, FallbackKafka, fallback_installed
from services.runtime.settings import Settings

LocalBroker = BrokerProcess

# tansu answers a fetch only when its wait expires (round trip p50 203 ms at aiokafka's
# 500 ms default, 5 ms at 20 ms), so services on it wait less.
FALLBACK_FETCH_MAX_WAIT_MS = 20

logger = logging.getLogger(__name__)

CAVEATS = (
    "memory only: stopping or losing it loses every topic and committed offset, the policy "
    "topic included (a learner then starts cold); no compaction or retention; a consumer "
    "group join takes about 5 s, and a member that leaves or dies keeps its partitions for "
    "about 18 s; a consumer sees new records only when its fetch_max_wait_ms runs out "
    "(20 ms under agensbus up and demo); end offsets, and so consumer lag and `agensbus "
    "tail`'s starting point, can be short after batched writes; kcat and other librdkafka "
    "clients cannot connect; no idempotent or transactional producers. See docs/brokers.md"
)


def choose_local_broker(warn: Callable[[str], None] = logger.warning) -> LocalBroker:
    """An unstarted broker for this machine. ``warn`` receives the message that says the
    fallback is in use, and why, before it is returned."""
    try:
        find_java()
        kafka_home()
    except BrokerError as missing:
        if not fallback_installed():
            raise BrokerError(
                f"no local Kafka broker can start here. Apache Kafka {KAFKA_VERSION}: "
                f"{missing}. The fallback broker is not installed either. Fix one: install "
                f"a JDK {MIN_JAVA_MAJOR}+ and run infra/kafka/fetch.sh, or {INSTALL} "
                f"(see docs/brokers.md); or set {BOOTSTRAP_ENV} to an existing cluster"
            ) from None
        fallback = FallbackKafka()
        warn(
            f"Apache Kafka cannot run here ({missing}); using the {fallback.description} "
            f"instead. Caveats: {CAVEATS}"
        )
        return fallback
    return EmbeddedKafka()


def settings_for(broker: LocalBroker, settings: Settings) -> Settings:
    """``settings`` pointed at the started ``broker``; on the fallback, with its short fetch
    wait unless the user chose one."""
    update: dict[str, object] = {"kafka_bootstrap": broker.bootstrap}
    if isinstance(broker, FallbackKafka) and "kafka_fetch_max_wait_ms" not in (
        settings.model_fields_set
    ):
        update["kafka_fetch_max_wait_ms"] = FALLBACK_FETCH_MAX_WAIT_MS
    return settings.model_copy(update=update)
