"""The worker with the openai backend on the real broker, against a scripted local
chat-completions server: a decision comes back as a StepOutcome with the model's output,
usage and cost, and /readyz reports the endpoint probe (a missing key is not ready)."""

import json
from pathlib import Path

import pytest

from schemas.records import StepStatus
from services.worker.app import build
from services.worker.openai.testing import completion, scripted
from tests.integration.support_broker import run
from tests.integration.support_services import (
    SCENARIO,
    backend_check,
    openai_settings,
    outcomes,
    publish,
    read_until,
    reading,
    readyz,
    serving,
)
from tests.unit.support_decisions import first_decision
from tests.unit.support_openai import KEY


def test_a_decision_runs_on_the_model_and_reports_usage_and_cost(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    decision = first_decision(SCENARIO, "adv-openai", "C1")
    assert decision.cell == "planner" and decision.model is None  # runs on the default

    async def scenario() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"subproblem": "1. affected versions"}), 400, 100))
            settings = openai_settings(
                kafka_bootstrap, server.base_url, tmp_path, openai_api_key=KEY
            )
            await publish(settings, [decision])
            service = build(settings)
            async with (
                reading(kafka_bootstrap, settings.topic("outcomes")) as reader,
                serving(service),
            ):
                check = await backend_check(service)
                values = await read_until(reader, lambda got: len(got) >= 1)
        assert check["ok"], check
        [outcome] = outcomes(values)
        assert (outcome.decision_id, outcome.status) == (decision.decision_id, StepStatus.SUCCEEDED)
        assert outcome.delta.subproblem == "1. affected versions"
        assert (outcome.tokens_in, outcome.tokens_out, outcome.retries) == (400, 100, 0)
        assert outcome.cost_usd == pytest.approx(0.4 + 0.2)
        [sent] = server.sent()
        assert sent.body["model"] == "tiny-1"

    run(scenario())


def test_a_worker_without_its_key_is_not_ready(kafka_bootstrap: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted() as server:
            settings = openai_settings(kafka_bootstrap, server.base_url, tmp_path)
            service = build(settings)
            async with serving(service):
                check = await backend_check(service)
                status, _ = await readyz(service)
        assert not check["ok"] and "AGENSBUS_OPENAI_API_KEY is unset" in check["detail"]
        assert status == 503
        assert server.requests == []

    run(scenario())
