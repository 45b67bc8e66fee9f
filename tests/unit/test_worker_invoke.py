"""The worker's pure decision handling: which decisions it runs, refuses or ignores, and
the StepOutcome it makes of an execution."""

import pytest

from schemas.events import FailureKind, StepOutcome
from schemas.records import HandoffDelta, StepStatus
from services.policy import StepResult
from services.policy.outcomes import Execution
from services.runtime.codec import Rejected, encode
from services.sim import World, load_scenario
from services.worker.invoke import accept, outcome_of
from tests.unit.support_decisions import as_skip, first_decision

SCENARIO = load_scenario("security-advisories")
DECISION = first_decision(SCENARIO, "adv-1", "C1")
TENANTS = ("default",)


def test_an_invoke_of_the_pool_is_accepted() -> None:
    assert accept(encode(DECISION), SCENARIO.pool, TENANTS) == DECISION


def test_a_skip_is_accepted_without_checking_what_it_skips() -> None:
    skip = as_skip(DECISION)
    assert accept(encode(skip), SCENARIO.pool, TENANTS) == skip


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"{not json", "malformed_json"),
        (b'{"event_type": "Decision"}', "schema_invalid"),
        (None, "empty"),
        (encode(DECISION.model_copy(update={"tenant": "other"})), "unknown_tenant"),
        (encode(DECISION.model_copy(update={"action": "planner.telepathy"})), "unknown_action"),
        (encode(DECISION.model_copy(update={"action": "skip:planner"})), "unknown_action"),
        (encode(DECISION.model_copy(update={"cell": "memory"})), "unknown_action"),
        (encode(DECISION.model_copy(update={"step": 3})), "unknown_step"),
        (encode(DECISION.model_copy(update={"trajectory_id": "adv-2"})), "unknown_trajectory"),
        (
            encode(
                DECISION.model_copy(
                    update={"state": DECISION.state.model_copy(update={"pending": None})}
                )
            ),
            "unknown_step",
        ),
    ],
)
def test_what_the_worker_refuses(raw: bytes | None, error_type: str) -> None:
    rejected = accept(raw, SCENARIO.pool, TENANTS)
    assert isinstance(rejected, Rejected)
    assert rejected.error_type == error_type


def test_outcome_echoes_the_decision_and_reports_the_execution() -> None:
    execution = World(SCENARIO, 7).execute(DECISION.state, SCENARIO.pool.variant(DECISION.action))
    outcome = outcome_of(DECISION, execution)
    assert isinstance(outcome, StepOutcome)
    echoed = ("decision_id", "trajectory_id", "step", "action", "cell", "state", "tenant")
    assert all(getattr(outcome, f) == getattr(DECISION, f) for f in echoed)
    assert outcome.status is StepStatus.SUCCEEDED is execution.status
    assert (outcome.tokens_in, outcome.tokens_out) == (execution.tokens_in, execution.tokens_out)
    assert outcome.tokens_in + outcome.tokens_out == execution.result.tokens
    assert outcome.latency_s == execution.latency_s
    assert outcome.retries == execution.result.retries
    assert outcome.delta == execution.result.delta and outcome.delta.subproblem
    assert outcome.done is execution.result.done
    # Executing the decision again (a redelivery) yields the same event id; another
    # decision another one.
    assert outcome.event_id == outcome_of(DECISION, execution).event_id
    other = first_decision(SCENARIO, "adv-2", "C1")
    assert outcome_of(other, execution).event_id != outcome.event_id


def test_a_failed_execution_becomes_a_failed_outcome() -> None:
    failed = Execution(
        StepResult(False, tokens=900, retries=2),
        tokens_in=900,
        tokens_out=0,
        latency_s=7.5,
        attempts=3,
        failure_kind=FailureKind.SIMULATED,
    )
    outcome = outcome_of(DECISION, failed)
    assert outcome.status is StepStatus.FAILED
    assert outcome.failure_kind is FailureKind.SIMULATED
    assert (outcome.tokens_in, outcome.tokens_out, outcome.retries) == (900, 0, 2)
    assert outcome.delta == HandoffDelta() and not outcome.done
