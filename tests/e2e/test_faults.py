"""Faults end to end: the router, two workers, the judge and the learner run as real child
processes on a real broker while the demo's replay driver submits tasks; a service is
killed, a duplicate or a broken message is injected, and the run must still account for
every task exactly once."""

import asyncio
import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from schemas.events import (
    DeadLetter,
    Decision,
)
from services.demo.replay import Observed
from services.demo.run import DemoConfig, run_demo
from services.demo.stack import metric_values
from services.runtime.settings import Settings
from services.sim.loader import load_scenario
from tests.e2e.conftest import Bus
from tests.e2e.support import (
    assert_backed_up_exactly_once,
    deployment,
    publish,
    replay_with,
    run,
    small_scenario,
    until,
    worker_in_flight,
)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_scenario(tmp_path_factory.mktemp("scenario"), per_class=2)


def backed_up(observed: Observed) -> int:
    return 0 if observed.snapshot is None else observed.snapshot.backed_up


def decisions_per_step(bus: Bus) -> Counter[tuple[str, int]]:
    decisions = [Decision.model_validate_json(r.value) for r in bus.records("decisions")]
    return Counter((d.trajectory_id, d.step) for d in decisions)


def test_a_demo_run_accounts_for_every_task(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    config = DemoConfig(
        scenario=str(scenario_file),
        out=tmp_path / "report",
        epochs=2,
        arms=("paper",),
        concurrency=8,
        settings=Settings(kafka_bootstrap=kafka_bootstrap),
    )
    result = run_demo(config, load_scenario(scenario_file))
    (arm,) = result.arms
    assert arm.submitted == 2 * 16
    assert arm.completed == arm.rewarded == arm.backed_up == arm.submitted
    assert arm.repeated_completions == 0
    bus = Bus(kafka_bootstrap, config.prefix("paper"))
    assert_backed_up_exactly_once(bus, arm.submitted)
    assert max(decisions_per_step(bus).values()) == 1


def test_a_learner_killed_mid_run_loses_and_doubles_nothing(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    # Snapshots only every 5 backups (or 2 s): the learner dies holding backups that no
    # snapshot has, and its successor must redo exactly those from the snapshot's offsets.
    with deployment(
        kafka_bootstrap, scenario_file, tmp_path, snapshot_every=5, snapshot_interval_s=2.0
    ) as deployed:
        replay = deployed.replay(concurrency=8)
        learner = deployed.stack.services["learner"]
        at_kill: list[tuple[int, int]] = []

        async def crash_the_learner(observed: Observed) -> None:
            await until(lambda: observed.version >= 1)
            while True:
                held = await asyncio.to_thread(counter, learner.metrics_url, "backups_total")
                if held > backed_up(observed):
                    break
                await asyncio.sleep(0.01)
            deployed.stack.kill("learner")
            at_kill.append((held, backed_up(observed)))
            await asyncio.sleep(1.0)
            successor = deployed.stack.restart("learner")
            await asyncio.to_thread(successor.wait_ready, 60.0)

        observed = run(replay_with(replay, range(1, 3), crash_the_learner))
        assert learner.returncode == -9
        ((held, snapshotted),) = at_kill
        assert held > snapshotted, "the learner must die with backups no snapshot holds"
        assert len(observed.learned) == 32
        assert_backed_up_exactly_once(deployed.bus, 32)


def counter(metrics_url: str, name: str) -> int:
    return int(sum(metric_values(metrics_url, f"agensbus_learner_{name}") or [0.0]))


def test_work_of_a_killed_worker_is_redone_by_the_other(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    # Simulated steps sleep a twentieth of their latency (0.05-1 s), so a worker always has
    # decisions in flight.
    with deployment(kafka_bootstrap, scenario_file, tmp_path, sim_time_scale=0.05) as deployed:
        replay = deployed.replay(concurrency=8)
        victim = deployed.stack.services["worker-1"]
        in_flight_at_kill = []

        async def crash_a_worker(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 4)
            while (busy := await asyncio.to_thread(worker_in_flight, victim.metrics_url)) < 1:
                await asyncio.sleep(0.02)
            deployed.stack.kill("worker-1")
            in_flight_at_kill.append(busy)

        observed = run(replay_with(replay, range(1, 2), crash_a_worker))
        assert in_flight_at_kill and in_flight_at_kill[0] >= 1
        assert victim.returncode == -9
        # The killed worker's uncommitted decisions went back to the group: without them
        # the trajectories waiting on their outcomes would never have completed.
        assert len(observed.completed) == 16
        assert_backed_up_exactly_once(deployed.bus, 16)
        assert max(decisions_per_step(deployed.bus).values()) == 1


def test_a_duplicate_outcome_does_not_fork_a_trajectory(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    with deployment(kafka_bootstrap, scenario_file, tmp_path) as deployed:
        replay = deployed.replay(concurrency=8)
        injected = []

        async def duplicate_outcomes(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 3)
            outcomes = await asyncio.to_thread(deployed.bus.records, "outcomes")
            await publish(deployed, "outcomes", [(r.key, r.value) for r in outcomes])
            injected.append(len(outcomes))

        observed = run(replay_with(replay, range(1, 2), duplicate_outcomes))
        router = deployed.stack.services["router"]
        dropped = metric_values(router.metrics_url, "agensbus_router_duplicate_outcomes_total")
        assert injected and injected[0] > 0
        assert dropped == [float(injected[0])]
        assert observed.repeated_completions == 0
        per_step = decisions_per_step(deployed.bus)
        assert max(per_step.values()) == 1
        # Every decision belongs to a trajectory as it completed: nothing ran on a fork.
        visited = {
            (c.trajectory_id, e.step) for c in observed.completed.values() for e in c.state.visited
        }
        assert set(per_step) == visited


def test_broken_messages_are_dead_lettered_and_the_run_goes_on(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    malformed = b'{"event_type": "TaskSubmitted", "task_id": '
    invalid = json.dumps({"event_type": "TaskSubmitted", "task_id": "x", "goal": ""}).encode()
    with deployment(kafka_bootstrap, scenario_file, tmp_path) as deployed:
        replay = deployed.replay(concurrency=8)

        async def inject(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 2)
            broken = [(b"broken-1", malformed), (b"broken-2", invalid)]
            for topic in INPUTS:
                await publish(deployed, topic, broken)

        observed = run(replay_with(replay, range(1, 2), inject))
        assert len(observed.learned) == 16
        letters = [DeadLetter.model_validate_json(r.value) for r in deployed.bus.records("dlq")]
    found = {
        (letter.source_topic.removeprefix(deployed.settings.topic_prefix), letter.error_type)
        for letter in letters
    }
    expected = {(topic, kind) for topic in INPUTS for kind in KINDS}
    assert expected <= found, letters
    for letter in letters:
        assert letter.reason
        assert base64.b64decode(letter.payload_b64) in (malformed, invalid)


KINDS = ("malformed_json", "schema_invalid")
#: Every topic a service consumes (the policy topic's reader is the router, tested apart).
INPUTS = ("tasks", "decisions", "outcomes", "trajectories", "rewards")
