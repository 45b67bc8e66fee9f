"""One arm's deployment: a router, two workers, a judge and a learner as child processes,
on a topic prefix of their own, configured through ``AGENSBUS_*`` variables."""

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from services.runtime.processes import (
    ServiceFailed,
    ServiceProcess,
    ServiceSpec,
    first_exited,
    fleet,
    stop_all,
)

READY_TIMEOUT_S = 90.0
ROUTER_SYNC_TIMEOUT_S = 30.0
_SYNC_POLL_S = 0.02


@dataclass(frozen=True)
class StackConfig:
    """What differs between deployments. ``snapshot_every`` 1, with no minimum interval, lets
    every backup reach the routers at once; ``judge_window_ms`` bounds how long a lone
    trajectory waits for peers."""

    bootstrap: str
    prefix: str
    scenario: str
    seed: int
    policy_arm: str
    workers: int = 2
    snapshot_every: int = 1
    snapshot_interval_s: float = 0.2
    snapshot_min_interval_s: float = 0.0
    judge_window_ms: int = 20
    sim_time_scale: float = 0.0
    log_level: str = "INFO"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        group = self.prefix.rstrip(".")
        return {
            **self.extra_env,
            "AGENSBUS_KAFKA_BOOTSTRAP": self.bootstrap,
            "AGENSBUS_TOPIC_PREFIX": self.prefix,
            "AGENSBUS_SCENARIO": self.scenario,
            "AGENSBUS_SEED": str(self.seed),
            "AGENSBUS_POLICY_ARM": self.policy_arm,
            "AGENSBUS_SNAPSHOT_EVERY": str(self.snapshot_every),
            "AGENSBUS_SNAPSHOT_INTERVAL_S": str(self.snapshot_interval_s),
            "AGENSBUS_SNAPSHOT_MIN_INTERVAL_S": str(self.snapshot_min_interval_s),
            "AGENSBUS_JUDGE_WINDOW_MS": str(self.judge_window_ms),
            "AGENSBUS_SIM_TIME_SCALE": str(self.sim_time_scale),
            "AGENSBUS_LOG_LEVEL": self.log_level,
            # Groups of their own, so deployments sharing a cluster never share work.
            "AGENSBUS_ROUTER_GROUP": f"{group}.router",
            "AGENSBUS_WORKER_GROUP": f"{group}.worker",
            "AGENSBUS_JUDGE_GROUP": f"{group}.judge",
            "AGENSBUS_LEARNER_GROUP": f"{group}.learner",
        }

    def specs(self) -> list[ServiceSpec]:
        return fleet(self.workers, self.env())


class Stack:
    """Start it (every service ready) as a context manager; ``kill`` and ``restart`` one
    service to play a crash; ``check`` raises if a service died that nobody killed."""

    def __init__(self, config: StackConfig, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {
            spec.name: ServiceProcess(spec, log_dir) for spec in config.specs()
        }
        self._killed: set[str] = set()

    def __enter__(self) -> Self:
        try:
            for process in self.services.values():
                process.start()
            deadline = time.monotonic() + READY_TIMEOUT_S
            for process in self.services.values():
                process.wait_ready(max(deadline - time.monotonic(), 0.0))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        stop_all(self.services.values())

    def kill(self, name: str) -> int | None:
        """SIGKILL one service, as a crash would."""
        self._killed.add(name)
        return self.services[name].kill()

    def restart(self, name: str) -> ServiceProcess:
        """Start a fresh process of a killed service (its log goes on in the same file)."""
        old = self.services[name]
        if old.running:
            raise ServiceFailed(f"{name} is still running; kill or stop it first")
        process = ServiceProcess(old.spec, self.log_dir).start()
        self.services[name] = process
        self._killed.discard(name)
        return process

    def check(self) -> None:
        """Raise ServiceFailed, with its log, if a service exited that was not killed."""
        alive = [p for name, p in self.services.items() if name not in self._killed]
        dead = first_exited(alive)
        if dead is not None:
            raise dead.failure(f"{dead.name} exited during the run ({dead.describe_exit()})")

    async def sync_router(self, version: int) -> None:
        """Wait until the router serves policy ``version`` or newer (read from its metrics),
        so that a task submitted next is routed with what the learner published."""
        router = self.services["router"]
        deadline = time.monotonic() + ROUTER_SYNC_TIMEOUT_S
        while True:
            served = await asyncio.to_thread(router_policy_version, router.metrics_url)
            if served is not None and served >= version:
                return
            if not router.running:
                raise router.failure(f"router exited ({router.describe_exit()})")
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"the router still serves policy version {served} "
                    f"{ROUTER_SYNC_TIMEOUT_S:.0f} s after version {version} was published"
                )
            await asyncio.sleep(_SYNC_POLL_S)


POLICY_VERSION_METRIC = "agensbus_router_policy_version"


def metric_values(metrics_url: str, name: str, timeout_s: float = 2.0) -> list[float] | None:
    """Every sample of the series ``name`` (any labels) on a Prometheus text endpoint;
    None when the endpoint cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    sample = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return [float(v) for v in sample.findall(text)]


def router_policy_version(metrics_url: str) -> int | None:
    """The lowest policy version the router serves across its tenants."""
    versions = metric_values(metrics_url, POLICY_VERSION_METRIC)
    return int(min(versions)) if versions else None
