"""The embedded Kafka broker, for when no ``AGENSBUS_KAFKA_BOOTSTRAP`` is given.

``EmbeddedKafka`` runs the real Apache Kafka broker on this machine's JVM, from the jars that
``infra/kafka/fetch.sh`` caches: in KRaft mode, each node acting as both broker and
controller, listening on free 127.0.0.1 ports, with its data and its log (``broker.log``) in a
temporary directory, or in a directory of the caller's that outlives it (``directory``:
formatted once, then reused with the same cluster id and, while they are free, the same
ports). One node by default; ``brokers=3`` starts a replicated cluster for tests of
durability. Settings that differ from Kafka's defaults, and why:

* internal topics (consumer offsets, transaction state, share-group state) are replicated
  to min(3, nodes) nodes with a min ISR of min(2, nodes), as are topics created without a
  factor: one node can hold only one copy;
* ``auto.create.topics.enable=false``: the services create their topics explicitly (the
  ``policy`` topic must be compacted, which auto-creation cannot do), and a misspelt topic
  name should fail in a test rather than quietly create a one-partition topic;
* ``num.partitions=1`` for topics created without a count;
* ``group.initial.rebalance.delay.ms=0``: nobody waits 3 s for a first consumer to join;
* ``offsets.topic.num.partitions=1``: creating Kafka's default 50 offsets partitions makes the
  first group join wait, and a test cluster gains nothing from them;
* ``log.cleaner.dedupe.buffer.size`` of 32 MiB: the 128 MiB default would take a quarter of
  the 512 MiB heap.
"""

import asyncio
import atexit
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from services.runtime._broker_process import (
    HOST,
    STOP_TIMEOUT_S,
    BrokerError,
    BrokerProcess,
    logger,
    serves_cluster,
    tail_lines,
)
from services.runtime._ports import free_ports, port_free

__all__ = ["HOST", "KAFKA_VERSION", "BrokerError", "EmbeddedKafka", "tail_lines"]

# Must equal kafka.version in infra/kafka/pom.xml (tests/integration/test_broker.py checks).
KAFKA_VERSION = "4.2.2"
MIN_JAVA_MAJOR = 17  # Kafka 4 brokers need Java 17
BOOTSTRAP_ENV = "AGENSBUS_KAFKA_BOOTSTRAP"
HOME_ENV = "AGENSBUS_KAFKA_HOME"
#: Where a cluster's directory remembers its id and its nodes' ports.
STATE_FILE = "cluster.json"

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


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min ISR) a cluster of ``brokers`` nodes can give its topics."""
    return min(3, brokers), min(2, brokers)


@dataclass
class KafkaNode:
    """One KRaft node (broker and controller) of an EmbeddedKafka cluster."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: "subprocess.Popen[bytes] | None" = None

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def formatted(self) -> bool:
        """Whether the storage tool has written this node's log directory."""
        return (self.directory / "data" / "meta.properties").is_file()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EmbeddedKafka(BrokerProcess):
    """Apache Kafka in KRaft mode as child JVMs, one per node. Use as a context manager, or
    call ``start()`` and ``stop()``; ``restart()`` keeps the data and the ports.

    ``directory`` keeps the cluster there across starts (it is never removed); without it
    a temporary directory is used, and ``keep`` leaves it in place after stop. ``brokers``
    nodes form the cluster (``kill_node`` and ``start_node`` play a crash of one);
    ``properties`` overrides or adds ``server.properties`` entries of every node."""

    noun = "the embedded broker"
    process_name = "the Kafka broker"

    def __init__(
        self,
        *,
        directory: Path | None = None,
        brokers: int = 1,
        keep: bool = False,
        heap: str = "512m",
        start_timeout: float = 90.0,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        if brokers < 1:
            raise ValueError(f"a cluster needs at least one broker, not {brokers}")
        super().__init__(keep=keep or directory is not None, start_timeout=start_timeout)
        self.home = directory
        self.brokers = brokers
        self.heap = heap
        self.properties = dict(properties or {})
        self.nodes: list[KafkaNode] = []
        self._classpath = ""
        self._java = Path()

    @property
    def description(self) -> str:
        size = "" if self.brokers == 1 else f", {self.brokers} brokers"
        return f"embedded Apache Kafka {KAFKA_VERSION}{size}"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of every node, comma-separated, for Kafka clients."""
        if not self.nodes:
            raise BrokerError(f"{self.noun} has not been started")
        return ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    @property
    def log_path(self) -> Path:
        """The first node's log (the only one, unless ``brokers`` > 1)."""
        return self.nodes[0].log_path if self.nodes else super().log_path

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(node.running for node in self.nodes)

    def start(self) -> Self:
        """Format what is not formatted yet, launch every node and wait until the cluster
        serves with all of them."""
        if self._directory is not None:
            raise BrokerError("the embedded broker is already started; use restart()")
        began = time.monotonic()
        self._java = find_java()
        self._classpath = str(kafka_home() / "lib" / "*")
        # Registered before anything is created, so that a caller that exits without stopping
        # the broker leaves no JVM or directory behind.
        atexit.register(self.stop)
        try:
            if self.home is None:
                self._directory = Path(tempfile.mkdtemp(prefix="agensbus-kafka-"))
            else:
                self.home.mkdir(parents=True, exist_ok=True)
                self._directory = self.home
            self._cluster_id, self.nodes = self._layout()
            (self.directory / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
            for node in self.nodes:
                self._write_config(node)
            self._format_storage([node for node in self.nodes if not node.formatted])
            self._port = self.nodes[0].port
            for node in self.nodes:
                self._launch(node)
            self._wait_until_serving(began)
        except BaseException:
            self._halt(kill=True)
            self.stop()
            raise
        return self

    def stop(self) -> None:
        super().stop()
        self.nodes = []

    def restart(self, *, kill: bool = False) -> None:
        """Stop every node (SIGTERM, or SIGKILL when ``kill`` to simulate a crash) and start
        them again on the same data directory and ports."""
        if not self.nodes:
            raise BrokerError("the embedded broker has not been started")
        began = time.monotonic()
        self._halt(kill=kill)
        try:
            for node in self.nodes:
                self._launch(node)
            self._wait_until_serving(began)
        except BaseException:
            self._halt(kill=True)
            raise

    def node(self, node_id: int) -> KafkaNode:
        found = [node for node in self.nodes if node.node_id == node_id]
        if not found:
            raise BrokerError(f"{self.noun} has no node {node_id}")
        return found[0]

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; the others go on."""
        self._halt_nodes([self.node(node_id)], kill=True)

    def start_node(self, node_id: int) -> None:
        """Start a stopped node again on its data and ports; returns once the cluster
        counts every node."""
        node = self.node(node_id)
        if node.running:
            raise BrokerError(f"node {node_id} is running")
        began = time.monotonic()
        self._launch(node)
        self._wait_until_serving(began)

    def _layout(self) -> tuple[str, list[KafkaNode]]:
        """The cluster id and nodes: those the directory remembers, else new ones. Remembered
        ports that another process took are replaced (the nodes advertise the new ones)."""
        state_path = self.directory / STATE_FILE
        count = 2 * self.brokers
        if state_path.is_file():
            cluster_id, ports = self._remembered(state_path)
            if not all(port_free(port, HOST) for port in ports):
                moved = free_ports(count, HOST)
                logger.warning("ports %s are taken; the cluster now listens on %s", ports, moved)
                ports = moved
        else:
            cluster_id, ports = _new_cluster_id(), free_ports(count, HOST)
        nodes = [
            KafkaNode(
                node_id,
                ports[2 * index],
                ports[2 * index + 1],
                self.directory if self.brokers == 1 else self.directory / f"node-{node_id}",
            )
            for index, node_id in enumerate(range(1, self.brokers + 1))
        ]
        for node in nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
        state = {"cluster_id": cluster_id, "ports": ports}
        state_path.write_text(json.dumps(state, indent=2) + "\n")
        return cluster_id, nodes

    def _remembered(self, state_path: Path) -> tuple[str, list[int]]:
        try:
            state = json.loads(state_path.read_text())
            cluster_id, ports = str(state["cluster_id"]), [int(p) for p in state["ports"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BrokerError(f"cannot read {state_path}: {error}") from None
        if len(ports) != 2 * self.brokers:
            raise BrokerError(
                f"{self.directory} holds a cluster of {len(ports) // 2} brokers, not {self.brokers}"
            )
        return cluster_id, ports

    def _write_config(self, node: KafkaNode) -> None:
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        replication, min_isr = (str(value) for value in replication_for(self.brokers))
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        } | self.properties
        (node.directory / "server.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items())
        )

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

    def _format_storage(self, nodes: Sequence[KafkaNode]) -> None:
        """Format the nodes' storage, all at once (each is a JVM start)."""
        with ExitStack() as logs:
            formatting = [
                (
                    node,
                    subprocess.Popen(
                        self._java_command(
                            "kafka.tools.StorageTool",
                            "format",
                            "--cluster-id",
                            self._cluster_id,
                            "--config",
                            str(node.directory / "server.properties"),
                        ),
                        stdin=subprocess.DEVNULL,
                        stdout=logs.enter_context(node.log_path.open("ab")),
                        stderr=subprocess.STDOUT,
                    ),
                )
                for node in nodes
            ]
            deadline = time.monotonic() + self.start_timeout
            try:
                for node, tool in formatting:
                    try:
                        code = tool.wait(timeout=max(deadline - time.monotonic(), 0.0))
                    except subprocess.TimeoutExpired:
                        raise self._failure(
                            f"formatting Kafka storage took over {self.start_timeout:.0f} s", node
                        ) from None
                    if code != 0:
                        raise self._failure(f"formatting Kafka storage failed (exit {code})", node)
            finally:
                for _, tool in formatting:
                    if tool.poll() is None:
                        tool.kill()
                        tool.wait()

    def _launch(self, node: KafkaNode) -> None:
        java = self._java_command("kafka.Kafka", str(node.directory / "server.properties"))
        # Ctrl-C signals the whole foreground process group. The JVM starts with SIGINT
        # ignored (the shell execs it, so the PID stays the JVM's) and leaves it so, and
        # the Python side then stops the broker after the services have flushed and
        # committed. It stays in the group, so closing the terminal still ends it.
        command = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *java]
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                command,
                cwd=node.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _exited_during_start(self) -> str | None:
        for node in self.nodes:
            if not node.running:
                code = None if node.process is None else node.process.returncode
                return f"Kafka node {node.node_id} exited during start (exit {code})"
        return None

    def _probe(self) -> bool:
        return asyncio.run(serves_cluster(self.bootstrap, self._cluster_id, self.brokers))

    def _halt(self, *, kill: bool) -> None:
        self._halt_nodes(self.nodes, kill=kill)

    def _halt_nodes(self, nodes: Sequence[KafkaNode], *, kill: bool) -> None:
        """SIGTERM (unless ``kill``) the nodes together, then SIGKILL those still running
        after STOP_TIMEOUT_S."""
        running = [node.process for node in nodes if node.running and node.process is not None]
        for node in nodes:
            node.process = None
        for process in running:
            if kill:
                process.kill()
            else:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s still up %.0f s after SIGTERM; killing it", self.noun, STOP_TIMEOUT_S
                )
                process.kill()
                process.wait()

    def _failure(self, reason: str, node: KafkaNode | None = None) -> BrokerError:
        if node is None:
            node = next((n for n in self.nodes if not n.running), None)
        log_path = self.log_path if node is None else node.log_path
        return BrokerError(f"{reason}\n--- last lines of {log_path} ---\n{tail_lines(log_path)}")
