"""The judge role with the openai backend on the real broker, against a scripted local
chat-completions server: the three rollouts of a task are scored side by side by two judge
models, and each gets one RewardObserved with the judges' mean, their agreement as the
confidence and the group's one id; the inputs are committed once the rewards are out, and
/readyz reports the judge models' probe."""

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from schemas.events import RewardObserved, TrajectoryCompleted
from services.judge.app import build
from services.policy.arms import policy_setup
from services.policy.rubric import RUBRIC_WEIGHTS
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.topics import ensure_topics
from services.sim import Engine
from services.sim.testing import completed_trajectory
from services.worker.openai.testing import Reply, Request, completion, scripted
from tests.integration.support_broker import run
from tests.integration.support_services import (
    SCENARIO,
    SEED,
    committed,
    produce,
    read_until,
    reading,
    readyz,
    serving,
    settings_for,
)
from tests.unit.support_openai import KEY

AXES = [axis.value for axis in RUBRIC_WEIGHTS]
#: What each judge model gives the answers of rollouts 0, 1, 2 (every axis alike).
GIVES = {"provider-a": (0.9, 0.6, 0.3), "provider-b": (0.7, 0.6, 0.5)}


def by_model(request: Request) -> Reply:
    """Score each attempt by the answer it shows, whatever label it got (the rollouts reach
    the judge in any order across partitions)."""
    given = GIVES[request.body["model"]]
    shown = request.body["messages"][1]["content"]
    found = re.findall(r"=== Attempt (\w+) ===.*?Final answer: answer of rollout (\d)", shown, re.S)
    entries = [{"label": label, **dict.fromkeys(AXES, given[int(r)])} for label, r in found]
    return completion(json.dumps({"scores": entries}), 500, 60)


async def judge_check(service: Service) -> dict[str, Any]:
    """The judge's /readyz entry once its first probe of the judge models has run."""
    for _ in range(400):
        _, body = await readyz(service)
        check: dict[str, Any] = body["checks"]["judge"]
        if check["detail"] != "endpoints not probed yet":
            return check
        await asyncio.sleep(0.05)
    raise AssertionError("the judge models were never probed")


def three_rollouts(task_id: str, task_class: str) -> list[TrajectoryCompleted]:
    """The completed rollouts 0, 1, 2 of one task, each with an answer of its own."""
    engine = Engine(SCENARIO, policy_setup(SCENARIO, "paper"), seed=SEED)
    rollouts = []
    for r in range(3):
        trajectory = completed_trajectory(engine, task_class, task_id, r)
        state = trajectory.state.model_copy(update={"rollouts": 3})
        answer = f"answer of rollout {r}"
        rollouts.append(trajectory.model_copy(update={"state": state, "answer": answer}))
    return rollouts


def test_the_rollouts_of_a_task_are_scored_by_the_judge_models_as_one_group(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rollouts = three_rollouts("adv-7", "C3")

    async def scenario() -> None:
        async with scripted() as server:
            server.chat(by_model)
            table = tmp_path / "judges.yaml"
            table.write_text(
                "defaults:\n  price_in_per_1k: 1.0\n  price_out_per_1k: 2.0\n"
                "models:\n  judge-a: {model: provider-a}\n  judge-b: {model: provider-b}\n"
            )
            settings = settings_for(
                kafka_bootstrap,
                worker_backend="openai",
                openai_base_url=server.base_url,
                openai_models_file=table,
                openai_api_key=KEY,
                judge_models="judge-a,judge-b",
                # Groups of peers would hold 2: the rollouts must still stay together.
                judge_group_size=2,
                judge_window_ms=100,
            )
            await ensure_topics(settings)
            values = [(t.trajectory_id, encode(t)) for t in rollouts]
            await produce(kafka_bootstrap, settings.topic("trajectories"), values)
            service = build(settings)
            async with (
                reading(kafka_bootstrap, settings.topic("rewards")) as reader,
                serving(service),
            ):
                raw = await read_until(reader, lambda got: len(got) >= 3, 0.5)
                check = await judge_check(service)
                sent = server.sent()
            value = service.registry.get_sample_value
            tokens_in = {"model": "judge-b", "direction": "in"}
            assert value("agensbus_judge_requests_total", {"model": "judge-a"}) == 1
            assert value("agensbus_judge_tokens_total", tokens_in) == 500
            # 500 tokens in at 1.0 and 60 out at 2.0 per thousand.
            cost = value("agensbus_judge_cost_usd_total", {"model": "judge-a"})
            assert cost == pytest.approx(0.62)
            assert value("agensbus_judge_unscored_total") == 0
            assert sum((await committed(settings, settings.judge_group)).values()) == 3

        assert check["ok"] and check["detail"].endswith("key from AGENSBUS_OPENAI_API_KEY accepted")
        # One request per judge model, each showing the three rollouts side by side.
        assert sorted(r.body["model"] for r in sent) == ["provider-a", "provider-b"]
        for request in sent:
            shown = request.body["messages"][1]["content"]
            assert all(f"=== Attempt {label} ===" in shown for label in "ABC")
            schema = request.body["response_format"]["json_schema"]["schema"]
            assert schema["properties"]["scores"]["items"]["properties"]["label"]["enum"] == [
                "A",
                "B",
                "C",
            ]
        rewards = {r.trajectory_id: r for r in map(RewardObserved.model_validate_json, raw)}
        assert sorted(rewards) == ["adv-7~0", "adv-7~1", "adv-7~2"]
        assert len({r.group_id for r in rewards.values()}) == 1
        assert None not in {r.group_id for r in rewards.values()}
        # A: 0.9 / 0.7; B: 0.6 / 0.6; C: 0.3 / 0.5 -> means and 1 - std/0.2.
        expected = {"adv-7~0": (0.8, 0.5), "adv-7~1": (0.6, 1.0), "adv-7~2": (0.4, 0.5)}
        for trajectory_id, (quality, confidence) in expected.items():
            reward = rewards[trajectory_id]
            assert (reward.quality, reward.confidence) == pytest.approx((quality, confidence))
            assert [j.judge for j in reward.judges] == ["judge-a", "judge-b"]
            assert reward.task_id == "adv-7"

    run(scenario())


def test_a_judge_stopped_while_its_models_answer_commits_nothing_and_the_next_one_judges(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rollouts = three_rollouts("adv-9", "C5")
    answered: list[Request] = []

    def slow_first(request: Request) -> Reply:
        # The first request hangs far beyond the shutdown grace; later ones answer at once.
        answered.append(request)
        reply = by_model(request)
        return Reply(reply.status, reply.body, delay_s=20.0) if len(answered) == 1 else reply

    async def scenario() -> None:
        async with scripted() as server:
            server.chat(slow_first)
            settings = settings_for(
                kafka_bootstrap,
                worker_backend="openai",
                openai_base_url=server.base_url,
                openai_api_key=KEY,
                openai_default_model="provider-a",
                graceful_timeout_s=0.2,
            )
            await ensure_topics(settings)
            values = [(t.trajectory_id, encode(t)) for t in rollouts]
            await produce(kafka_bootstrap, settings.topic("trajectories"), values)
            first = build(settings)
            async with serving(first):
                while not server.sent():
                    await asyncio.sleep(0.05)
            # Stopped mid-call: no reward went out, so no input may count as done.
            assert sum((await committed(settings, settings.judge_group)).values()) == 0
            assert first.registry.get_sample_value("agensbus_judge_groups_scored_total") == 0

            second = build(settings)
            async with (
                reading(kafka_bootstrap, settings.topic("rewards")) as reader,
                serving(second),
            ):
                raw = await read_until(reader, lambda got: len(got) >= 3, 0.5)
                while sum((await committed(settings, settings.judge_group)).values()) < 3:
                    await asyncio.sleep(0.1)
            assert len(server.sent()) == 2

        rewards = [RewardObserved.model_validate_json(v) for v in raw]
        assert sorted(r.trajectory_id for r in rewards) == ["adv-9~0", "adv-9~1", "adv-9~2"]
        assert sorted(r.quality for r in rewards) == pytest.approx([0.3, 0.6, 0.9])
        assert len({r.group_id for r in rewards}) == 1

    run(scenario())
