"""``agensbus up`` keeps what it learned and heals: a second run on the same data directory
carries on from the first one's policy, a second ``up`` on a directory in use is refused,
and each service killed with SIGKILL mid-run is started again with nothing lost or counted
twice."""

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.demo.replay import Observed, Replay
from services.demo.stack import router_policy_version
from services.runtime.broker import broker_from_env
from services.sim.loader import load_scenario
from tests.e2e.conftest import Bus
from tests.e2e.support import (
    assert_backed_up_exactly_once,
    newest_snapshot,
    replay_with,
    run,
    small_scenario,
    until,
)
from tests.e2e.support_up import READY_TIMEOUT_S, Up, clean_env, cli, command_line, descendants

#: How long a killed service may take to be ready again (a 1 s delay, then its start).
HEAL_TIMEOUT_S = 90.0


def submit(env: dict[str, str], path: Path, ids: range) -> None:
    tasks = [
        {"task_id": f"t-{i}", "goal": "Extract the fixed release", "task_class": "C1"} for i in ids
    ]
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    done = cli(env, "submit", str(path))
    assert done.returncode == 0, done.stderr


def inspected(env: dict[str, str], bus: Bus, path: Path) -> dict[str, Any]:
    """What ``agensbus policy inspect --json`` shows of the newest snapshot on the bus."""
    path.write_text(newest_snapshot(bus).policy.model_dump_json())
    done = cli(env, "policy", "inspect", str(path), "--json", "--top", "0")
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def unversioned(summary: dict[str, Any]) -> dict[str, Any]:
    """An inspected summary without what differs between snapshots of the same policy."""
    return {k: v for k, v in summary.items() if k not in {"file", "version", "created_at"}}


def backed_up_to(bus: Bus, count: int, timeout_s: float = 90.0) -> None:
    """Wait until a policy snapshot on the bus has backed up ``count`` trajectories."""
    deadline = time.monotonic() + timeout_s
    while not (bus.records("policy") and newest_snapshot(bus).backed_up >= count):
        assert time.monotonic() < deadline, f"no snapshot backed up {count} in time"
        time.sleep(0.2)


def test_a_second_up_on_the_data_dir_carries_on_from_what_the_first_learned(
    tmp_path: Path,
) -> None:
    external = broker_from_env()
    prefix = f"up-{uuid.uuid4().hex[:8]}."
    data_dir = tmp_path / "data"
    args = ["--data-dir", str(data_dir), "--topic-prefix", prefix, "--workers", "1"]
    if external is not None:
        args += ["--kafka-bootstrap", external]
    env = clean_env(AGENSBUS_SNAPSHOT_INTERVAL_S="0.5")

    first = Up(args, env, tmp_path / "first.err")
    try:
        first.wait_for("ready:", READY_TIMEOUT_S)
        assert first.value("data directory") == str(data_dir)
        assert first.value("run directory") == str(data_dir / "logs")
        # The directory is in use: another up is refused at once, in one line.
        refused = cli(env, "up", *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == (
            f"Error: {data_dir} is in use by another agensbus up (pid {first.process.pid}); "
            "stop it, or give this one another --data-dir (or --ephemeral)\n"
        )
        bus = Bus(first.value("kafka"), prefix)
        client = clean_env(AGENSBUS_KAFKA_BOOTSTRAP=bus.bootstrap, AGENSBUS_TOPIC_PREFIX=prefix)
        submit(client, tmp_path / "tasks-1.jsonl", range(6))
        backed_up_to(bus, 6)
        learned = newest_snapshot(bus)
        before = inspected(client, bus, tmp_path / "before.json")
    except BaseException:
        first.kill()
        raise
    first.process.send_signal(signal.SIGINT)
    assert first.finish() == 0, first.output

    second = Up(args, env, tmp_path / "second.err")
    try:
        second.wait_for("ready:", READY_TIMEOUT_S)
        bus = Bus(second.value("kafka"), prefix)
        client = clean_env(AGENSBUS_KAFKA_BOOTSTRAP=bus.bootstrap, AGENSBUS_TOPIC_PREFIX=prefix)
        # Ready means caught up with the policy topic: the router serves the newest version,
        # the one of before the stop (or the learner's last one at its stop), and the
        # learned counts are all there.
        kept = newest_snapshot(bus)
        assert kept.version >= learned.version
        assert kept.backed_up == learned.backed_up
        assert router_policy_version(second.value("router")) == kept.version
        after = inspected(client, bus, tmp_path / "after.json")
        assert after["groups"] == before["groups"]
        assert unversioned(after["summary"]) == unversioned(before["summary"])
        # New work is learned on top: versions and counts go on from there.
        submit(client, tmp_path / "tasks-2.jsonl", range(6, 10))
        backed_up_to(bus, 10)
        grown = newest_snapshot(bus)
        assert grown.version > learned.version
        assert grown.backed_up == 10
        summary = inspected(client, bus, tmp_path / "grown.json")["summary"]
        assert summary["total_visits"] > before["summary"]["total_visits"]
    except BaseException:
        second.kill()
        raise
    second.process.send_signal(signal.SIGINT)
    assert second.finish() == 0, second.output


def completed_at_least(observed: Observed, count: int) -> Callable[[], bool]:
    return lambda: len(observed.completed) >= count


def service_pid(up: Up, name: str) -> int:
    """The pid of one of up's services, by its command line (one worker in these tests)."""
    args = {
        "router": ["router"],
        "worker-1": ["worker"],
        "judge": ["worker", "--role", "judge"],
        "learner": ["learner"],
    }[name]
    (pid,) = [
        pid
        for pid in descendants(up.process.pid)
        if command_line(pid)[-len(args) :] == args and "services.cli" in command_line(pid)
    ]
    return pid


def test_up_restarts_each_service_killed_mid_run_and_nothing_is_lost_or_doubled(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    prefix = f"up-{uuid.uuid4().hex[:8]}."
    group = prefix.rstrip(".")
    scenario = small_scenario(tmp_path, per_class=2)
    env = clean_env(
        # Steps sleep a twentieth of their simulated latency, so work is always in flight.
        AGENSBUS_SIM_TIME_SCALE="0.05",
        AGENSBUS_SNAPSHOT_INTERVAL_S="0.2",
        **{
            f"AGENSBUS_{role.upper()}_GROUP": f"{group}.{role}"
            for role in ("router", "worker", "judge", "learner")
        },
    )
    args = ["--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--workers", "1"]
    args += ["--data-dir", str(tmp_path / "data"), "--scenario", str(scenario)]
    up = Up(args, env, tmp_path / "up.err")
    bus = Bus(kafka_bootstrap, prefix)
    killed: dict[str, tuple[int, int]] = {}

    def up_runs() -> None:
        assert up.process.poll() is None, up.output

    async def kill_each_in_turn(observed: Observed) -> None:
        for turn, name in enumerate(("router", "worker-1", "judge", "learner")):
            # Some progress between kills, so that each one lands while tasks are running.
            await until(completed_at_least(observed, 4 + 8 * turn), timeout_s=90.0)
            pid = service_pid(up, name)
            os.kill(pid, signal.SIGKILL)
            killed[name] = (pid, len(observed.completed))
            await asyncio.to_thread(up.wait_for, f"{name:<16}ready again", HEAL_TIMEOUT_S)

    try:
        up.wait_for("ready:", READY_TIMEOUT_S)
        replay = Replay(
            settings=bus.settings,
            scenario=load_scenario(scenario),
            seed=0,
            concurrency=8,
            stall_s=60.0,
            check=up_runs,
        )
        observed = run(replay_with(replay, range(1, 4), kill_each_in_turn), timeout_s=300.0)
    except BaseException:
        up.kill()
        raise

    assert len(killed) == 4
    assert all(completed < 48 for _, completed in killed.values()), killed
    for name, (pid, _) in killed.items():
        assert f"{name:<16}stopped (killed by SIGKILL)" in "\n".join(up.lines), up.output
        assert service_pid(up, name) != pid
    assert len(observed.learned) == 48
    assert_backed_up_exactly_once(bus, 48)
    up.process.send_signal(signal.SIGTERM)
    assert up.finish() == 0, up.output


def test_up_restarts_its_broker_killed_under_the_services(tmp_path: Path) -> None:
    prefix = f"up-{uuid.uuid4().hex[:8]}."
    args = ["--data-dir", str(tmp_path / "data"), "--topic-prefix", prefix, "--workers", "1"]
    up = Up(args, clean_env(AGENSBUS_SNAPSHOT_INTERVAL_S="0.5"), tmp_path / "up.err")
    try:
        up.wait_for("ready:", READY_TIMEOUT_S)
        bus = Bus(up.value("kafka"), prefix)
        client = clean_env(AGENSBUS_KAFKA_BOOTSTRAP=bus.bootstrap, AGENSBUS_TOPIC_PREFIX=prefix)
        submit(client, tmp_path / "tasks-1.jsonl", range(2))
        backed_up_to(bus, 2)
        (jvm,) = [p for p in descendants(up.process.pid) if "kafka.Kafka" in command_line(p)]
        os.kill(jvm, signal.SIGKILL)
        up.wait_for(f"{'kafka':<16}serving again at {bus.bootstrap}", READY_TIMEOUT_S)
        # The services carry on with the restarted broker: new work is done and learned.
        submit(client, tmp_path / "tasks-2.jsonl", range(2, 4))
        backed_up_to(bus, 4)
        assert_backed_up_exactly_once(bus, 4)
    except BaseException:
        up.kill()
        raise
    up.process.send_signal(signal.SIGTERM)
    assert up.finish() == 0, up.output
    assert f"{'kafka':<16}stopped; restarting it on the same data and ports" in up.lines
