"""What the two local brokers (Apache Kafka on the JVM, the fallback) share: a child process
serving Kafka on a free loopback port, a temporary directory holding its log, a start that
waits until the broker answers as its own cluster, and a stop (SIGTERM, then SIGKILL) that
removes the directory unless it is kept."""

import asyncio
import atexit
import logging
import os
import shutil
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

HOST = "127.0.0.1"
LOG_TAIL_LINES = 40
STOP_TIMEOUT_S = 30.0

logger = logging.getLogger("services.runtime.broker")


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, started or reached; the message says why."""


def tail_lines(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


async def serves_cluster(bootstrap: str, cluster_id: str, brokers: int = 1) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request as ``cluster_id``, with
    at least ``brokers`` brokers in it: a broker only serves requests once fully started, and
    the id rules out a stranger on the port."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return cluster.get("cluster_id") == cluster_id and len(cluster.get("brokers", [])) >= brokers


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class BrokerProcess(ABC):
    """A local broker as a child process. Use as a context manager, or call ``start()`` and
    ``stop()``. ``keep`` leaves the directory (``broker.log`` and whatever the broker
    writes) after stop."""

    #: The broker in messages to a person: "the embedded broker".
    noun: ClassVar[str]
    #: The process in messages about its start: "the Kafka broker".
    process_name: ClassVar[str]
    #: How often the start polls whether the broker serves.
    poll_s: ClassVar[float] = 0.1

    def __init__(self, *, keep: bool, start_timeout: float) -> None:
        self.keep = keep
        self.start_timeout = start_timeout
        # Seconds the last start took, until the broker served requests.
        self.started_in: float | None = None
        self._directory: Path | None = None
        self._port: int | None = None
        self._cluster_id = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    @abstractmethod
    def description(self) -> str:
        """What the broker is, for a person (its name and version)."""

    @abstractmethod
    def start(self) -> Self:
        """Launch the broker on a free port and wait until it serves."""

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for Kafka clients."""
        if self._port is None:
            raise BrokerError(f"{self.noun} has not been started")
        return f"{HOST}:{self._port}"

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise BrokerError(f"{self.noun} has not been started")
        return self._directory

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL if it lingers) and, unless ``keep``, remove
        its directory. Safe to call more than once."""
        atexit.unregister(self.stop)
        self._halt(kill=False)
        if self._directory is not None and not self.keep:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_serving(self, began: float) -> None:
        deadline = began + self.start_timeout
        ports = [int(address.rpartition(":")[2]) for address in self.bootstrap.split(",")]
        # The probe is asyncio code; a thread of its own lets it run whether or not the caller
        # is already inside an event loop. A plain connect goes first so that aiokafka does
        # not log a connection error for every poll while the broker boots.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-probe") as pool:
            while True:
                exited = self._exited_during_start()
                if exited is not None:
                    raise self._failure(exited)
                reachable = any(accepts_connections(HOST, port) for port in ports)
                if reachable and pool.submit(self._probe).result():
                    break
                if time.monotonic() > deadline:
                    raise self._failure(
                        f"{self.process_name} did not serve {self.bootstrap} within "
                        f"{self.start_timeout:.0f} s"
                    )
                time.sleep(self.poll_s)
        self.started_in = time.monotonic() - began
        logger.info(
            "%s serving %s after %.2f s (log: %s)",
            self.description,
            self.bootstrap,
            self.started_in,
            self.log_path,
        )

    def _exited_during_start(self) -> str | None:
        """Why the start cannot succeed any more (the process exited), or None."""
        if self._process is not None and self._process.poll() is None:
            return None
        code = None if self._process is None else self._process.returncode
        return f"{self.process_name} exited during start (exit {code})"

    def _probe(self) -> bool:
        return asyncio.run(serves_cluster(self.bootstrap, self._cluster_id))

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
                    "%s still up %.0f s after SIGTERM; killing it", self.noun, STOP_TIMEOUT_S
                )
        process.kill()
        process.wait()

    def _failure(self, reason: str) -> BrokerError:
        return BrokerError(
            f"{reason}\n--- last lines of {self.log_path} ---\n{tail_lines(self.log_path)}"
        )
