"""Cells of one's own on the real broker: the pipeline file examples/support_desk_pipeline.yaml,
whose cells exist in no shipped pipeline or scenario. Two cells are Python functions served by
``agensbus serve-cells``, one is served by a process that is no Python at all (the kcat + jq
loop of examples/kb_lookup.sh), the other two by the built-in simulated worker told to leave
those three alone. Tasks complete, rewards arrive, the learner backs every trajectory up
once, the router routes the second wave with what it learned, and ``agensbus policy
inspect`` shows the learned values of the cells of one's own."""

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from schemas.events import Decision, StepOutcome, TaskSubmitted, TrajectoryCompleted
from schemas.records import StepStatus
from services.demo.stack import router_policy_version
from services.runtime.processes import ServiceProcess, ServiceSpec, start_all, stop_all
from services.sim import load_scenario
from tests.e2e.conftest import Agensbus, Bus
from tests.e2e.support import assert_backed_up_exactly_once, newest_snapshot
from tests.system_tools import system_tool

EXAMPLES = Path(__file__).parents[2] / "examples"
PIPELINE = EXAMPLES / "support_desk_pipeline.yaml"
SCENARIO = EXAMPLES / "support_desk.yaml"
OWN_PYTHON = {"drafter", "reviewer"}
OWN_SHELL = {"kb_lookup"}
READY_TIMEOUT_S = 90.0
WAVE_TIMEOUT_S = 120.0
TASKS_PER_WAVE = 6


@contextmanager
def shell_cell(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """examples/kb_lookup.sh running in a process group of its own."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", str(EXAMPLES / "kb_lookup.sh")],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def tasks(wave: int) -> list[TaskSubmitted]:
    scenario = load_scenario(str(SCENARIO))
    classes = list(scenario.classes.values())
    return [
        TaskSubmitted(
            task_id=f"desk-{wave}-{i}",
            goal=classes[i % len(classes)].description,
            task_class=classes[i % len(classes)].name,
            features=classes[i % len(classes)].features,
        )
        for i in range(TASKS_PER_WAVE)
    ]


def submit(agensbus: Agensbus, path: Path, wave: list[TaskSubmitted]) -> None:
    path.write_text("".join(t.model_dump_json() + "\n" for t in wave))
    done = agensbus("submit", str(path))
    assert done.returncode == 0, done.stderr


def wait_backed_up(bus: Bus, count: int, running: list[Any]) -> None:
    """Until the learner's newest snapshot backed up ``count`` trajectories."""
    deadline = time.monotonic() + WAVE_TIMEOUT_S
    while not (bus.records("policy") and newest_snapshot(bus).backed_up >= count):
        for process in running:
            if isinstance(process, ServiceProcess):
                assert process.running, process.failure(f"{process.name} exited").args[0]
            else:
                assert process.poll() is None, "the kcat + jq cell exited"
        assert time.monotonic() < deadline, f"{count} trajectories not backed up in time"
        time.sleep(0.5)


def test_cells_of_ones_own_in_python_and_shell_run_beside_simulated_ones_and_are_learned(
    bus: Bus, agensbus: Agensbus, tmp_path: Path
) -> None:
    for program in ("kcat", "jq"):  # the shell cell's: a missing one fails the test
        system_tool(program)
    env = {
        **bus.env,
        "AGENSBUS_PIPELINE": str(PIPELINE),
        # The simulated world of the cells the built-in worker serves, and of the judge.
        "AGENSBUS_SCENARIO": str(SCENARIO),
        # Paper mode: every visited edge is one node visit, which the backup check counts.
        "AGENSBUS_POLICY_ARM": "paper",
        "AGENSBUS_SNAPSHOT_EVERY": "1",
        "AGENSBUS_SNAPSHOT_INTERVAL_S": "0.2",
        "AGENSBUS_JUDGE_WINDOW_MS": "20",
    }
    own = ",".join(sorted(OWN_PYTHON | OWN_SHELL))
    specs = [
        ServiceSpec("router", ("router",), env),
        ServiceSpec("worker", ("worker",), {**env, "AGENSBUS_WORKER_CELLS_EXCEPT": own}),
        ServiceSpec("cells", ("serve-cells", str(EXAMPLES / "support_desk_cells.py")), env),
        ServiceSpec("judge", ("worker", "--role", "judge"), env),
        ServiceSpec("learner", ("learner",), env),
    ]
    services = [ServiceProcess(spec, tmp_path) for spec in specs]
    submitted = 2 * TASKS_PER_WAVE
    try:
        with shell_cell(env, tmp_path / "kb_lookup.log") as shell:
            start_all(services)
            for service in services:
                service.wait_ready(READY_TIMEOUT_S)
            submit(agensbus, tmp_path / "wave-1.jsonl", tasks(1))
            wait_backed_up(bus, TASKS_PER_WAVE, [*services, shell])
            learned = newest_snapshot(bus).version
            router = services[0]
            while (router_policy_version(router.metrics_url) or 0) < learned:
                assert router.running
                time.sleep(0.1)
            submit(agensbus, tmp_path / "wave-2.jsonl", tasks(2))
            wait_backed_up(bus, submitted, [*services, shell])
    finally:
        stop_all(services)

    assert [s.returncode for s in services] == [0] * len(services)
    assert_backed_up_exactly_once(bus, submitted)

    outcomes = [StepOutcome.model_validate_json(r.value) for r in bus.records("outcomes")]
    # Every invoke was answered once, by the one worker set that serves its cell.
    assert set(Counter((o.trajectory_id, o.step) for o in outcomes).values()) == {1}
    by_cell: dict[str, list[StepOutcome]] = {}
    for outcome in outcomes:
        by_cell.setdefault(outcome.cell, []).append(outcome)
    for outcome in by_cell["drafter"]:
        # The example's function: its answer, and the word counts it reports as tokens.
        assert outcome.delta.draft_answer is not None
        assert " from: " in outcome.delta.draft_answer
        assert outcome.tokens_out == len(outcome.delta.draft_answer.split())
    for outcome in by_cell["reviewer"]:
        assert outcome.delta.critique is not None
        assert outcome.delta.critique.startswith("The draft cites")
    for outcome in by_cell["kb_lookup"]:
        # jq's outcome: its evidence, the decision id as event id, the state echoed.
        assert outcome.delta.evidence[0].startswith("KB article on: ")
        assert outcome.event_id == outcome.decision_id
        assert outcome.state.pending is not None
        assert outcome.state.pending.cell == "kb_lookup"
    simulated = {c for c, o in by_cell.items() if all(_is_simulated(x) for x in o)}
    assert simulated == set(by_cell) - OWN_PYTHON - OWN_SHELL
    assert set(by_cell) >= OWN_PYTHON | OWN_SHELL

    # The second wave was routed with a policy learned from the first.
    decisions = [Decision.model_validate_json(r.value) for r in bus.records("decisions")]
    assert min(d.policy_version for d in decisions if d.task_id.startswith("desk-2-")) >= 1
    completed = [
        TrajectoryCompleted.model_validate_json(r.value) for r in bus.records("trajectories")
    ]
    ran = {e.action.split(".")[0].split("@")[0] for c in completed for e in c.state.visited}
    assert ran >= OWN_PYTHON | OWN_SHELL
    assert all(
        e.status is StepStatus.SUCCEEDED
        for c in completed
        for e in c.state.visited
        if e.action.split(".")[0] in OWN_PYTHON | OWN_SHELL
    )

    # policy inspect shows what was learned about the cells of one's own.
    policy = tmp_path / "learned.json"
    policy.write_text(newest_snapshot(bus).policy.model_dump_json())
    shown = agensbus("policy", "inspect", str(policy), "--json", "--top", "0")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["summary"]["total_visits"] > 0
    rows = [row for group in report["groups"] for row in group["actions"]]
    learned_cells = {row["action"].split(".")[0].split("@")[0] for row in rows if row["visits"]}
    assert learned_cells >= OWN_PYTHON | OWN_SHELL


def _is_simulated(outcome: StepOutcome) -> bool:
    delta = outcome.delta
    texts = [delta.subproblem, delta.draft_answer, delta.critique, delta.merged_answer]
    texts += list(delta.evidence)
    written = [t for t in texts if t]
    # The simulated world marks what it writes; an evaluator writes nothing, only done.
    return all("[simulated]" in t for t in written) and (bool(written) or outcome.done)
