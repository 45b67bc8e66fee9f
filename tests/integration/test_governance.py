"""Governance on the real broker: a router and a worker (openai backend) in process, against
a local chat-completions server that answers per model. The router's circuit breaker routes
around a model that starts failing and takes it back after the cool-down; an auth failure
halts the trajectory with its reason."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiokafka import AIOKafkaConsumer

from schemas.events import Decision, TaskSubmitted, Termination, TrajectoryCompleted
from schemas.topics import topic_of
from services.router.app import build as build_router
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from services.worker.app import build as build_worker
from services.worker.openai.testing import Reply, Request, ScriptedServer, completion, scripted
from tests.integration.support_broker import run
from tests.integration.support_services import produce, serving, settings_for
from tests.unit.support_openai import KEY

#: Whatever role asks, this answer fits it (each role's schema ignores the other keys): the
#: evaluator says done, so a trajectory that drafts an answer ends at the evaluator.
ANSWER = json.dumps(
    {
        "subproblem": "one",
        "evidence": ["an advisory"],
        "draft_answer": "the draft",
        "critique": "none",
        "verdict": "supported",
        "rationale": "it holds",
        "merged_answer": "the answer",
        "done": True,
        "final_answer": "the answer",
    }
)
COOLDOWN_S = 1.5
#: The longest one trajectory may take, and a whole test; both end as soon as they are done.
TRAJECTORY_TIMEOUT_S = 30.0
SCENARIO_TIMEOUT_S = 150.0
T = TypeVar("T")


def pipeline_file(tmp_path: Path) -> Path:
    """A solver with a variant on model x (the default, which the cold prior runs) and one
    on model y, then the evaluator (on the worker's default model, y)."""
    path = tmp_path / "two-models.yaml"
    spec = {
        "name": "two-models",
        "cells": [
            {"name": "solver", "role": "solver", "variants": [{"model": "x"}, {"model": "y"}]},
            {"name": "evaluator", "role": "evaluator"},
        ],
        "plan": ["solver", "evaluator"],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


@dataclass
class Loop:
    """A router and an openai worker sharing the test's topics, and what they published."""

    settings: Settings
    router: Service
    decisions: list[Decision] = field(default_factory=list)
    completed: list[TrajectoryCompleted] = field(default_factory=list)

    async def solve(self, task_id: str) -> tuple[Decision, TrajectoryCompleted]:
        """Submit a task, wait for its trajectory to end; its first decision and its end."""
        task = TaskSubmitted(task_id=task_id, goal="Which versions are affected?")
        topic = self.settings.topic(topic_of(TaskSubmitted))
        await produce(self.settings.kafka_bootstrap or "", topic, [(task_id, encode(task))])
        ended = await self.until(
            f"the end of {task_id}",
            lambda: next((c for c in self.completed if c.task_id == task_id), None),
        )
        first = next(d for d in self.decisions if d.task_id == task_id and d.step == 0)
        return first, ended

    async def until(self, what: str, found: Callable[[], T | None]) -> T:
        async def poll() -> T:
            while (value := found()) is None:
                await asyncio.sleep(0.02)
            return value

        try:
            return await asyncio.wait_for(poll(), TRAJECTORY_TIMEOUT_S)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def metric(self, name: str, **labels: str) -> float:
        return self.router.registry.get_sample_value(name, labels) or 0.0

    async def follow(self, consumer: AIOKafkaConsumer) -> None:
        decisions = self.settings.topic(topic_of(Decision))
        while True:
            for partition, records in (await consumer.getmany(timeout_ms=100)).items():
                for record in records:
                    if partition.topic == decisions:
                        self.decisions.append(Decision.model_validate_json(record.value))
                    else:
                        self.completed.append(TrajectoryCompleted.model_validate_json(record.value))


@asynccontextmanager
async def loop(
    bootstrap: str, server: ScriptedServer, tmp_path: Path, **router: Any
) -> AsyncIterator[Loop]:
    settings = settings_for(
        bootstrap,
        pipeline=str(pipeline_file(tmp_path)),
        router_group=f"router-{uuid.uuid4().hex[:8]}",
        breaker_window=4,
        breaker_min_calls=2,
        breaker_cooldown_s=COOLDOWN_S,
        worker_backend="openai",
        openai_base_url=server.base_url,
        openai_api_key=KEY,
        openai_default_model="y",
        openai_max_retries=0,
        **router,
    )
    await ensure_topics(settings)
    state = Loop(settings, build_router(settings))
    topics = (settings.topic(topic_of(Decision)), settings.topic(topic_of(TrajectoryCompleted)))
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    follower = asyncio.create_task(state.follow(consumer))
    try:
        async with serving(state.router), serving(build_worker(settings)):
            yield state
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await consumer.stop()


def per_model(down: set[str]) -> Callable[[Request], Reply]:
    """Valid JSON for every role, or an HTTP 500 for a model while it is down."""

    def answer(request: Request) -> Reply:
        if request.body["model"] in down:
            return Reply(500, {"error": {"message": "upstream is down"}})
        return completion(ANSWER, 20, 10)

    return answer


def test_the_router_routes_around_a_failing_model_and_takes_it_back(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    down = {"x"}

    async def scenario() -> None:
        async with scripted() as server, loop(kafka_bootstrap, server, tmp_path) as state:
            server.chat(per_model(down))
            # x fails: its trajectories end without a draft until the breaker withholds x.
            failing: list[Decision] = []
            for n in range(12):
                first, ended = await state.solve(f"down-{n}")
                failing.append(first)
                if first.model == "y":
                    break
            withheld = failing[-1]
            assert withheld.action == "solver@y", [d.action for d in failing]
            assert (withheld.reason_detail or "").startswith("breaker open: x until ")
            assert ended.termination is Termination.EVALUATOR_DONE
            # Until then x was offered as usual and failed twice, which opened the breaker;
            # on a slow machine a cool-down may pass before the next task, whose x is then
            # a probe (failing, so the breaker opens again).
            assert [(d.action, d.reason_detail) for d in failing[:2]] == [("solver@x", None)] * 2
            assert all(d.reason_detail == "breaker half-open: probe of x" for d in failing[2:-1])
            assert state.metric("agensbus_router_breaker_state", model="x") in (1.0, 2.0)

            # x is healthy again: after the cool-down a probe finds out, and x is back.
            down.clear()
            healed: list[Decision] = []
            for n in range(200):
                first, _ = await state.solve(f"up-{n}")
                healed.append(first)
                if first.model == "x" and first.reason_detail is None:
                    break
            details = [d.reason_detail or "" for d in healed]
            probes = [d for d in healed if d.reason_detail == "breaker half-open: probe of x"]
            assert probes and all(p.model == "x" for p in probes), details
            assert healed[-1].action == "solver@x" and healed[-1].reason_detail is None, details
            # Before the probe, every decision kept x out, and said so.
            before = healed[: healed.index(probes[0])]
            assert all(d.model == "y" and "breaker open: x" in (d.reason_detail or "")
                       for d in before), details  # fmt: skip
            assert state.metric("agensbus_router_breaker_state", model="x") == 0.0
            for entered in ("open", "half_open", "closed"):
                moved = state.metric(
                    "agensbus_router_breaker_transitions_total", model="x", state=entered
                )
                assert moved >= 1, entered
            assert state.metric("agensbus_router_breaker_state", model="y") == 0.0

    run(scenario(), SCENARIO_TIMEOUT_S)


def test_an_auth_failure_halts_the_trajectory_with_the_reason(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with scripted() as server, loop(kafka_bootstrap, server, tmp_path) as state:
            server.chat(Reply(401, {"error": {"message": "invalid api key"}}))
            first, ended = await state.solve("rejected")
            assert first.action == "solver@x"
            assert ended.termination is Termination.GOVERNANCE_HALT
            assert (ended.halt_reason, ended.steps, ended.state.failures) == ("auth", 1, 1)
            halts = state.metric("agensbus_router_governance_halts_total", reason="auth")
            assert halts == 1.0
            assert len(server.sent()) == 1  # no retry of a rejected key, no further step

    run(scenario(), SCENARIO_TIMEOUT_S)
