"""Which broker to start on this machine when no cluster is named: Apache Kafka on the JVM
(EmbeddedKafka) whenever Java 17+ and the fetched jars are there, else the fallback broker
from PyPI (FallbackKafka, tansu) with a warning that names it and its caveats, else an error
naming both ways to fix it. docs/brokers.md explains the choice."""

import logging
from collections.abc import Callable
from pathlib import Path

from services.runtime._broker_process import BrokerProcess
from services.runtime.broker import (
    BOOTSTRAP_ENV,
    KAFKA_VERSION,
    MIN_JAVA_MAJOR,
    BrokerError,
    EmbeddedKafka,
    find_java,
    kafka_home,
    replication_for,
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


def choose_local_broker(
    warn: Callable[[str], None] = logger.warning, *, directory: Path | None = None
) -> LocalBroker:
    """An unstarted broker for this machine. ``warn`` receives the message that says the
    fallback is in use, and why, before it is returned. ``directory`` keeps Apache Kafka's
    data there across starts; the fallback keeps nothing, and the warning says so."""
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
        kept = "" if directory is None else f"; nothing is kept in {directory} across restarts"
        warn(
            f"Apache Kafka cannot run here ({missing}); using the {fallback.description} "
            f"instead{kept}. Caveats: {CAVEATS}"
        )
        return fallback
    return EmbeddedKafka(directory=directory)


def settings_for(broker: LocalBroker, settings: Settings) -> Settings:
    """``settings`` pointed at the started ``broker``: with the replication it can give,
    and on the fallback with its short fetch wait and no idempotence, unless the user chose
    otherwise."""
    brokers = broker.brokers if isinstance(broker, EmbeddedKafka) else 1
    factor, min_isr = replication_for(brokers)
    suited: dict[str, object] = {
        "kafka_replication": factor,
        "kafka_min_insync_replicas": min_isr,
    }
    if isinstance(broker, FallbackKafka):
        suited |= {
            "kafka_fetch_max_wait_ms": FALLBACK_FETCH_MAX_WAIT_MS,
            "kafka_idempotence": False,
        }
    update = {k: v for k, v in suited.items() if k not in settings.model_fields_set}
    return settings.model_copy(update={**update, "kafka_bootstrap": broker.bootstrap})


#: The settings :func:`settings_for` may change, which services started on the broker need.
SUITED_FIELDS = (
    "kafka_bootstrap",
    "kafka_replication",
    "kafka_min_insync_replicas",
    "kafka_fetch_max_wait_ms",
    "kafka_idempotence",
)
