"""agensbus services as child processes: start one, wait for its /readyz, stop it.

A :class:`ServiceProcess` runs ``python -m services.cli <args>`` (or the ``agensbus``
console script) with extra environment, its HTTP endpoint on a loopback port of its own
and its output in ``<log_dir>/<name>.log``. ``agensbus up`` and ``agensbus demo`` build on
it; so do the end-to-end tests.

On Linux a child is asked to receive SIGTERM when its parent dies, so a parent that is
killed outright (SIGKILL, a crash) does not leave services running. The kernel ties that to
the *thread* that started the child: start services from a thread that lives as long as
they should (the main thread, or the event loop's).
"""

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from services.runtime._ports import free_ports
from services.runtime.broker import tail_lines

HOST = "127.0.0.1"
#: How long a stopped service may take to exit after SIGTERM by default, before SIGKILL.
STOP_TIMEOUT_S = 40.0
_POLL_S = 0.1
_PR_SET_PDEATHSIG = 1

Cancelled = Callable[[], bool]


class ServiceFailed(RuntimeError):
    """A service exited or did not become ready; the message ends with its log's tail."""


@dataclass(frozen=True)
class ServiceSpec:
    """What to run: ``name`` is unique within a run (``worker-2``), ``args`` follow
    ``agensbus`` (``("worker", "--role", "judge")``), ``env`` is added to this process's
    environment. ``http_port`` None picks a free loopback port at start."""

    name: str
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    http_port: int | None = None


def agensbus_command(args: Sequence[str], *, script: bool = False) -> list[str]:
    """The command line of ``agensbus <args>``: through this interpreter (``-m``, which
    works wherever this package imports), or the installed console script."""
    if not script:
        return [sys.executable, "-m", "services.cli", *args]
    beside = Path(sys.executable).with_name("agensbus")
    found = str(beside) if beside.is_file() else shutil.which("agensbus")
    if found is None:
        raise ServiceFailed("the agensbus console script is not installed (pip install -e .)")
    return [found, *args]


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    # Loaded here, in the parent: after fork only the call itself is safe.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a GET of ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServiceProcess:
    """One service as a child process. ``start()``, ``wait_ready()``, then ``stop()``
    (SIGTERM, SIGKILL after a bound) or ``kill()`` (SIGKILL now, as a crash would)."""

    def __init__(self, spec: ServiceSpec, log_dir: Path, *, script: bool = False) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._script = script
        self._port = spec.http_port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceFailed(f"{self.name} has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of its HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (negative: killed by that signal), else None."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self._process is not None:
            raise ServiceFailed(f"{self.name} is already started")
        if self._port is None:
            (self._port,) = free_ports(1, HOST)
        env = {
            **os.environ,
            **self.spec.env,
            "AGENSBUS_HTTP_HOST": HOST,
            "AGENSBUS_HTTP_PORT": str(self._port),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = agensbus_command(self.spec.args, script=self._script)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_parent_death_signal(),
            )
        return self

    def ready(self) -> bool:
        """One probe: whether /readyz answers 200 now."""
        return self.running and http_ok(f"{self.url}/readyz")

    def wait_ready(self, timeout_s: float, *, cancelled: Cancelled = lambda: False) -> bool:
        """Wait until /readyz answers 200. Raises ServiceFailed if the service exits or the
        time runs out; returns False early when ``cancelled()`` becomes true."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if cancelled():
                return False
            if not self.running:
                raise self.failure(f"{self.name} exited during start ({self.describe_exit()})")
            if time.monotonic() > deadline:
                raise self.failure(f"{self.name} was not ready within {timeout_s:.0f} s")
            time.sleep(_POLL_S)
        return True

    def terminate(self) -> None:
        """Send SIGTERM (a graceful stop) and return at once."""
        self._signal(signal.SIGTERM)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it is still running after ``timeout_s``; returns the
        exit code (None if it was never started)."""
        self.terminate()
        return self.wait(timeout_s, kill_after=True)

    def kill(self) -> int | None:
        """SIGKILL now, as a crash would; returns the exit code."""
        self._signal(signal.SIGKILL)
        return self.wait(STOP_TIMEOUT_S, kill_after=True)

    def pause(self) -> None:
        """SIGSTOP: frozen until ``resume()``, its sockets open (a group member that stays
        paused past its session timeout is dropped from the group)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._signal(signal.SIGCONT)

    def wait(self, timeout_s: float, *, kill_after: bool) -> int | None:
        """Wait up to ``timeout_s`` for an exit; then SIGKILL it if ``kill_after``."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            if not kill_after:
                return None
        self._process.kill()
        return self._process.wait()

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def log_tail(self, lines: int = 40) -> str:
        return tail_lines(self.log_path, lines)

    def failure(self, reason: str) -> ServiceFailed:
        return ServiceFailed(f"{reason}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)


def start_all(processes: Sequence[ServiceProcess]) -> None:
    """Start every service. The ports still to choose are chosen together, so that no two
    services of the group are handed the same one."""
    unchosen = [p for p in processes if p._port is None]
    for process, port in zip(unchosen, free_ports(len(unchosen), HOST), strict=True):
        process._port = port
    for process in processes:
        process.start()


def stop_all(processes: Iterable[ServiceProcess], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every running service at once, then wait for all of them within one shared
    ``timeout_s``; any still running then is killed."""
    group = list(processes)
    for process in group:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in group:
        process.wait(deadline - time.monotonic(), kill_after=True)


def first_exited(processes: Iterable[ServiceProcess]) -> ServiceProcess | None:
    """A started service that is no longer running, if any."""
    return next((p for p in processes if p.pid is not None and not p.running), None)


def fleet(workers: int, env: Mapping[str, str]) -> list[ServiceSpec]:
    """The services of a local deployment, in the order they are reported."""
    return [
        ServiceSpec("router", ("router",), env),
        *(ServiceSpec(f"worker-{i}", ("worker",), env) for i in range(1, workers + 1)),
        ServiceSpec("judge", ("worker", "--role", "judge"), env),
        ServiceSpec("learner", ("learner",), env),
    ]
