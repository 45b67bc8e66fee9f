"""``agensbus up`` as a user runs it: the broker and every service as OS processes, work
submitted and watched through the CLI, and a clean stop that leaves nothing behind."""

import json
import signal
import uuid
from pathlib import Path

import pytest

from schemas.events import PolicySnapshot, RewardObserved, TrajectoryCompleted
from services.runtime.broker import broker_from_env
from tests.e2e.support_up import (
    READY_TIMEOUT_S,
    SERVICES,
    Up,
    alive,
    clean_env,
    cli,
    descendants,
    get,
)


def tail_one(env: dict[str, str], topic: str) -> str:
    done = cli(env, "tail", topic, "--from-beginning", "--max", "1", "--timeout", "60", "--json")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_up_runs_the_loop_and_stops_cleanly(tmp_path: Path) -> None:
    # Its own embedded broker, as a user gets it; an external cluster when the suite has one.
    external = broker_from_env()
    prefix = f"up-{uuid.uuid4().hex[:8]}."
    args = ["--ephemeral", "--run-dir", str(tmp_path / "run"), "--topic-prefix", prefix]
    if external is not None:
        args += ["--kafka-bootstrap", external]
    # Any AGENSBUS_* variable reaches every service: snapshots come sooner than by default.
    up = Up(args, clean_env(AGENSBUS_SNAPSHOT_INTERVAL_S="0.5"), tmp_path / "up.err")
    try:
        up.wait_for("ready:", READY_TIMEOUT_S)
        bootstrap = up.value("kafka")
        assert up.value("run directory") == str(tmp_path / "run")
        children = descendants(up.process.pid)

        # Every service answers /metrics over HTTP and is ready.
        for name, service in SERVICES.items():
            url = up.value(name)
            assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
            status, metrics = get(url)
            assert status == 200
            assert f'agensbus_build_info{{service="{service}"' in metrics
            status, body = get(url.removesuffix("metrics") + "readyz")
            assert (status, json.loads(body)["ready"]) == (200, True), body

        # A task submitted with the CLI goes round the whole loop.
        env = clean_env(AGENSBUS_KAFKA_BOOTSTRAP=bootstrap, AGENSBUS_TOPIC_PREFIX=prefix)
        tasks = tmp_path / "tasks.jsonl"
        task = {"task_id": "up-1", "goal": "Extract the fixed release", "task_class": "C1"}
        tasks.write_text(json.dumps(task) + "\n")
        submitted = cli(env, "submit", str(tasks))
        assert submitted.returncode == 0, submitted.stderr
        completed = TrajectoryCompleted.model_validate_json(tail_one(env, "trajectories"))
        assert (completed.task_id, completed.task_class) == ("up-1", "C1")
        assert RewardObserved.model_validate_json(tail_one(env, "rewards")).task_id == "up-1"
        snapshot = PolicySnapshot.model_validate_json(tail_one(env, "policy"))
        assert snapshot.backed_up == 1
    except BaseException:
        up.kill()
        raise

    up.process.send_signal(signal.SIGTERM)
    code = up.finish()

    assert code == 0, up.output
    assert up.lines[-1] == "stopped", up.output
    for name in SERVICES:
        assert f"{name:<16}exit code 0" in up.lines, up.output
    # Nothing is left: not a service, not the broker.
    assert len(children) >= len(SERVICES)
    assert [pid for pid in children if alive(pid)] == []
    logs = {path.name for path in (tmp_path / "run").iterdir()}
    expected = {f"{name}.log" for name in SERVICES} | (set() if external else {"kafka.log"})
    assert logs == expected


@pytest.mark.parametrize("command", [["router"], ["worker", "--role", "judge"], ["learner"]])
def test_a_service_without_a_bootstrap_says_so_and_exits_2(command: list[str]) -> None:
    done = cli(clean_env(), *command)

    assert done.returncode == 2
    assert done.stderr.startswith("Error: no Kafka bootstrap: set AGENSBUS_KAFKA_BOOTSTRAP")
    assert len(done.stderr.splitlines()) == 1
