"""Keeping a fleet of services up: a service that exits is started again after a delay that
doubles while it keeps failing (1 s, 2 s, 4 s ... up to 30 s) and starts over once a run
lasted a healthy minute, so a crash loop neither spins nor waits long after a one-off."""

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.runtime.processes import ServiceProcess


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    cap_s: float = 30.0
    healthy_s: float = 60.0

    def delay(self, previous_s: float | None, ran_s: float) -> float:
        """Seconds to wait before the next start of a service that ran ``ran_s`` since its
        last start, which came ``previous_s`` after the exit before it (None: none did)."""
        if previous_s is None or ran_s >= self.healthy_s:
            return self.first_s
        return min(2 * previous_s, self.cap_s)


@dataclass
class _Watched:
    process: ServiceProcess
    started_at: float
    delay_s: float | None = None
    restart_at: float | None = None
    restarts: int = 0
    announced: bool = True


Report = Callable[[str, str], None]


class Supervisor:
    """Watches started services; ``tick()`` restarts those that exited, when their delay is
    up, and reports each exit, restart and renewed readiness through ``report(name, text)``.
    A restarted service keeps its HTTP port and its log file."""

    def __init__(
        self,
        processes: Sequence[ServiceProcess],
        report: Report,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._report = report
        self._backoff = backoff
        self._clock = clock
        self._watched = [_Watched(p, clock()) for p in processes]

    @property
    def processes(self) -> list[ServiceProcess]:
        """The current process of every service."""
        return [w.process for w in self._watched]

    def tick(self) -> None:
        now = self._clock()
        for watched in self._watched:
            process = watched.process
            if watched.restart_at is not None:
                if now >= watched.restart_at:
                    self._restart(watched, now)
            elif not process.running:
                self._exited(watched, now)
            elif not watched.announced and process.ready():
                watched.announced = True
                self._report(process.name, f"ready again: {process.metrics_url}")

    def _exited(self, watched: _Watched, now: float) -> None:
        process = watched.process
        ran_s = now - watched.started_at
        watched.delay_s = self._backoff.delay(watched.delay_s, ran_s)
        watched.restart_at = now + watched.delay_s
        self._report(
            process.name,
            f"stopped ({process.describe_exit()}) after {ran_s:.0f} s; restarting in "
            f"{watched.delay_s:g} s (log: {process.log_path})",
        )

    def _restart(self, watched: _Watched, now: float) -> None:
        old = watched.process
        spec = dataclasses.replace(old.spec, http_port=old.port)
        watched.process = ServiceProcess(spec, old.log_path.parent).start()
        watched.started_at = now
        watched.restart_at = None
        watched.restarts += 1
        watched.announced = False
        self._report(old.name, f"restarted (restart {watched.restarts}, pid {watched.process.pid})")
