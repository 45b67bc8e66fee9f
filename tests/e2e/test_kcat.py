"""Integrating from any pipeline: a task written as plain JSON by kcat (librdkafka, no agensbus
code) is routed, and its decisions are read back with kcat, CloudEvents headers included.

The commands are the ones the README shows; scripts/setup.sh installs Debian's kcat.
"""

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

from schemas.events import Decision, TrajectoryCompleted
from services.runtime.processes import ServiceProcess, ServiceSpec, start_all, stop_all
from tests.e2e.conftest import Bus
from tests.system_tools import system_tool

READY_TIMEOUT_S = 90.0
ROUTED_TIMEOUT_S = 60.0


def kcat(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [system_tool("kcat"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_back(bus: Bus, name: str) -> list[tuple[str, str]]:
    """(key, value) of every record on a topic: ``-e`` exits at the end of all partitions."""
    topic = bus.topic(name)
    out = kcat(
        "-C", "-b", bus.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", r"%k %s\n"
    )
    return [(key, value) for key, _, value in (line.partition(" ") for line in out.splitlines())]


def read_headers(bus: Bus, name: str) -> list[tuple[dict[str, str], str]]:
    """(headers, value) of every record on a topic; kcat prints headers as name=value,..."""
    out = kcat(
        "-C", "-b", bus.bootstrap, "-t", bus.topic(name), "-o", "beginning", "-e", "-q",
        "-f", r"%h\t%s\n",
    )  # fmt: skip
    records = []
    for line in out.splitlines():
        headers, _, value = line.partition("\t")
        records.append((dict(h.split("=", 1) for h in headers.split(",")), value))
    return records


def test_a_task_published_by_kcat_is_routed_and_read_back_with_kcat(
    bus: Bus, tmp_path: Path
) -> None:
    services = [
        ServiceProcess(ServiceSpec(name, (name,), bus.env), tmp_path)
        for name in ("router", "worker")
    ]
    try:
        start_all(services)
        for service in services:
            service.wait_ready(READY_TIMEOUT_S)
        task = {
            "task_id": "kcat-1",
            "goal": "Which releases fix the advisory?",
            "task_class": "C1",
            "features": {"evidence_availability": 0.85, "verification_need": 0.3},
        }
        tasks = bus.topic("tasks")
        kcat("-P", "-b", bus.bootstrap, "-t", tasks, "-k", "kcat-1", stdin=json.dumps(task) + "\n")

        deadline = time.monotonic() + ROUTED_TIMEOUT_S
        while not (completed := [v for k, v in read_back(bus, "trajectories") if k == "kcat-1"]):
            for service in services:
                assert service.running, service.failure(f"{service.name} exited").args[0]
            assert time.monotonic() < deadline, "kcat-1 did not complete in time"
            time.sleep(0.5)
        (trajectory,) = [TrajectoryCompleted.model_validate_json(v) for v in completed]
        decisions = [Decision.model_validate_json(v) for _, v in read_back(bus, "decisions")]
        headed = read_headers(bus, "decisions") + read_headers(bus, "trajectories")
    finally:
        stop_all(services)

    assert trajectory.task_id == "kcat-1"
    assert trajectory.task_class == "C1"
    assert trajectory.steps > 0
    # Every step of the trajectory was decided once, in order, keyed by its trajectory.
    assert {d.trajectory_id for d in decisions} == {"kcat-1"}
    assert sorted(d.step for d in decisions) == list(range(trajectory.steps))
    assert [d.decision_id for d in sorted(decisions, key=lambda d: d.step)] == [
        f"kcat-1:{step}" for step in range(trajectory.steps)
    ]
    # Every event says what it is in its headers, from its own fields (binary-mode
    # CloudEvents over Kafka), read with kcat's %h.
    assert len(headed) == len(decisions) + 1
    for headers, value in headed:
        event = json.loads(value)
        assert headers["content-type"] == "application/json"
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == f"agensbus.{event['event_type']}"
        assert headers["ce_source"] == "agensbus/router"
        assert headers["ce_id"] == event["event_id"]
        assert datetime.fromisoformat(headers["ce_time"]) == datetime.fromisoformat(
            event["produced_at"]
        )
    # Both services stopped on SIGTERM with exit code 0.
    assert [s.returncode for s in services] == [0, 0]
