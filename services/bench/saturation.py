"""``agensbus bench router --saturation``: how fast a backlog drains, next to the bus's limit,
and the decision latency at a fixed offered load, on one broker in one run.

* **raw echo**: aiokafka alone consumes each record and re-publishes it (the bus's limit).
* **faststream echo**: the same through FastStream's batch subscriber and ``publish``.
* **router**: the router in this process drains a backlog of tasks (all of them in flight
  at once) against the fake instant worker; decisions/s.
* **router at load**: tasks offered at a fixed rate, a fraction of the drained one, whatever
  the answers: the decision latency of a router that keeps up.
* **two routers**: two router processes in one consumer group drain the same backlog.

Every run has topics (and consumer groups) of its own, so none reads what another left.
"""

import asyncio
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from services.bench.router import (
    ECHO_RECORDS_PER_TASK,
    Measured,
    Pace,
    Progress,
    bench_broker,
    bench_settings,
    create_topics,
    measure_echo,
    measure_router,
)
from services.runtime.settings import Settings

#: The offered load of the latency run, as a share of the rate the router drained at.
LOAD_SHARE = 0.5
#: The latency run offers this share of the backlog's tasks (it runs at a fraction of the
#: drained rate, so a full backlog would take that much longer).
LOAD_TASKS_SHARE = 0.25
#: Router replicas of the scale-out run.
REPLICAS = 2


@dataclass(frozen=True)
class SaturationResult:
    bootstrap: str
    embedded: bool
    tasks: int
    raw_echo: Measured
    faststream_echo: Measured
    router: Measured
    offered_tasks_per_s: float
    at_load: Measured
    two_routers: Measured
    timed_out: bool

    @property
    def ratio(self) -> float:
        """Router decisions/s over raw-echo records/s: how much of the bus the router uses."""
        return _ratio(self.router, self.raw_echo)

    @property
    def faststream_ratio(self) -> float:
        return _ratio(self.faststream_echo, self.raw_echo)

    @property
    def scale_out(self) -> float:
        """Two routers' decisions/s over one router's."""
        return _ratio(self.two_routers, self.router)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("raw_echo", "faststream_echo", "router", "at_load", "two_routers"):
            data[name]["per_s"] = getattr(self, name).per_s
        data |= {
            "ratio": self.ratio,
            "faststream_ratio": self.faststream_ratio,
            "scale_out": self.scale_out,
        }
        return data


def _ratio(part: Measured, whole: Measured) -> float:
    return part.per_s / whole.per_s if whole.per_s > 0 else 0.0


def offered_tasks_per_s(drained: Measured, trajectories: int, share: float) -> float:
    """Tasks per second that offer ``share`` of the decisions/s ``drained`` measured: its
    decisions per trajectory tell how many decisions a task brings."""
    if drained.items == 0 or trajectories == 0:
        return 0.0
    return share * drained.per_s * trajectories / drained.items


def load_tasks(tasks: int) -> int:
    return max(1, round(tasks * LOAD_TASKS_SHARE))


def _fresh(settings: Settings, run: str) -> Settings:
    """``settings`` with topics and a router group of the run's own."""
    return settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}{run}.",
            "router_group": f"{settings.topic_prefix}{run}.router",
        }
    )


async def _saturate(
    settings: Settings, tasks: int, timeout_s: float, progress: Progress
) -> SaturationResult:
    deadline = time.monotonic() + timeout_s
    cut = False

    async def ready(run: str) -> Settings:
        fresh = _fresh(settings, run)
        progress(f"{run}: creating topics")
        await create_topics(fresh, deadline)
        return fresh

    records = tasks * ECHO_RECORDS_PER_TASK
    echoes: list[Measured] = []
    for name in ("raw echo", "faststream echo"):
        run = await ready(name.replace(" ", "-"))
        echo, echoed = await measure_echo(
            run, records, Pace(records), deadline, progress, name=name
        )
        echoes.append(echo)
        cut |= echoed < records
    router, routed = await measure_router(
        await ready("router"), tasks, Pace(tasks), deadline, progress
    )
    cut |= routed < tasks
    rate = offered_tasks_per_s(router, routed, LOAD_SHARE)
    offered = load_tasks(tasks)
    at_load, loaded = await measure_router(
        await ready("at-load"), offered, Pace(offered, per_s=rate), deadline, progress
    )
    cut |= loaded < offered
    two, routed_by_two = await measure_router(
        await ready("two-routers"), tasks, Pace(tasks), deadline, progress, replicas=REPLICAS
    )
    cut |= routed_by_two < tasks
    return SaturationResult(
        bootstrap=settings.kafka_bootstrap or "",
        embedded=False,
        tasks=tasks,
        raw_echo=echoes[0],
        faststream_echo=echoes[1],
        router=router,
        offered_tasks_per_s=rate,
        at_load=at_load,
        two_routers=two,
        timed_out=cut,
    )


def run_saturation_bench(
    settings: Settings,
    *,
    tasks: int,
    timeout_s: float,
    progress: Progress = lambda _stage: None,
) -> SaturationResult:
    """Every run of the module's docstring on the broker of ``settings`` (an embedded one
    when it names none), under a fresh topic prefix; all stop at ``timeout_s`` overall."""
    with bench_broker(settings) as (bootstrap, embedded):
        progress("starting" if embedded else f"connecting to {bootstrap}")
        run = bench_settings(settings, bootstrap)
        result = asyncio.run(_saturate(run, tasks, timeout_s, progress))
    return replace(result, embedded=embedded)
