"""The services with the openai backend, end to end through Kafka: router, workers, judge
and learner as child processes, every cell a chat completion against a scripted local
server (loopback, in a thread of this process with its own event loop, so that the
services' requests are answered while this thread waits on them).

The server answers by what was asked: the role is in the structured-output schema's name
(``<role>_output``), the judge's group scores in ``judge_scores``. A second local server
plays a SearxNG instance for web_search cells that search before a model reads the hits.
Cells served by a tool rather than a model (memory over a document index) spend no tokens,
so token and cost checks count the model requests the server actually answered."""

import asyncio
import json
import os
import subprocess
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    ActionKind,
    Decision,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    Termination,
    TrajectoryCompleted,
)
from schemas.records import Axis, StepStatus, Verdict
from services.demo.live_report import PLOTS as LIVE_PLOTS
from services.policy.rubric import overall_score
from services.runtime.codec import decode
from services.runtime.processes import agensbus_command
from services.sim.corpus import corpus_for
from services.sim.loader import load_scenario
from services.worker.openai.testing import Reply, Request, ScriptedServer, completion
from tests.e2e.conftest import Bus
from tests.e2e.support import PNG_MAGIC, deployment, run

TOKENS_IN, TOKENS_OUT = 40, 10
PRICE_IN, PRICE_OUT = 0.5, 1.5  # USD per 1000 tokens
STEP_COST = (TOKENS_IN * PRICE_IN + TOKENS_OUT * PRICE_OUT) / 1000
DEMO_TIMEOUT_S = 300.0

#: What each role answers: every field a cell writes into the handoff is recognisable.
ANSWERS: dict[str, dict[str, Any]] = {
    "planner": {"subproblem": "1. find the advisory 2. read its fixed releases"},
    "memory": {"evidence": ["QSA-2025-0003: fixed in 4.1.3 and 3.9.5"]},
    "web_search": {"evidence": ["vendor page: 4.1.3 released 2025-02-04"]},
    "solver": {"draft_answer": "Fixed in 4.1.3."},
    "critic": {"critique": "The draft leaves out the 3.9 LTS line."},
    "verifier": {"verdict": "partially_supported", "rationale": "The LTS fix is missing."},
    "synthesizer": {"merged_answer": "Fixed in 4.1.3 and, on the LTS line, 3.9.5."},
    "evaluator": {"done": True, "final_answer": "Final: 4.1.3, and 3.9.5 on the LTS line."},
}
JUDGE_AXES = {"goal_achievement": 0.8, "grounding": 0.7, "coordination": 0.9, "recovery": 0.6}

EVERY_CELL_PIPELINE = """\
name: every-cell
description: A plan that runs every cell kind.
cells:
  - {name: planner, role: planner}
  - {name: memory, role: memory}
  - {name: web_search, role: web_search}
  - name: solver
    role: solver
    variants:
      - {protocol: evidence_first, model: small}
      - {protocol: concise, model: small}
  - {name: critic, role: critic}
  - {name: verifier, role: verifier}
  - {name: synthesizer, role: synthesizer}
  - {name: evaluator, role: evaluator}
plan: [planner, memory, web_search, solver, critic, verifier, synthesizer, evaluator]
"""

EVERY_CELL = """\
name: every-cell
description: One class whose plan runs every cell kind, for the openai backend end to end.
pipeline: every-cell-pipeline.yaml
defaults:
  planner: {tokens_in: 100, tokens_out: 50}
  memory: {tokens_in: 100, tokens_out: 50}
  web_search: {tokens_in: 100, tokens_out: 50}
  solver: {tokens_in: 100, tokens_out: 50}
  critic: {tokens_in: 100, tokens_out: 50}
  verifier: {tokens_in: 100, tokens_out: 50}
  synthesizer: {tokens_in: 100, tokens_out: 50}
  evaluator: {tokens_in: 100, tokens_out: 50}
evidence: {memory: 2, web_search: 1}
judges:
  - {name: judge-a, noise_sd: 0.05, bias: 0.0}
classes:
  - name: Q1
    description: Which releases fix the admin API authentication bypass of QSA-2025-0003?
    features: {ambiguity_level: 0.1, contradiction_risk: 0.1, evidence_availability: 0.5}
    count: 3
    base_quality: 0.7
"""
PLAN = [
    "planner",
    "memory",
    "web_search",
    "solver",
    "critic",
    "verifier",
    "synthesizer",
    "evaluator",
]


def schema_name(request: Request) -> str:
    return str(request.body["response_format"]["json_schema"]["name"])


def answer(request: Request) -> Reply:
    """The role's answer, or the judge's scores for every label it was shown."""
    name = schema_name(request)
    if name == "judge_scores":
        schema = request.body["response_format"]["json_schema"]["schema"]
        labels = schema["properties"]["scores"]["items"]["properties"]["label"]["enum"]
        content: dict[str, Any] = {"scores": [{"label": x, **JUDGE_AXES} for x in labels]}
    else:
        content = ANSWERS[name.removesuffix("_output")]
    return completion(json.dumps(content), TOKENS_IN, TOKENS_OUT)


@contextmanager
def serving_in_thread(server: ScriptedServer) -> Iterator[ScriptedServer]:
    """Run ``server`` on an event loop of its own thread for the block."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.__aenter__())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="scripted-chat-server", daemon=True)
    thread.start()
    assert started.wait(30), "the scripted server did not start"
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


class _SearxNG(BaseHTTPRequestHandler):
    """Any GET is a search with one result, in SearxNG's JSON format."""

    def do_GET(self) -> None:
        result = {"title": "QSA-2025-0003", "url": "https://vendor.example/qsa", "content": "fix"}
        body = json.dumps({"results": [result]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def search_engine() -> Iterator[str]:
    """A local search endpoint; yields its root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SearxNG)
    thread = threading.Thread(target=server.serve_forever, name="local-searxng", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def model_table(path: Path, *slots: str) -> Path:
    """Every slot on one local model, priced so that costs are checkable."""
    entries = "".join(
        f"  {slot}:\n    model: tiny-1\n"
        f"    price_in_per_1k: {PRICE_IN}\n    price_out_per_1k: {PRICE_OUT}\n"
        for slot in slots
    )
    path.write_text(f"default_model: {slots[0]}\nmodels:\n{entries}")
    return path


def openai_env(server: ScriptedServer, table: Path, search: str) -> dict[str, str]:
    corpus = corpus_for(load_scenario("security-advisories"))
    assert corpus is not None
    return {
        "AGENSBUS_WORKER_BACKEND": "openai",
        "AGENSBUS_OPENAI_BASE_URL": server.base_url,
        "AGENSBUS_OPENAI_API_KEY": "local-key",
        "AGENSBUS_OPENAI_MODELS_FILE": str(table),
        "AGENSBUS_DOCUMENTS_DIR": str(corpus.documents_dir),
        "AGENSBUS_WEB_SEARCH_PROVIDER": "searxng",
        "AGENSBUS_WEB_SEARCH_URL": search,
    }


def asks(request: Request, text: str) -> bool:
    return any(text in message["content"] for message in request.body["messages"])


def cell_requests(server: ScriptedServer) -> list[Request]:
    """The requests of cells (the judge's are not)."""
    return [r for r in server.sent() if schema_name(r).endswith("_output")]


def events(bus: Bus, topic: str, model: type[Any]) -> list[Any]:
    decoded = [decode(record.value, model) for record in bus.records(topic)]
    assert all(isinstance(e, model) for e in decoded), decoded
    return decoded


def test_every_cell_kind_runs_on_the_local_model_and_every_trajectory_is_judged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    (tmp_path / "every-cell-pipeline.yaml").write_text(EVERY_CELL_PIPELINE)
    scenario = tmp_path / "every-cell.yaml"
    scenario.write_text(EVERY_CELL)
    server = ScriptedServer()
    server.chat(answer)
    with serving_in_thread(server), search_engine() as search:
        env = openai_env(server, model_table(tmp_path / "models.yaml", "small"), search)
        with deployment(
            kafka_bootstrap, scenario, tmp_path / "logs", mode="fixed", extra_env=env
        ) as deployed:
            _, observed = run(deployed.replay(concurrency=3).run(range(1, 2)))
            bus = deployed.bus
            decisions: list[Decision] = events(bus, "decisions", Decision)
            outcomes: list[StepOutcome] = events(bus, "outcomes", StepOutcome)
            completed: list[TrajectoryCompleted] = events(bus, "trajectories", TrajectoryCompleted)
            rewards: list[RewardObserved] = events(bus, "rewards", RewardObserved)

    assert len(observed.completed) == 3
    invoked: dict[str, list[str]] = defaultdict(list)
    for decision in sorted(decisions, key=lambda d: (d.trajectory_id, d.step)):
        assert decision.action_kind is ActionKind.INVOKE
        invoked[decision.trajectory_id].append(decision.cell)
    # The fixed arm runs the plan's default variants in order: every cell kind once.
    assert dict(invoked) == {t: PLAN for t in observed.completed}
    assert {o.decision_id for o in outcomes} == {d.decision_id for d in decisions}
    assert all(o.status is StepStatus.SUCCEEDED for o in outcomes), outcomes
    # Every token and cent is a model request the server answered, at the table's prices.
    asked = Counter(schema_name(r).removesuffix("_output") for r in cell_requests(server))
    for role in ("planner", "web_search", "solver", "critic", "verifier", "synthesizer"):
        assert asked[role] == 3, asked
    assert asked["evaluator"] == 3 and set(asked) <= set(PLAN)
    assert sum(o.tokens_in for o in outcomes) == asked.total() * TOKENS_IN
    assert sum(o.tokens_out for o in outcomes) == asked.total() * TOKENS_OUT
    assert sum(o.cost_usd for o in outcomes) == pytest.approx(asked.total() * STEP_COST)
    solver_actions = {o.action for o in outcomes if o.cell == "solver"}
    assert solver_actions == {"solver.evidence_first@small"}

    assert len(completed) == 3
    for trajectory in completed:
        handoff = trajectory.state.handoff
        assert trajectory.termination is Termination.EVALUATOR_DONE
        # The evaluator's final answer is the trajectory's answer; what the critic and the
        # verifier said stays in the handoff the judge reads.
        assert trajectory.answer == ANSWERS["evaluator"]["final_answer"]
        assert handoff.subproblem == ANSWERS["planner"]["subproblem"]
        assert handoff.critique == ANSWERS["critic"]["critique"]
        assert handoff.draft_answer == ANSWERS["solver"]["draft_answer"]
        assert handoff.verification is not None
        assert handoff.verification.verdict is Verdict.PARTIALLY_SUPPORTED
        assert ANSWERS["web_search"]["evidence"][0] in handoff.evidence
        steps = [o for o in outcomes if o.trajectory_id == trajectory.trajectory_id]
        assert trajectory.tokens == sum(o.tokens_in + o.tokens_out for o in steps) > 0

    assert sorted(r.trajectory_id for r in rewards) == sorted(observed.completed)
    # The LLM judge scored them: the rubric over the axis scores the local model gave.
    assert any(schema_name(r) == "judge_scores" for r in server.sent())
    expected = overall_score({Axis(name): value for name, value in JUDGE_AXES.items()})
    for reward in rewards:
        assert reward.quality == pytest.approx(expected) and reward.confidence == 1.0

    for request in server.sent():
        assert request.headers["authorization"] == "Bearer local-key"
        assert request.body["model"] == "tiny-1"


def test_the_openai_demo_asks_the_corpus_questions_and_reports_without_ground_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    scenario = load_scenario("security-advisories")
    corpus = corpus_for(scenario)
    assert corpus is not None
    out = tmp_path / "report"
    server = ScriptedServer()
    server.chat(answer)
    with serving_in_thread(server), search_engine() as search:
        table = model_table(tmp_path / "m.yaml", "balanced", "fast", "strong")
        env = {
            **os.environ,
            **openai_env(server, table, search),
            "AGENSBUS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        }
        args = ["demo", "--backend", "openai", "--scenario", "security-advisories"]
        args += ["--epochs", "1", "--tasks-per-class", "1", "--out", str(out), "--json"]
        done = subprocess.run(
            agensbus_command(args),
            env=env,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # every model slot is mapped
    data = json.loads(done.stdout)
    assert data == json.loads((out / "metrics.json").read_text())
    assert data["settings"]["backend"] == "openai" and data["ground_truth"] is None
    [(arm, metrics)] = data["arms"].items()
    assert arm == "paper"  # the openai default: one learning arm
    classes = list(scenario.classes)
    assert metrics["submitted"] == metrics["completed"] == metrics["rewarded"] == len(classes)
    [epoch] = metrics["epochs"]
    assert "true_quality" not in epoch and "regret" not in epoch
    assert sum(epoch["terminations"].values()) == len(classes)

    questions = {name: corpus.task(name, 0) for name in classes}
    trajectories = metrics["trajectories"]
    assert sorted(t["task_class"] for t in trajectories) == sorted(classes)
    for trajectory in trajectories:
        task = questions[trajectory["task_class"]]
        assert trajectory["question"] == task.question
        assert trajectory["reference_answer"] == task.answer
        assert trajectory["answer"] == ANSWERS["evaluator"]["final_answer"]
        # Each question was asked by its own trajectory only: its model requests are its cost.
        requests = [r for r in cell_requests(server) if asks(r, task.question)]
        assert requests and trajectory["cost_usd"] == pytest.approx(len(requests) * STEP_COST)
        assert trajectory["tokens"] == len(requests) * (TOKENS_IN + TOKENS_OUT)
    assert metrics["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in trajectories))
    report = (out / "report.md").read_text()
    assert "No true quality" in report
    for name in LIVE_PLOTS:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
        assert f"]({name})" in report

    # What crossed Kafka: the tasks carried the questions, and the models were asked them.
    prefix = data["settings"]["topic_prefixes"]["paper"]
    tasks: list[TaskSubmitted] = events(Bus(kafka_bootstrap, prefix), "tasks", TaskSubmitted)
    assert sorted(t.goal for t in tasks) == sorted(q.question for q in questions.values())
    for task in questions.values():
        assert any(asks(r, task.question) for r in server.sent()), task.question
