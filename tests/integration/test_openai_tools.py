"""The tool cells in a real worker on the real broker: with a documents_dir, a memory
decision comes back as a StepOutcome whose evidence is retrieved passages (no model asked,
no tokens), /readyz says what is indexed; a web_search decision without a provider comes
back failed (upstream) instead of hanging the trajectory."""

import json
from pathlib import Path

from schemas.events import Decision, FailureKind
from schemas.records import HandoffDelta, StepStatus
from services.policy import PolicyGraph, StepResult, absorb, advance
from services.policy.arms import policy_setup
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
from tests.unit.support_decisions import decision_of, first_decision
from tests.unit.support_openai import KEY
from tests.unit.support_tools import corpus


def next_decision(previous: Decision, result: StepResult) -> Decision:
    """The decision after ``previous`` once it has ``result`` (the prior's plan order)."""
    setup = policy_setup(SCENARIO, "paper")
    state = absorb(previous.state, result, setup)
    steps, ended = advance(state, PolicyGraph(), setup)
    assert ended is None
    return decision_of(steps[-1])


def test_memory_and_web_search_decisions_through_the_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    planner = first_decision(SCENARIO, "adv-tools", "C1")
    planner = planner.model_copy(
        update={
            "state": planner.state.model_copy(
                update={
                    "handoff": planner.state.handoff.model_copy(
                        update={"goal": "How is ZEN-7 mitigated?"}
                    )
                }
            )
        }
    )
    memory = next_decision(planner, StepResult(True, HandoffDelta(subproblem="1. the fix")))
    search = next_decision(memory, StepResult(True, HandoffDelta(evidence=["e"])))
    assert (memory.cell, search.cell) == ("memory", "web_search_primary")
    documents = corpus(tmp_path / "documents")

    async def scenario() -> None:
        async with scripted() as server:
            server.chat(completion(json.dumps({"subproblem": "unused"})))
            settings = openai_settings(
                kafka_bootstrap,
                server.base_url,
                tmp_path,
                openai_api_key=KEY,
                documents_dir=documents,
                memory_top_k=2,
            )
            await publish(settings, [memory, search])
            service = build(settings)
            async with (
                reading(kafka_bootstrap, settings.topic("outcomes")) as reader,
                serving(service),
            ):
                check = await backend_check(service)
                values = await read_until(reader, lambda got: len(got) >= 2)
                status, _ = await readyz(service)
        assert server.sent() == []  # neither cell asked the model
        assert status == 200 and check["ok"], check
        assert "memory retrieves from" in check["detail"]
        assert f"from 3 documents in {documents}" in check["detail"]
        got = {o.cell: o for o in outcomes(values)}
        retrieved = got["memory"]
        assert retrieved.status is StepStatus.SUCCEEDED
        assert (retrieved.tokens_in, retrieved.tokens_out, retrieved.cost_usd) == (0, 0, 0.0)
        assert len(retrieved.delta.evidence) == 2
        assert retrieved.delta.evidence[0].startswith("[vendors/zen/ZEN-7.md]")
        failed = got["web_search_primary"]
        assert failed.status is StepStatus.FAILED
        assert failed.failure_kind is FailureKind.UPSTREAM

    run(scenario())
