"""Where ``agensbus up`` keeps what must outlive it: the broker's log (and so the learned
policy) and the services' logs, in one directory that one running ``up`` holds at a time."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "up.lock"


class DataDirInUse(RuntimeError):
    """Another process holds the data directory; the message names it."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/agensbus``, by default ``~/.local/share/agensbus``. The XDG base
    directory rules ignore a relative ``XDG_DATA_HOME``, and so does this."""
    configured = os.environ.get("XDG_DATA_HOME", "")
    base = Path(configured) if os.path.isabs(configured) else Path.home() / ".local" / "share"
    return base / "agensbus"


@contextmanager
def holding(directory: Path) -> Iterator[Path]:
    """Create ``directory`` if needed and hold its lock while the block runs. The lock is
    the kernel's (flock): it goes with the process however that ends, so a crash leaves
    no stale lock behind. Raises DataDirInUse when another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_FILE
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise DataDirInUse(
                f"{directory} is in use by another agensbus up (pid {holder}); stop it, or "
                "give this one another --data-dir (or --ephemeral)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield directory
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
