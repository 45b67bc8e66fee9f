"""The openai backend against a scripted local chat-completions server: executions with
usage, cost and retries, the corrective retry, the json_object fallback, failures carried
in the Execution, the worker's wiring, and readiness as a preflight."""

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from schemas.events import FailureKind
from schemas.records import Verdict
from services.policy import Variant
from services.worker import invoke
from services.worker.backend import Unexecutable, make_backend
from services.worker.openai import OpenAIBackend
from services.worker.openai.client import ChatClient, RetryPolicy
from services.worker.openai.models import ModelSpec, ModelTable
from services.worker.openai.outputs import output_schema
from services.worker.openai.preflight import Preflight
from services.worker.openai.testing import Reply, ScriptedServer, completion, scripted
from tests.unit.support_decisions import first_decision
from tests.unit.support_openai import (
    KEY,
    SCENARIO,
    Sleeps,
    a_state,
    closed_port,
    settings,
    spec_for,
)

SOLVER = Variant("solver", "concise", "balanced")
VERIFIER = Variant("verifier", None, "balanced")
PLANNER = Variant("planner")


def backend_for(*specs: ModelSpec, default: str | None = None) -> tuple[OpenAIBackend, Sleeps]:
    sleeps = Sleeps()
    client = ChatClient(RetryPolicy(max_retries=2), sleep=sleeps, rng=random.Random(3))
    table = ModelTable({s.name: s for s in specs}, default)
    return OpenAIBackend(SCENARIO.pool, table, client), sleeps


def priced(server: ScriptedServer, **values: Any) -> ModelSpec:
    return spec_for(server.base_url, price_in_per_1k=2.0, price_out_per_1k=6.0, **values)


def test_a_step_returns_the_delta_usage_cost_and_no_retries() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"draft_answer": "Yes, remotely."}), 1500, 500))
            backend, _ = backend_for(priced(server))
            execution = await backend.execute(a_state(), SOLVER)
            await backend.stop()
        result = execution.result
        assert result.succeeded and result.delta.draft_answer == "Yes, remotely."
        assert (execution.tokens_in, execution.tokens_out, result.tokens) == (1500, 500, 2000)
        assert execution.cost_usd == pytest.approx(1.5 * 2.0 + 0.5 * 6.0)
        assert (execution.attempts, result.retries, execution.failure_kind) == (1, 0, None)
        assert execution.latency_s > 0
        [sent] = server.sent()
        wanted = sent.body["response_format"]
        assert wanted["type"] == "json_schema"
        assert wanted["json_schema"]["schema"] == output_schema(SCENARIO.pool.cells["solver"].role)
        system, user = sent.body["messages"]
        assert "solver" in system["content"] and "shortest answer" in system["content"]
        assert "JSON schema" not in system["content"]
        for text in ("CVE-2099-0001", "cite advisories", "NVD lists it"):
            assert text in user["content"]

    asyncio.run(run())


def test_the_outcome_reports_the_cost() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"subproblem": "check vectors"}), 1000, 1000))
            backend, _ = backend_for(priced(server), default="balanced")
            decision = first_decision(SCENARIO, "adv-2", "C1")
            execution = await backend.execute(decision.state, PLANNER)
            await backend.stop()
        outcome = invoke.outcome_of(decision, execution)
        assert outcome.cost_usd == pytest.approx(8.0)
        assert (outcome.tokens_in, outcome.tokens_out) == (1000, 1000)

    asyncio.run(run())


def test_invalid_json_gets_one_corrective_retry_counted_as_a_retry() -> None:
    async def run() -> None:
        async with scripted() as server:
            verdict = {"verdict": "supported", "rationale": "NVD"}
            server.chat(
                completion("It is supported.", 100, 10), completion(json.dumps(verdict), 150, 20)
            )
            backend, sleeps = backend_for(priced(server))
            execution = await backend.execute(a_state(), VERIFIER)
            await backend.stop()
        result = execution.result
        assert result.succeeded and result.delta.verification is not None
        assert result.delta.verification.verdict is Verdict.SUPPORTED
        assert (execution.attempts, result.retries) == (2, 1)
        assert (execution.tokens_in, execution.tokens_out) == (250, 30)
        assert sleeps.waits == []  # a correction is asked at once
        first, second = server.sent()
        assert len(second.body["messages"]) == len(first.body["messages"]) + 2
        shown, correction = second.body["messages"][-2:]
        assert shown == {"role": "assistant", "content": "It is supported."}
        assert "not JSON" in correction["content"]

    asyncio.run(run())


def test_a_schema_mismatch_twice_is_a_schema_failure() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"answer": "yes"}), 100, 10))
            backend, _ = backend_for(priced(server))
            execution = await backend.execute(a_state(), SOLVER)
            await backend.stop()
        result = execution.result
        assert not result.succeeded
        assert execution.failure_kind is FailureKind.SCHEMA
        assert (execution.attempts, result.retries, len(server.sent())) == (2, 1, 2)
        # What the failed calls spent still counts.
        assert (execution.tokens_in, result.tokens) == (200, 220)
        assert execution.cost_usd > 0

    asyncio.run(run())


def test_json_object_models_get_the_schema_in_the_prompt() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"draft_answer": "ok"})))
            backend, _ = backend_for(spec_for(server.base_url, structured_output="json_object"))
            execution = await backend.execute(a_state(), SOLVER)
            await backend.stop()
        assert execution.result.succeeded
        [sent] = server.sent()
        assert sent.body["response_format"] == {"type": "json_object"}
        system = sent.body["messages"][0]["content"]
        assert json.dumps(output_schema(SCENARIO.pool.cells["solver"].role)) in system

    asyncio.run(run())


def test_provider_failures_come_back_as_failed_executions() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(Reply(500, {}), Reply(500, {}), Reply(500, {}), completion("never"))
            backend, sleeps = backend_for(priced(server))
            server_failed = await backend.execute(a_state(), SOLVER)
            server.chat(Reply(401, {}))
            auth_failed = await backend.execute(a_state(), SOLVER)
            await backend.stop()
        assert server_failed.failure_kind is FailureKind.SERVER
        assert (server_failed.attempts, server_failed.result.retries) == (3, 2)
        assert len(sleeps.waits) == 2
        assert auth_failed.failure_kind is FailureKind.AUTH
        assert (auth_failed.attempts, auth_failed.result.retries, auth_failed.cost_usd) == (1, 0, 0)

    asyncio.run(run())


def test_a_model_nobody_configured_is_unexecutable() -> None:
    backend, _ = backend_for(spec_for("http://127.0.0.1:9/v1", name="fast"))
    with pytest.raises(Unexecutable) as raised:
        asyncio.run(backend.execute(a_state(), SOLVER))
    assert raised.value.rejected.error_type == "unknown_model"


def test_a_prompt_beyond_the_context_window_is_unexecutable() -> None:
    backend, _ = backend_for(spec_for("http://127.0.0.1:9/v1", context_window=256))
    state = a_state()
    long = state.handoff.model_copy(update={"evidence": ["x" * 2000]})
    with pytest.raises(Unexecutable) as raised:
        asyncio.run(backend.execute(state.model_copy(update={"handoff": long}), SOLVER))
    assert raised.value.rejected.error_type == "context_overflow"


# --- wiring and readiness ------------------------------------------------------------------


def test_the_worker_builds_the_openai_backend_from_settings(tmp_path: Path) -> None:
    backend = make_backend(
        settings(
            openai_base_url="http://127.0.0.1:9/v1",
            openai_api_key="sk-x",
            openai_default_model="small",
            openai_max_retries=5,
        ),
        SCENARIO.pipeline,
    )
    assert isinstance(backend, OpenAIBackend)
    # Every model the pool names, and the default for the variants naming none.
    assert set(backend.table.models) == {"balanced", "fast", "strong", "small"}
    assert backend.client.retry.max_retries == 5
    ready, detail = backend.readiness()
    assert not ready and detail.startswith("endpoints not probed yet")
    assert "memory recalled by the model" in detail and "no web search provider" in detail


async def _probed(*specs: ModelSpec) -> tuple[bool, str]:
    client = ChatClient(RetryPolicy())
    preflight = Preflight(ModelTable({s.name: s for s in specs}, None), client)
    try:
        return await preflight.probe()
    finally:
        await client.close()


def test_readiness_is_ok_when_every_endpoint_takes_its_key() -> None:
    async def run() -> None:
        async with scripted() as server, scripted() as other:
            other.answer("/v1/models", Reply(404, {}))  # compatible servers may lack /models
            ready, detail = await _probed(
                spec_for(server.base_url), spec_for(other.base_url, name="fast")
            )
            assert ready, detail
            [probe] = server.sent("/v1/models")
            assert (probe.method, probe.headers["authorization"]) == ("GET", f"Bearer {KEY}")

    asyncio.run(run())


def test_readiness_fails_on_a_missing_key_without_asking() -> None:
    async def run() -> None:
        async with scripted() as server:
            ready, detail = await _probed(
                spec_for(server.base_url),
                spec_for(server.base_url, key=None, name="fast", key_source="env FAST_KEY"),
            )
            assert not ready
            assert "no API key" in detail and "FAST_KEY" in detail
            assert len(server.sent("/v1/models")) == 1  # only the model with a key

    asyncio.run(run())


def test_readiness_fails_on_a_rejected_key() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.answer("/v1/models", Reply(401, {"error": {"message": f"bad key {KEY}"}}))
            ready, detail = await _probed(spec_for(server.base_url))
            assert not ready and "rejected (HTTP 401)" in detail
            assert KEY not in detail

    asyncio.run(run())


def test_readiness_fails_on_an_unreachable_endpoint() -> None:
    ready, detail = asyncio.run(_probed(spec_for(f"http://127.0.0.1:{closed_port()}/v1")))
    assert not ready and "unreachable" in detail


def test_the_backend_probes_in_the_background_once_started() -> None:
    async def run() -> None:
        async with scripted() as server:
            backend, _ = backend_for(spec_for(server.base_url))
            assert not backend.readiness()[0]
            await backend.start()
            for _ in range(100):
                if backend.readiness()[0]:
                    break
                await asyncio.sleep(0.02)
            await backend.stop()
            assert backend.readiness()[0], backend.readiness()[1]

    asyncio.run(run())


def test_a_missing_shortcut_key_keeps_the_worker_unready() -> None:
    backend = make_backend(
        settings(openai_base_url="http://127.0.0.1:9/v1", openai_default_model="small"),
        SCENARIO.pipeline,
    )
    assert isinstance(backend, OpenAIBackend)
    assert all(s.api_key is None for s in backend.table.models.values())
    ready, detail = asyncio.run(backend.preflight.probe())
    assert not ready and "AGENSBUS_OPENAI_API_KEY is unset" in detail


def test_settings_keep_the_key_secret() -> None:
    config = settings(openai_api_key=KEY)
    assert isinstance(config.openai_api_key, SecretStr)
    assert KEY not in repr(config) and KEY not in str(config.model_dump())
