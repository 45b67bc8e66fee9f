"""What the demo and fault tests share: a small scenario, a deployment (router, two workers,
judge, learner as child processes) per test on its own topic prefix, a bounded replay, and
what a run shows: the decisions a worker has in flight, and the check that every task was
backed up exactly once."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiokafka import AIOKafkaProducer

from schemas.events import PolicySnapshot, TrajectoryCompleted
from services.demo.replay import Observed, Replay
from services.demo.stack import Stack, StackConfig, metric_values
from services.policy import PolicyGraph
from services.runtime.kafka import aiokafka_options
from services.sim.loader import load_scenario, shipped_scenarios
from services.sim.scenario import Scenario
from tests.e2e.conftest import Bus

T = TypeVar("T")
SHIPPED = Path(__file__).parents[2] / "services" / "sim" / "scenarios"
#: The first bytes of every PNG file: a written plot is a real image.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Bounds every replay: a hung service fails its test instead of hanging the suite.
RUN_TIMEOUT_S = 150.0


def small_scenario(directory: Path, per_class: int = 2, name: str = "security-advisories") -> Path:
    """The shipped scenario with ``per_class`` tasks of each class per epoch."""
    assert name in shipped_scenarios()
    spec = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())
    for task_class in spec["classes"]:
        task_class["count"] = per_class
    path = directory / f"{name}-{per_class}-per-class.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = RUN_TIMEOUT_S) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


class Deployment:
    """A started stack, its topics (``bus``) and the scenario it runs."""

    def __init__(self, stack: Stack, bus: Bus, scenario: Scenario) -> None:
        self.stack = stack
        self.bus = bus
        self.settings = bus.settings
        self.scenario = scenario

    def replay(self, concurrency: int, seed: int = 0) -> Replay:
        return Replay(
            settings=self.settings,
            scenario=self.scenario,
            seed=seed,
            concurrency=concurrency,
            stall_s=60.0,
            sync_router=self.stack.sync_router,
            check=self.stack.check,
        )


@contextmanager
def deployment(
    bootstrap: str, scenario: Path, log_dir: Path, mode: str = "paper", **options: Any
) -> Iterator[Deployment]:
    prefix = f"agensbus.e2e.{uuid.uuid4().hex[:10]}."
    config = StackConfig(
        bootstrap=bootstrap,
        prefix=prefix,
        scenario=str(scenario),
        seed=0,
        policy_arm=mode,
        **options,
    )
    with Stack(config, log_dir) as stack:
        yield Deployment(stack, Bus(bootstrap, prefix), load_scenario(scenario))


async def replay_with(
    replay: Replay, epochs: range, during: Callable[[Observed], Awaitable[None]]
) -> Observed:
    """Run the replay while ``during`` acts on the deployment; both must finish."""
    running = asyncio.create_task(replay.run(epochs))
    while replay.follower is None:
        await asyncio.sleep(0.05)
    await during(replay.follower.observed)
    _, observed = await running
    return observed


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def newest_snapshot(bus: Bus) -> PolicySnapshot:
    records = bus.records("policy")
    snapshots = [PolicySnapshot.model_validate_json(r.value) for r in records]
    return max(snapshots, key=lambda s: s.version)


def assert_backed_up_exactly_once(bus: Bus, submitted: int, injected: Collection[str] = ()) -> None:
    """Every submitted task completed once and was rewarded, and the learner's final
    policy counts each rewarded trajectory once: its backups and its node visits.
    ``injected``: ids of trajectories and rewards a test wrote itself, left out."""
    completed = [
        TrajectoryCompleted.model_validate_json(r.value) for r in bus.records("trajectories")
    ]
    by_id = {c.trajectory_id: c for c in completed if c.trajectory_id not in injected}
    rewarded = {r.key for r in bus.records("rewards") if r.key.decode() not in injected}
    assert len(by_id) == submitted
    assert rewarded == {t.encode() for t in by_id}
    snapshot = newest_snapshot(bus)
    assert snapshot.backed_up == len(rewarded)
    graph = PolicyGraph.from_document(snapshot.policy)
    assert graph.total_node_visits == sum(
        node_visits(c, snapshot.policy.reward.node_visit_once) for c in by_id.values()
    )


def node_visits(completed: TrajectoryCompleted, once_per_signature: bool) -> int:
    """The node visits one trajectory's backup adds: one per step (paper mode), or one per
    signature it passed (``node_visit_once``, part of the default arm)."""
    visited = completed.state.visited
    return len({e.signature for e in visited}) if once_per_signature else len(visited)


def worker_in_flight(metrics_url: str) -> int:
    return int(sum(metric_values(metrics_url, "agensbus_worker_in_flight") or [0.0]))


async def publish(deployed: Deployment, name: str, items: list[tuple[bytes, bytes]]) -> None:
    async with AIOKafkaProducer(**aiokafka_options(deployed.settings)) as producer:
        for key, value in items:
            await producer.send_and_wait(deployed.settings.topic(name), value, key=key)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def total(url: str, name: str) -> float:
    return sum(metric_values(url, name) or [0.0])
