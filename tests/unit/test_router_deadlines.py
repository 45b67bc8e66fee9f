"""Step deadlines derived from the decisions and outcomes read, in whatever order."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.events import Decision, FailureKind
from schemas.records import StepStatus
from services.router.deadlines import Deadlines, timeout_outcome
from services.runtime.codec import encode
from services.runtime.settings import Settings
from services.sim import load_scenario
from tests.unit.support_decisions import as_skip, first_decision
from tests.unit.support_router import execute

SCENARIO = load_scenario("security-advisories")
T0 = 1_000_000.0


def decision(trajectory_id: str = "t-1", at: float = T0) -> Decision:
    made = first_decision(SCENARIO, trajectory_id, "C1")
    return made.model_copy(update={"produced_at": datetime.fromtimestamp(at, UTC)})


def test_an_unanswered_invoke_is_due_at_its_produced_at_plus_the_timeout() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    invoke = decision()
    deadlines.decision(encode(invoke))
    deadlines.decision(encode(as_skip(decision("t-2"))))

    assert deadlines.waiting == 1
    assert deadlines.due(T0 + 9.9) == []
    (due,) = deadlines.due(T0 + 10.0)
    assert due == invoke

    outcome = timeout_outcome(due, T0 + 10.5)
    assert (outcome.status, outcome.failure_kind) == (StepStatus.FAILED, FailureKind.TIMEOUT)
    assert (outcome.decision_id, outcome.state, outcome.latency_s) == (
        invoke.decision_id,
        invoke.state,
        10.5,
    )
    # Due once; it stays waiting until its timeout is published, then is settled.
    assert deadlines.due(T0 + 11.0) == []
    assert deadlines.waiting == 1
    deadlines.timed_out(due)
    assert deadlines.waiting == 0


def test_an_answer_read_before_or_after_its_decision_settles_it() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    after, before = decision("t-1"), decision("t-2")
    deadlines.decision(encode(after))
    deadlines.outcome(encode(execute(after)))
    deadlines.outcome(encode(execute(before)))
    deadlines.decision(encode(before))

    assert deadlines.waiting == 0
    assert deadlines.due(T0 + 100.0) == []


def test_a_real_answer_after_a_timeout_is_late_and_the_timeout_itself_is_not() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    invoke = decision()
    timed_out = timeout_outcome(invoke, T0 + 10.0)
    real = execute(invoke)
    assert not deadlines.late(real)

    # Read back from the outcomes topic (another replica published it, or before a restart).
    deadlines.outcome(encode(timed_out))
    deadlines.decision(encode(invoke))

    assert deadlines.waiting == 0
    assert deadlines.late(real)
    assert not deadlines.late(timed_out)


def test_a_timeout_that_could_not_be_published_is_due_again() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    invoke = decision()
    deadlines.decision(encode(invoke))
    (due,) = deadlines.due(T0 + 10.0)
    deadlines.retry(due, T0 + 10.0)

    assert deadlines.due(T0 + 10.5) == [invoke]


def test_answers_are_forgotten_after_the_horizon() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    answered = decision()
    answer = execute(answered).model_copy(update={"produced_at": answered.produced_at})
    deadlines.outcome(encode(answer))
    deadlines.due(T0 + 60.0)
    # A decision that old is never replayed; were it read, nothing remembers its answer.
    deadlines.decision(encode(answered))
    assert deadlines.waiting == 1


def test_unreadable_records_are_ignored_and_bad_windows_refused() -> None:
    deadlines = Deadlines(timeout_s=10.0, horizon_s=60.0)
    for raw in (None, b"{not json", b'{"event_id": "x"}'):
        deadlines.decision(raw)
        deadlines.outcome(raw)
    assert deadlines.waiting == 0
    with pytest.raises(ValueError, match="horizon"):
        Deadlines(timeout_s=10.0, horizon_s=5.0)


def test_the_settings_refuse_a_replay_window_shorter_than_the_timeout() -> None:
    with pytest.raises(ValidationError, match="shorter than step_timeout_s"):
        Settings(step_timeout_s=600.0, step_timeout_replay_s=300.0)
    assert Settings(step_timeout_s=0.0).step_timeout_replay_s == 1_800.0
