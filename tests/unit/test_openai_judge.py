"""The LLM judge against a scripted local chat-completions server (loopback): judges that
disagree, a judge that is down, a corrected answer, a judge that abstains on one
attempt, every judge failing (no reward); and its wiring into the judge role (settings,
rewards, metrics, readiness)."""

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from schemas.events import FailureKind
from services.cli.serve import worker
from services.judge import core as judging
from services.judge.llm import LLMScorer
from services.judge.metrics import JudgeMetrics
from services.judge.scorers import make_scorer
from services.policy.rubric import RUBRIC_WEIGHTS
from services.runtime.settings import Settings
from services.sim.scoring import SimulatedScorer
from services.worker.openai import ModelConfigError, build_judge, judge_prompt
from services.worker.openai.client import ChatClient, RetryPolicy
from services.worker.openai.judge import LLMJudge, Verdict, judge_name
from services.worker.openai.models import CHARS_PER_TOKEN
from services.worker.openai.testing import Reply, Request, ScriptedServer, completion, scripted
from tests.support_metrics import not_started_at_zero
from tests.unit.support_judge import SCENARIO, completed
from tests.unit.support_openai import KEY, Sleeps, spec_for

AXES = [axis.value for axis in RUBRIC_WEIGHTS]
GROUP = [completed("t-j", "C4", r) for r in range(3)]
LOG = logging.getLogger("test")


def scores(**by_label: float) -> str:
    """A judge's answer giving every axis of each label the same value."""
    return json.dumps(
        {"scores": [{"label": k, **dict.fromkeys(AXES, v)} for k, v in by_label.items()]}
    )


def per_model(
    answers: Mapping[str, Reply | Callable[[Request], Reply]],
) -> Callable[[Request], Reply]:
    """Answer each request by the judge model it names."""

    def answer(request: Request) -> Reply:
        reply = answers[request.body["model"]]
        return reply if isinstance(reply, Reply) else reply(request)

    return answer


def judges(server: ScriptedServer, *names: str, **values: Any) -> tuple[LLMJudge, Sleeps]:
    sleeps = Sleeps()
    client = ChatClient(RetryPolicy(max_retries=2), sleep=sleeps, rng=random.Random(1))
    specs = [
        spec_for(server.base_url, name=name, model=name, price_in_per_1k=1.0, **values)
        for name in names
    ]
    return LLMJudge(specs, client), sleeps


def by_id(verdict: Verdict) -> dict[str, tuple[float, float, list[str]]]:
    return {
        j.trajectory_id: (j.quality, j.confidence, [s.judge for s in j.scores])
        for j in verdict.judgements
    }


def test_two_judges_that_disagree_give_their_mean_and_a_lower_confidence() -> None:
    async def run() -> Verdict:
        async with scripted() as server:
            server.chat(
                per_model(
                    {
                        "judge-a": completion(scores(A=0.9, B=0.5, C=0.2), 300, 40),
                        "judge-b": completion(scores(A=0.7, B=0.5, C=0.6), 200, 30),
                    }
                )
            )
            judge, _ = judges(server, "judge-a", "judge-b")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
            sent = server.sent()
        assert sorted(r.body["model"] for r in sent) == ["judge-a", "judge-b"]
        first_shown = {
            r.body["model"]: r.body["messages"][1]["content"].index("Attempt B")
            < r.body["messages"][1]["content"].index("Attempt A")
            for r in sent
        }
        # The second judge sees the group rotated (B first), the first in order.
        assert first_shown == {"judge-a": False, "judge-b": True}
        return verdict

    verdict = asyncio.run(run())
    got = by_id(verdict)
    a, b, c = (t.trajectory_id for t in GROUP)
    # A: 0.9 and 0.7, spread 0.1 -> 0.5; B: agree; C: 0.2 and 0.6, spread 0.2 -> 0.
    assert got[a][:2] == pytest.approx((0.8, 0.5))
    assert got[b][:2] == pytest.approx((0.5, 1.0))
    assert got[c][:2] == pytest.approx((0.4, 0.0))
    assert got[a][2] == ["judge-a", "judge-b"]
    assert verdict.unscored == []
    calls = {call.model: call for call in verdict.calls}
    assert (calls["judge-a"].tokens_in, calls["judge-a"].tokens_out) == (300, 40)
    assert calls["judge-a"].cost_usd == pytest.approx(0.3)
    assert calls["judge-b"].requests == 1 and calls["judge-b"].failure is None


def test_a_judge_that_is_down_leaves_the_others_scores_at_full_confidence() -> None:
    async def run() -> tuple[Verdict, list[float]]:
        async with scripted() as server:
            server.chat(
                per_model(
                    {
                        "up": completion(scores(A=0.8, B=0.3, C=0.6)),
                        "down": Reply(500, {"error": {"message": "overloaded"}}),
                    }
                )
            )
            judge, sleeps = judges(server, "up", "down")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
        return verdict, sleeps.waits

    verdict, waits = asyncio.run(run())
    got = by_id(verdict)
    assert [got[t.trajectory_id][0] for t in GROUP] == pytest.approx([0.8, 0.3, 0.6])
    # One judge measured no disagreement: the rubric's confidence for one judge.
    assert {got[t.trajectory_id][1] for t in GROUP} == {1.0}
    assert {tuple(got[t.trajectory_id][2]) for t in GROUP} == {("up",)}
    calls = {call.model: call for call in verdict.calls}
    # Two retries after the first 500, then the judge gives up and abstains on all three.
    assert (calls["down"].requests, calls["down"].failure) == (3, FailureKind.SERVER)
    assert calls["down"].abstained == 3 and calls["up"].abstained == 0
    assert len(waits) == 2


def test_an_unreadable_answer_is_corrected_once() -> None:
    async def run() -> tuple[Verdict, list[Request]]:
        async with scripted() as server:
            server.chat(
                completion("A is clearly the best", 100, 10),
                completion(scores(A=0.9, B=0.4, C=0.1), 150, 20),
            )
            judge, _ = judges(server, "solo")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
            return verdict, server.sent()

    verdict, sent = asyncio.run(run())
    assert [j.quality for j in verdict.judgements] == pytest.approx([0.9, 0.4, 0.1])
    (call,) = verdict.calls
    assert (call.requests, call.tokens_in, call.tokens_out, call.failure) == (2, 250, 30, None)
    retry = sent[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": "A is clearly the best"}
    assert "unusable" in retry[-1]["content"] and "not JSON" in retry[-1]["content"]


def test_a_judge_unreadable_twice_abstains_and_nothing_is_made_up() -> None:
    async def run() -> Verdict:
        async with scripted() as server:
            server.chat(completion("no idea"))
            judge, _ = judges(server, "solo")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
        return verdict

    verdict = asyncio.run(run())
    assert verdict.judgements == []
    assert verdict.unscored == [t.trajectory_id for t in GROUP]
    (call,) = verdict.calls
    assert (call.requests, call.failure, call.abstained) == (2, FailureKind.SCHEMA, 3)


def test_a_judge_that_skips_an_attempt_abstains_on_that_one_only() -> None:
    async def run() -> Verdict:
        async with scripted() as server:
            server.chat(
                per_model(
                    {
                        # "a" leaves out C and scores B on a 1-10 scale; "b" leaves out B.
                        "a": completion(scores(A=0.6, B=7)),
                        "b": completion(scores(A=0.4, C=0.9, Q=0.1)),
                    }
                )
            )
            judge, _ = judges(server, "a", "b")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
        return verdict

    verdict = asyncio.run(run())
    a, b, c = (t.trajectory_id for t in GROUP)
    got = by_id(verdict)
    assert got[a] == (pytest.approx(0.5), pytest.approx(0.5), ["a", "b"])
    assert got[c] == (pytest.approx(0.9), 1.0, ["b"])
    assert b not in got and verdict.unscored == [b]
    assert {call.model: call.abstained for call in verdict.calls} == {"a": 2, "b": 1}


def test_a_group_over_the_context_window_is_judged_in_parts() -> None:
    shown: list[list[str]] = []

    def answer(request: Request) -> Reply:
        # Score whatever attempts this request shows, each by its position in the group.
        attempts = re.findall(r"=== Attempt (\w+) ===", request.body["messages"][1]["content"])
        shown.append(sorted(attempts))
        return completion(scores(**{label: 0.1 * (ord(label) - 64) for label in attempts}))

    group = GROUP[:2]
    one = prompt_characters(group[:1])
    assert one < prompt_characters(group)

    async def run() -> Verdict:
        async with scripted() as server:
            server.chat(answer)
            judge, _ = judges(server, "a", context_window=one // CHARS_PER_TOKEN)
            verdict = await judge.score_group(group)
            await judge.client.close()
        return verdict

    verdict = asyncio.run(run())
    assert sorted(shown) == [["A"], ["B"]]
    got = by_id(verdict)
    assert got[group[0].trajectory_id][0] == pytest.approx(0.1)
    assert got[group[1].trajectory_id][0] == pytest.approx(0.2)
    assert verdict.unscored == [] and verdict.calls[0].requests == 2


def test_an_attempt_too_long_for_every_judge_gets_no_reward_and_no_request() -> None:
    async def run() -> tuple[Verdict, int]:
        async with scripted() as server:
            server.chat(completion(scores(A=0.5)))
            judge, _ = judges(server, "a", context_window=1)
            verdict = await judge.score_group(GROUP[:1])
            await judge.client.close()
        return verdict, len(server.requests)

    verdict, requests = asyncio.run(run())
    assert verdict.judgements == [] and verdict.unscored == [GROUP[0].trajectory_id]
    assert requests == 0
    assert (verdict.calls[0].abstained, verdict.calls[0].failure) == (1, None)


def prompt_characters(group: list[Any]) -> int:
    prompted = judge_prompt.prompt(group, judge_prompt.labels(len(group)), "json_schema")
    return sum(len(message["content"]) for message in prompted)


def test_all_judges_failing_gives_no_reward_and_is_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()

    async def run() -> list[Any]:
        async with scripted() as server:
            server.chat(Reply(503, {"error": {"message": "down"}}))
            settings = settings_with(
                tmp_path, openai_base_url=server.base_url, judge_models="a,b", openai_max_retries=2
            )
            scorer = LLMScorer(settings, JudgeMetrics(registry), LOG)
            scorer.judge.client = ChatClient(RetryPolicy(max_retries=2), sleep=Sleeps())
            rewards = await scorer.score(GROUP)
            await scorer.stop()
        return rewards

    assert asyncio.run(run()) == []
    value = registry.get_sample_value
    assert value("agensbus_judge_unscored_total") == 3
    assert value("agensbus_judge_groups_scored_total") == 1
    for model in ("a", "b"):
        assert value("agensbus_judge_failures_total", {"model": model, "kind": "server"}) == 1
        assert value("agensbus_judge_requests_total", {"model": model}) == 3
        assert value("agensbus_judge_abstentions_total", {"model": model}) == 3


def test_rewards_of_a_partly_scored_group_keep_the_whole_groups_id() -> None:
    async def run() -> list[Any]:
        async with scripted() as server:
            server.chat(completion(scores(A=0.7, C=0.2), 10, 5))
            judge, _ = judges(server, "a")
            verdict = await judge.score_group(GROUP)
            await judge.client.close()
        return judging.rewards(GROUP, verdict.judgements)

    rewards = asyncio.run(run())
    assert [r.trajectory_id for r in rewards] == [GROUP[0].trajectory_id, GROUP[2].trajectory_id]
    assert {r.group_id for r in rewards} == {judging.group_id(t.trajectory_id for t in GROUP)}
    assert [r.quality for r in rewards] == pytest.approx([0.7, 0.2])
    assert all(r.task_id == "t-j" and len(r.judges) == 1 for r in rewards)


def test_json_object_judges_get_the_schema_in_the_prompt() -> None:
    async def run() -> Request:
        async with scripted() as server:
            server.chat(completion(scores(A=0.5, B=0.5, C=0.5)))
            judge, _ = judges(server, "plain", structured_output="json_object")
            await judge.score_group(GROUP)
            await judge.client.close()
            (sent,) = server.sent()
        return sent

    sent = asyncio.run(run())
    assert sent.body["response_format"] == {"type": "json_object"}
    assert '"enum": ["A", "B", "C"]' in sent.body["messages"][0]["content"]


def test_judge_names_fit_a_rewards_judge_field() -> None:
    assert judge_name("strong") == "strong"
    assert judge_name("openai/gpt-4o-mini") == "openai-gpt-4o-mini"
    with pytest.raises(ValueError, match="at least one"):
        LLMJudge([], ChatClient(RetryPolicy()))


def settings_with(tmp_path: Path, **values: Any) -> Settings:
    table = tmp_path / "models.yaml"
    table.write_text(
        "default_model: small\nmodels:\n  small:\n    model: tiny-1\n"
        "  big:\n    model: huge-2\n    base_url: http://127.0.0.1:9/v1\n"
    )
    return Settings(worker_backend="openai", openai_models_file=table, openai_api_key=KEY, **values)


def test_judge_models_come_from_the_setting_or_the_default(tmp_path: Path) -> None:
    alone, table = build_judge(settings_with(tmp_path, openai_base_url="http://127.0.0.1:8/v1"))
    assert [s.name for s in alone.judges] == ["small"] and set(table.models) == {"small"}
    both, table = build_judge(
        settings_with(
            tmp_path, judge_models="big, small,big", openai_base_url="http://127.0.0.1:8/v1"
        )
    )
    assert [(s.name, s.model) for s in both.judges] == [("big", "huge-2"), ("small", "tiny-1")]
    # Readiness probes exactly the judges' endpoints.
    assert set(table.endpoints()) == {
        ("http://127.0.0.1:9/v1", "AGENSBUS_OPENAI_API_KEY"),
        ("http://127.0.0.1:8/v1", "AGENSBUS_OPENAI_API_KEY"),
    }
    with pytest.raises(ModelConfigError, match="'other' has no base_url"):
        build_judge(settings_with(tmp_path, judge_models="other"))


def test_the_judge_models_series_start_at_0(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    settings = settings_with(tmp_path, openai_base_url="http://127.0.0.1:8/v1", judge_models="a,b")
    LLMScorer(settings, JudgeMetrics(registry), LOG)
    assert not_started_at_zero(generate_latest(registry).decode()) == []
    for model in ("a", "b"):
        assert registry.get_sample_value("agensbus_judge_requests_total", {"model": model}) == 0
        labels = {"model": model, "kind": "quota"}
        assert registry.get_sample_value("agensbus_judge_failures_total", labels) == 0


def test_the_role_judges_with_models_only_on_the_openai_backend(tmp_path: Path) -> None:
    metrics, log = JudgeMetrics(CollectorRegistry()), LOG
    simulated = Settings(worker_backend="simulated")
    pipeline = SCENARIO.pipeline
    assert isinstance(make_scorer(simulated, pipeline, metrics, log), SimulatedScorer)
    real = settings_with(tmp_path, openai_base_url="http://127.0.0.1:8/v1")
    scorer = make_scorer(real, pipeline, JudgeMetrics(CollectorRegistry()), log)
    assert isinstance(scorer, LLMScorer)
    # Model judges read what they judge: any task class; the simulated one knows its own.
    assert scorer.classes is None
    assert make_scorer(simulated, pipeline, metrics, log).classes == tuple(SCENARIO.classes)
    # Not ready before the judge endpoints were probed.
    assert scorer.readiness() == (False, "endpoints not probed yet")


def test_a_judge_without_its_key_is_not_ready(tmp_path: Path) -> None:
    async def run() -> tuple[bool, str]:
        async with scripted() as server:
            settings = settings_with(tmp_path, openai_base_url=server.base_url)
            settings = settings.model_copy(update={"openai_api_key": None})
            scorer = LLMScorer(settings, JudgeMetrics(CollectorRegistry()), LOG)
            result = await scorer.preflight.probe()
            await scorer.stop()
            assert server.requests == []
        return result

    ok, detail = asyncio.run(run())
    assert not ok and "AGENSBUS_OPENAI_API_KEY is unset" in detail


def test_a_judge_model_nobody_configured_is_a_usage_error() -> None:
    result = CliRunner(env={"AGENSBUS_OPENAI_BASE_URL": None}).invoke(
        worker,
        [
            "--role",
            "judge",
            "--kafka-bootstrap",
            "127.0.0.1:9",
            "--worker-backend",
            "openai",
            "--judge-models",
            "nowhere-model",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "model 'nowhere-model' has no base_url" in result.output
    assert "Traceback" not in result.output
