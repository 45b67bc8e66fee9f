"""Observing a running deployment as an operator does: every service's first scrape has each
counter at 0, every service's /metrics passes ``promtool check metrics`` after real traffic,
a real Prometheus server scrapes them, every /readyz names its Kafka checks; and a worker
stopped with SIGTERM mid-run exits 0 within its graceful bound without losing any work."""

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from services.demo.replay import Observed, Replay
from services.runtime._ports import free_ports
from services.runtime.processes import HOST, first_exited
from tests.e2e.support import (
    assert_backed_up_exactly_once,
    deployment,
    replay_with,
    run,
    small_scenario,
    total,
    until,
    wait_for,
    worker_in_flight,
)
from tests.e2e.support_up import SERVICES, Up, clean_env, cli, get
from tests.support_metrics import JUDGE_MODEL_FAMILIES, not_started_at_zero

READY_TIMEOUT_S = 120.0
#: Bounds each wait on the deployment: traffic to flow, Prometheus to scrape.
WAIT_S = 60.0
TASKS = 4


def tool(name: str) -> str:
    """A binary of Debian's prometheus package; .ci/run installs the package."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y prometheus")
    return path


@contextmanager
def prometheus(targets: dict[str, list[str]], directory: Path) -> Iterator[str]:
    """A Prometheus server scraping ``targets`` (service label -> host:port) every second;
    yields the base URL of its HTTP API."""
    (port,) = free_ports(1, HOST)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "agensbus",
                "static_configs": [
                    {"targets": hosts, "labels": {"service": service}}
                    for service, hosts in targets.items()
                ],
            }
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={HOST}:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://{HOST}:{port}"
    except BaseException:
        print(log.read_text()[-4000:])
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def query(api: str, expr: str) -> list[float]:
    """The values of an instant query's vector result; empty if the server is not up yet."""
    try:
        status, body = get(f"{api}/api/v1/query?query={urllib.parse.quote(expr)}")
    except urllib.error.URLError:  # not listening yet
        return []
    if status != 200:
        return []
    return [float(item["value"][1]) for item in json.loads(body)["data"]["result"]]


def test_every_service_exports_valid_metrics_that_prometheus_scrapes(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    promtool = tool("promtool")
    prefix = f"obs-{uuid.uuid4().hex[:8]}."
    group = prefix.rstrip(".")
    env = clean_env(
        AGENSBUS_SNAPSHOT_INTERVAL_S="0.5",
        AGENSBUS_JUDGE_WINDOW_MS="50",
        **{
            f"AGENSBUS_{role.upper()}_GROUP": f"{group}.{role}"
            for role in ("router", "worker", "judge", "learner")
        },
    )
    args = ["--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    up = Up([*args, "--run-dir", str(tmp_path / "run")], env, tmp_path / "up.err")
    try:
        up.wait_for("ready:", READY_TIMEOUT_S)
        urls = {name: up.value(name) for name in SERVICES}

        for name, url in urls.items():
            # Before any traffic, over HTTP from the running processes: rate() and the
            # alerts see a first event only on a series that already existed.
            status, body = get(url)
            assert status == 200
            assert not_started_at_zero(body, JUDGE_MODEL_FAMILIES) == [], name
            status, body = get(url.removesuffix("metrics") + "readyz")
            checks = json.loads(body)["checks"]
            assert status == 200, body
            assert checks["kafka"] == {"ok": True, "detail": "the broker answers"}
            assert checks["topics"] == {"ok": True, "detail": "all 7 present"}
            if name.startswith("worker"):
                assert checks["backend"]["ok"] and "simulated" in checks["backend"]["detail"]

        tasks = tmp_path / "tasks.jsonl"
        lines = [
            {"task_id": f"obs-{n}", "goal": "Extract the fixed release", "task_class": f"C{n + 1}"}
            for n in range(TASKS)
        ]
        tasks.write_text("".join(json.dumps(line) + "\n" for line in lines))
        bus = clean_env(AGENSBUS_KAFKA_BOOTSTRAP=kafka_bootstrap, AGENSBUS_TOPIC_PREFIX=prefix)
        submitted = cli(bus, "submit", str(tasks))
        assert submitted.returncode == 0, submitted.stderr

        router, learner = urls["router"], urls["learner"]
        completed = "agensbus_router_trajectories_completed_total"
        wait_for(lambda: total(router, completed) == TASKS, "every trajectory to complete")
        wait_for(
            lambda: total(learner, "agensbus_learner_backups_total") == TASKS,
            "every trajectory to be backed up",
        )

        for name, url in urls.items():
            status, body = get(url)
            assert status == 200
            checked = subprocess.run(
                [promtool, "check", "metrics"],
                input=body,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), name

        targets: dict[str, list[str]] = {}
        for name, service in SERVICES.items():
            targets.setdefault(service, []).append(urls[name].split("/")[2])
        with prometheus(targets, tmp_path) as api:
            wait_for(
                lambda: sum(query(api, "up")) == len(SERVICES), "Prometheus to scrape every target"
            )
            wait_for(
                lambda: sum(query(api, "agensbus_router_decisions_total")) > 0,
                "Prometheus to return decisions",
                timeout_s=30,
            )
            decided = sum(query(api, "agensbus_router_decisions_total"))
            assert decided == total(router, "agensbus_router_decisions_total")
    except BaseException:
        up.kill()
        raise

    up.process.terminate()
    assert up.finish() == 0, up.output


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_scenario(tmp_path_factory.mktemp("scenario"), per_class=2)


#: How long a worker may drain on SIGTERM, and what its exit may take beyond that (closing
#: the Kafka clients, leaving the group).
GRACEFUL_TIMEOUT_S = 0.5
EXIT_MARGIN_S = 5.0


def test_a_worker_stopped_with_sigterm_mid_run_exits_0_and_loses_nothing(
    kafka_bootstrap: str, scenario_file: Path, tmp_path: Path
) -> None:
    # Steps sleep a tenth of their simulated latency (0.1-2 s): the worker has work in
    # flight when stopped, and some of it outlasts the graceful bound.
    with deployment(
        kafka_bootstrap,
        scenario_file,
        tmp_path,
        sim_time_scale=0.1,
        extra_env={"AGENSBUS_GRACEFUL_TIMEOUT_S": str(GRACEFUL_TIMEOUT_S)},
    ) as deployed:
        stack = deployed.stack
        victim = stack.services["worker-1"]
        others = [p for name, p in stack.services.items() if name != victim.name]
        stopped: list[tuple[int, float, int | None]] = []

        def check() -> None:
            dead = first_exited(others)
            if dead is not None:
                raise dead.failure(f"{dead.name} exited during the run")

        replay = Replay(
            settings=deployed.settings,
            scenario=deployed.scenario,
            seed=0,
            concurrency=8,
            stall_s=60.0,
            sync_router=stack.sync_router,
            check=check,
        )

        async def stop_a_worker(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 4)
            while (busy := await asyncio.to_thread(worker_in_flight, victim.metrics_url)) < 1:
                await asyncio.sleep(0.02)
            began = time.monotonic()
            victim.terminate()
            code = await asyncio.to_thread(victim.wait, GRACEFUL_TIMEOUT_S + 30, kill_after=True)
            stopped.append((busy, time.monotonic() - began, code))

        observed = run(replay_with(replay, range(1, 2), stop_a_worker))
        ((busy, took, code),) = stopped
        assert busy >= 1
        assert code == 0, victim.log_tail(60)
        assert took < GRACEFUL_TIMEOUT_S + EXIT_MARGIN_S, victim.log_tail(60)
        # What the stopped worker did not finish went back to the group and was redone.
        assert len(observed.completed) == 16
        assert_backed_up_exactly_once(deployed.bus, 16)
