"""The SDK examples do what their docstrings say: the plain support-desk cells, and the
drafter on an OpenAI-compatible endpoint (the scripted one of the openai backend's tests)."""

import asyncio
import logging
from pathlib import Path

import pytest

from schemas.events import FailureKind
from schemas.records import TrajectoryState
from services.policy.outcomes import Execution
from services.sdk import CellSet, registry
from services.sdk.backend import CellsBackend
from services.sdk.loading import load_cells
from services.sim import load_scenario
from services.worker.openai.testing import Reply, completion, scripted
from tests.unit.support_decisions import first_decision

EXAMPLES = Path(__file__).parents[2] / "examples"
SCENARIO = load_scenario(str(EXAMPLES / "support_desk.yaml"))
STATE = first_decision(SCENARIO, "t-1", "S2").state


@pytest.fixture(autouse=True)
def fresh_default_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each example registers with the module-level @cell; each test serves one of them.
    monkeypatch.setattr(registry, "DEFAULT_CELLS", CellSet())


async def execute(example: str, action: str, state: TrajectoryState = STATE) -> Execution:
    cells = load_cells(str(EXAMPLES / example))
    backend = CellsBackend(cells.bind(SCENARIO.pool), logging.getLogger("test"))
    return await backend.execute(state, SCENARIO.pool.variant(action))


def with_evidence(state: TrajectoryState, *items: str) -> TrajectoryState:
    handoff = state.handoff.model_copy(update={"evidence": list(items)})
    return state.model_copy(update={"handoff": handoff})


def test_the_plain_drafter_answers_from_the_evidence_and_counts_words_as_tokens() -> None:
    state = with_evidence(STATE, "KB-12: refunds take five days")

    execution = asyncio.run(execute("support_desk_cells.py", "drafter.terse@large", state))

    answer = execution.result.delta.draft_answer
    assert answer is not None
    assert "in three lines (large model)" in answer
    assert "KB-12: refunds take five days" in answer
    assert execution.tokens_out == len(answer.split())


def test_the_plain_reviewer_fails_without_a_draft_at_once() -> None:
    execution = asyncio.run(execute("support_desk_cells.py", "reviewer"))

    assert (execution.failure_kind, execution.attempts) == (FailureKind.SCHEMA, 1)


def test_the_openai_drafter_calls_the_endpoint_with_the_variants_model_and_style(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with scripted() as server:
            server.chat(completion("Refunds take five days.", tokens_in=120, tokens_out=9))
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            monkeypatch.setenv("DRAFTER_MODEL_SMALL", "tiny-1")
            state = with_evidence(STATE, "KB-12: refunds take five days")
            execution = await execute("openai_drafter.py", "drafter.thorough@small", state)
            (request,) = server.sent()

        assert execution.result.delta.draft_answer == "Refunds take five days."
        assert (execution.tokens_in, execution.tokens_out) == (120, 9)
        assert request.body["model"] == "tiny-1"
        system, user = request.body["messages"]
        assert "step by step" in system["content"]
        assert "KB-12: refunds take five days" in user["content"]
        assert STATE.handoff.goal in user["content"]

    asyncio.run(scenario())


def test_the_openai_drafter_reports_a_rate_limit_after_its_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with scripted() as server:
            server.chat(Reply(429, {"error": {"message": "slow down"}}))
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            execution = await execute("openai_drafter.py", "drafter.terse@small")
            assert len(server.sent()) == 2

        assert not execution.result.succeeded
        assert (execution.failure_kind, execution.attempts) == (FailureKind.RATE_LIMITED, 2)

    asyncio.run(scenario())
