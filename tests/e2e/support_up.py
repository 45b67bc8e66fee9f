"""``agensbus up`` driven as a user drives it, for the tests that run a whole deployment
through it: the command in the background with its output read line by line, the services
it starts (by the name their metrics carry), a clean environment to start it in, the CLI
run against it, and plain HTTP GETs of its endpoints."""

import os
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from services.runtime.processes import agensbus_command
from tests.conftest import IDEMPOTENCE_ENV
from tests.e2e.conftest import CLI_TIMEOUT_S

STOP_TIMEOUT_S = 120.0
#: Service name in `up`'s output → the name its metrics carry.
SERVICES = {
    "router": "router",
    "worker-1": "worker",
    "worker-2": "worker",
    "judge": "judge",
    "learner": "learner",
}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without AGENSBUS_* settings, plus ``extra``; but what the session's
    broker cannot do stays said."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AGENSBUS_") or k == IDEMPOTENCE_ENV
    }
    return env | extra


class Up:
    """``agensbus up`` in the background; its stdout is read line by line as it comes. Unless
    the test names a data directory, the stack is ephemeral: a test never takes the user's
    default data directory (nor its lock)."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self._stderr_path = stderr
        if "--data-dir" not in args and "--ephemeral" not in args:
            args = [*args, "--ephemeral"]
        with stderr.open("w") as err:
            self.process = subprocess.Popen(
                agensbus_command(["up", *args]),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text()

    def wait_for(self, start: str, timeout_s: float) -> None:
        """Read output until a line starts with ``start``."""
        while not any(line.startswith(start) for line in self.lines):
            try:
                line = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                raise AssertionError(f"no {start!r} line in time:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"up exited before {start!r}:\n{self.output}")
            self.lines.append(line)

    def value(self, label: str) -> str:
        """What a ``LABEL  VALUE`` line (label padded to 16) says."""
        (line,) = [line for line in self.lines if line[:16].rstrip() == label]
        return line[16:].split()[0]

    def finish(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        code = self.process.wait(timeout=timeout_s)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines) + f"\n--- stderr ---\n{self.stderr}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def cli(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        agensbus_command(args),
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


READY_TIMEOUT_S = 180.0


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # Field 4 is the parent; the command name (field 2) may hold spaces, so split after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []
