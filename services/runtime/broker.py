"""The embedded Kafka broker, for when no ``AGENSBUS_KAFKA_BOOTSTRAP`` is given.

``EmbeddedKafka`` runs the real Apache Kafka broker on this machine's JVM, from the jars that
``infra/kafka/fetch.sh`` caches: one node in KRaft mode acting as both broker and controller,
listening on free 127.0.0.1 ports, with its data and its log (``broker.log``) in a temporary
directory. Settings that differ from Kafka's defaults, and why:

* internal topics (consumer offsets, transaction state, share-group state) have replication
  factor 1 and min ISR 1, because there is one node to hold them;
* ``auto.create.topics.enable=false``: the services create their topics explicitly (the
  ``policy`` topic must be compacted, which auto-creation cannot do), and a misspelt topic
  name should fail in a test rather than quietly create a one-partition topic;
* ``num.partitions=1`` for topics created without a count;
* ``group.initial.rebalance.delay.ms=0``: nobody waits 3 s for a first consumer to join;
* ``offsets.topic.num.partitions=1``: creating Kafka's default 50 offsets partitions makes the
  first group join wait, and one node gains nothing from them;
* ``log.cleaner.dedupe.buffer.size`` of 32 MiB: the 128 MiB default would take a quarter of
  the 512 MiB heap.
"""

import atexit
import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from services.runtime._broker_process import (
    HOST,
    BrokerError,
    BrokerProcess,
    tail_lines,
)
from services.runtime._ports import free_ports

__all__ = ["HOST", "KAFKA_VERSION", "BrokerError", "EmbeddedKafka", "tail_lines"]

# Must equal kafka.version in infra/kafka/pom.xml (tests/integration/test_broker.py checks).
KAFKA_VERSION = "4.2.2"
MIN_JAVA_MAJOR = 17  # Kafka 4 brokers need Java 17
BOOTSTRAP_ENV = "AGENSBUS_KAFKA_BOOTSTRAP"
HOME_ENV = "AGENSBUS_KAFKA_HOME"
NODE_ID = 1

# log4j2 writes to the JVM's stdout, which EmbeddedKafka sends to broker.log together with
# anything the JVM prints itself, so one file holds the whole story in order.
_LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.requests.name = kafka.request.logger
logger.requests.level = WARN
"""


def broker_from_env() -> str | None:
    """The bootstrap servers of an existing Kafka-protocol cluster named by
    ``AGENSBUS_KAFKA_BOOTSTRAP``, or None when it is unset, meaning: start an embedded one."""
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None


def find_java() -> Path:
    """The ``java`` of ``$JAVA_HOME``, else the one on PATH; it must be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate is None or not candidate.is_file():
        on_path = shutil.which("java")
        candidate = Path(on_path) if on_path else None
    if candidate is None:
        raise BrokerError(
            f"no JVM found: install a JDK {MIN_JAVA_MAJOR}+ or set {BOOTSTRAP_ENV} to an "
            "existing Kafka cluster (or install the fallback broker, see docs/brokers.md)"
        )
    try:
        probe = subprocess.run(
            [str(candidate), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BrokerError(f"cannot run {candidate} -version: {error}") from None
    # `java -version` prints e.g. `openjdk version "17.0.15"`, or `"1.8.0_292"` before Java 9.
    found = re.search(r'version "(\d+)(?:\.(\d+))?', probe.stderr)
    if found is None:
        raise BrokerError(f"cannot tell the Java version of {candidate}: {probe.stderr.strip()}")
    major = int(found[1]) if found[1] != "1" else int(found[2] or 0)
    if major < MIN_JAVA_MAJOR:
        raise BrokerError(
            f"{candidate} is Java {major}; Apache Kafka {KAFKA_VERSION} needs Java "
            f"{MIN_JAVA_MAJOR}+ (set JAVA_HOME to a newer JDK, or set {BOOTSTRAP_ENV})"
        )
    return candidate


def kafka_home() -> Path:
    """The directory whose ``lib/`` holds the Kafka jars: ``$AGENSBUS_KAFKA_HOME``, by
    default ``~/.cache/agensbus/kafka-<version>``. fetch.sh stamps ``lib/`` once complete."""
    configured = os.environ.get(HOME_ENV)
    home = (
        Path(configured)
        if configured
        else Path.home() / ".cache" / "agensbus" / f"kafka-{KAFKA_VERSION}"
    )
    if not (home / "lib" / ".complete").is_file():
        raise BrokerError(
            f"Kafka jars missing in {home / 'lib'}: run infra/kafka/fetch.sh "
            f"(or set {BOOTSTRAP_ENV} to an existing Kafka cluster)"
        )
    return home


def _new_cluster_id() -> str:
    # Kafka's own Uuid form: 16 random bytes, URL-safe base64 without padding. One starting
    # with "-" would be read as an option by the storage tool, as Kafka itself avoids.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class EmbeddedKafka(BrokerProcess):
    """Apache Kafka in KRaft mode as a child JVM. Use as a context manager, or call
    ``start()`` and ``stop()``; ``restart()`` keeps the data directory and the ports.

    ``keep`` leaves the directory (data, configuration, ``broker.log``) in place after stop;
    ``properties`` overrides or adds ``server.properties`` entries."""

    noun = "the embedded broker"
    process_name = "the Kafka broker"

    def __init__(
        self,
        *,
        keep: bool = False,
        heap: str = "512m",
        start_timeout: float = 90.0,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(keep=keep, start_timeout=start_timeout)
        self.heap = heap
        self.properties = dict(properties or {})
        self._classpath = ""
        self._java = Path()

    @property
    def description(self) -> str:
        return f"embedded Apache Kafka {KAFKA_VERSION}"

    def start(self) -> Self:
        """Format a fresh data directory, launch the broker and wait until it serves."""
        if self._directory is not None:
            raise BrokerError("the embedded broker is already started; use restart()")
        began = time.monotonic()
        self._java = find_java()
        self._classpath = str(kafka_home() / "lib" / "*")
        # Registered before anything is created, so that a caller that exits without stopping
        # the broker leaves no JVM or directory behind.
        atexit.register(self.stop)
        try:
            self._directory = Path(tempfile.mkdtemp(prefix="agensbus-kafka-"))
            self._port, controller_port = free_ports(2)
            self._cluster_id = _new_cluster_id()
            self._write_config(self._port, controller_port)
            self._format_storage()
            self._launch()
            self._wait_until_serving(began)
        except BaseException:
            self._halt(kill=True)
            self.stop()
            raise
        return self

    def restart(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL when ``kill`` to simulate a crash) and start
        it again on the same data directory and ports."""
        if self._directory is None:
            raise BrokerError("the embedded broker has not been started")
        began = time.monotonic()
        self._halt(kill=kill)
        try:
            self._launch()
            self._wait_until_serving(began)
        except BaseException:
            self._halt(kill=True)
            raise

    def _write_config(self, port: int, controller_port: int) -> None:
        directory = self.directory
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(directory / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        } | self.properties
        (directory / "server.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items())
        )
        (directory / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)

    def _java_command(self, main_class: str, *arguments: str) -> list[str]:
        return [
            str(self._java),
            f"-Xmx{self.heap}",
            # A test broker on a small machine: the serial collector and the client compiler
            # start about a second sooner and use fewer threads than G1 and C2.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            self._classpath,
            main_class,
            *arguments,
        ]

    def _format_storage(self) -> None:
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self._cluster_id,
            "--config",
            str(self.directory / "server.properties"),
        )
        with self.log_path.open("ab") as log:
            try:
                formatted = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise self._failure(
                    f"formatting Kafka storage took over {self.start_timeout:.0f} s"
                ) from None
        if formatted.returncode != 0:
            raise self._failure(f"formatting Kafka storage failed (exit {formatted.returncode})")

    def _launch(self) -> None:
        java = self._java_command("kafka.Kafka", str(self.directory / "server.properties"))
        # Ctrl-C signals the whole foreground process group. The JVM starts with SIGINT
        # ignored (the shell execs it, so the PID stays the JVM's) and leaves it so, and
        # the Python side then stops the broker after the services have flushed and
        # committed. It stays in the group, so closing the terminal still ends it.
        command = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *java]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
