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

import asyncio
import atexit
import base64
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.runtime._ports import free_ports

# Must equal kafka.version in infra/kafka/pom.xml (tests/integration/test_broker.py checks).
KAFKA_VERSION = "4.2.2"
MIN_JAVA_MAJOR = 17  # Kafka 4 brokers need Java 17
BOOTSTRAP_ENV = "AGENSBUS_KAFKA_BOOTSTRAP"
HOME_ENV = "AGENSBUS_KAFKA_HOME"
HOST = "127.0.0.1"
NODE_ID = 1
LOG_TAIL_LINES = 40
STOP_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)

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


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, started or reached; the message says why."""


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


def tail_lines(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


async def _serves_cluster(bootstrap: str, cluster_id: str) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request as ``cluster_id``: it
    only serves requests once fully started, and the id rules out a stranger on the port."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return bool(cluster.get("cluster_id") == cluster_id)


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class EmbeddedKafka:
    """Apache Kafka in KRaft mode as a child JVM. Use as a context manager, or call
    ``start()`` and ``stop()``; ``restart()`` keeps the data directory and the ports.

    ``keep`` leaves the directory (data, configuration, ``broker.log``) in place after stop;
    ``properties`` overrides or adds ``server.properties`` entries."""

    def __init__(
        self,
        *,
        keep: bool = False,
        heap: str = "512m",
        start_timeout: float = 90.0,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.keep = keep
        self.heap = heap
        self.start_timeout = start_timeout
        self.properties = dict(properties or {})
        # Seconds the last start or restart took, until the broker served requests.
        self.started_in: float | None = None
        self._directory: Path | None = None
        self._ports: tuple[int, int] | None = None
        self._cluster_id = ""
        self._classpath = ""
        self._java = Path()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener, for Kafka clients."""
        if self._ports is None:
            raise BrokerError("the embedded broker has not been started")
        return f"{HOST}:{self._ports[0]}"

    @property
    def directory(self) -> Path:
        """The broker's temporary directory: server.properties, data/, broker.log."""
        if self._directory is None:
            raise BrokerError("the embedded broker has not been started")
        return self._directory

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

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
            port, controller_port = free_ports(2)
            self._ports = (port, controller_port)
            self._cluster_id = _new_cluster_id()
            self._write_config(port, controller_port)
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

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL if it lingers) and, unless ``keep``, remove
        its directory. Safe to call more than once."""
        atexit.unregister(self.stop)
        self._halt(kill=False)
        if self._directory is not None and not self.keep:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None
        self._ports = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

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

    def _wait_until_serving(self, began: float) -> None:
        deadline = began + self.start_timeout
        port = int(self.bootstrap.rpartition(":")[2])
        # The probe is asyncio code; a thread of its own lets it run whether or not the caller
        # is already inside an event loop. A plain connect goes first so that aiokafka does
        # not log a connection error for every poll while the JVM boots.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-probe") as pool:
            while True:
                if self._process is None or self._process.poll() is not None:
                    code = None if self._process is None else self._process.returncode
                    raise self._failure(f"the Kafka broker exited during start (exit {code})")
                if _accepts_connections(HOST, port) and pool.submit(self._probe).result():
                    break
                if time.monotonic() > deadline:
                    raise self._failure(
                        f"the Kafka broker did not serve {self.bootstrap} within "
                        f"{self.start_timeout:.0f} s"
                    )
                time.sleep(0.1)
        self.started_in = time.monotonic() - began
        logger.info(
            "Apache Kafka %s serving %s after %.1f s (log: %s)",
            KAFKA_VERSION,
            self.bootstrap,
            self.started_in,
            self.log_path,
        )

    def _probe(self) -> bool:
        return asyncio.run(_serves_cluster(self.bootstrap, self._cluster_id))

    def _halt(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if not kill:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Kafka broker still up %.0f s after SIGTERM; killing it", STOP_TIMEOUT_S
                )
        process.kill()
        process.wait()

    def _failure(self, reason: str) -> BrokerError:
        return BrokerError(
            f"{reason}\n--- last lines of {self.log_path} ---\n{tail_lines(self.log_path)}"
        )
