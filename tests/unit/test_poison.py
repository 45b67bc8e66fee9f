"""Poison records and sizes: which failures recur on every retry, dead letters that stay
publishable and keep one id per record, the size limits and the claim check."""

import base64
import os
from pathlib import Path

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)
from pydantic import ValidationError

from schemas.events import Decision, FailureKind, StepOutcome
from schemas.records import ActionScore, HandoffDelta, PayloadRef
from services.policy.handoff import apply_delta
from services.runtime.codec import MAX_KEPT_BYTES, Rejected, dead_letter, encode
from services.runtime.limits import Limits, step_problem, task_problem
from services.runtime.payloads import PayloadStore, check_in, check_out, marker
from services.runtime.poison import Poison, dead_letter_id, poison_reason
from services.runtime.settings import Settings
from tests.unit.support_router import core, decisions, routed, start_state_of, task

#: aiokafka's default max_request_size and Kafka's default message.max.bytes.
PRODUCER_MAX_REQUEST_BYTES = 1_048_576
BROKER_MESSAGE_MAX_BYTES = 1_048_588
LIMITS = Limits.from_settings(Settings())


def validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        PayloadRef(digest="md5:0", bytes=1, field="evidence")
    return raised.value


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (MessageSizeTooLargeError("1229391 bytes"), "record_too_large"),
        (validation_error(), "invalid_output"),
        (Poison("payload_missing", "gone"), "payload_missing"),
        (KafkaConnectionError("broker down"), None),
        (NotLeaderForPartitionError(), None),
        (TimeoutError(), None),
    ],
)
def test_only_failures_a_retry_repeats_are_poison(
    error: BaseException, error_type: str | None
) -> None:
    rejected = poison_reason(error)
    assert (rejected.error_type if rejected else None) == error_type


def test_a_dead_letter_id_is_the_records_coordinates() -> None:
    first = dead_letter_id("router", "agensbus.tasks", 1, 7)
    assert first == dead_letter_id("router", "agensbus.tasks", 1, 7)
    others = {
        dead_letter_id("worker", "agensbus.tasks", 1, 7),
        dead_letter_id("router", "agensbus.outcomes", 1, 7),
        dead_letter_id("router", "agensbus.tasks", 0, 7),
        dead_letter_id("router", "agensbus.tasks", 1, 8),
    }
    assert first not in others and len(others) == 4


def test_a_dead_letter_of_a_record_near_the_limit_keeps_its_head_and_fits() -> None:
    value = b"g" * 1_040_000
    letter = dead_letter(
        event_id=dead_letter_id("router", "t", 0, 3),
        service="router",
        tenant="default",
        topic="t",
        partition=0,
        offset=3,
        key=b"k",
        value=value,
        rejected=Rejected("over_limit", "too big"),
    )
    assert letter.payload_truncated and letter.payload_bytes == len(value)
    assert base64.b64decode(letter.payload_b64) == value[:MAX_KEPT_BYTES]
    assert len(encode(letter)) < PRODUCER_MAX_REQUEST_BYTES


def test_a_goal_over_its_limit_is_refused_naming_the_setting() -> None:
    big = task(goal="é" * 40_000)  # 80,000 UTF-8 bytes, over the default 65,536
    rejected = task_problem(big, len(encode(big)), LIMITS)
    assert rejected is not None and rejected.error_type == "over_limit"
    assert "80000 bytes" in rejected.reason and "AGENSBUS_LIMIT_GOAL_BYTES" in rejected.reason
    assert task_problem(task(), len(encode(task())), LIMITS) is None


def test_a_task_over_its_size_limit_is_refused_naming_the_setting() -> None:
    wide = task(constraints=["c" * 2_000] * 32, metadata={f"k{i}": "m" * 2_000 for i in range(32)})
    narrow = Limits(LIMITS.goal_bytes, 100_000, LIMITS.field_bytes, LIMITS.state_bytes)
    rejected = task_problem(wide, len(encode(wide)), narrow)
    assert rejected is not None and "AGENSBUS_LIMIT_TASK_BYTES" in rejected.reason
    assert task_problem(wide, len(encode(wide)), LIMITS) is None


def test_the_default_limits_keep_the_largest_events_under_the_kafka_limits() -> None:
    # A state right at the limit, carried by a decision with the most scores a decision
    # holds, and by the outcome that echoes it with an inline delta at its field limit.
    state = start_state_of()
    state = state.model_copy(update={"handoff": state.handoff.model_copy(update={"critique": ""})})
    filler = LIMITS.state_bytes - len(state.model_dump_json().encode())
    state = state.model_copy(
        update={"handoff": state.handoff.model_copy(update={"critique": "c" * filler})}
    )
    assert len(state.model_dump_json().encode()) == LIMITS.state_bytes
    (decision,) = decisions(routed(core().on_task(task())))
    score = ActionScore(action="solver.evidence_first@balanced", score=1.0e300, mean=0.5)
    widest = decision.model_copy(update={"state": state, "scores": [score] * 256})
    delta = HandoffDelta(draft_answer="d" * LIMITS.field_bytes)
    outcome = StepOutcome(
        decision_id=decision.decision_id,
        trajectory_id=decision.trajectory_id,
        step=decision.step,
        action=decision.action,
        cell=decision.cell,
        status="succeeded",
        delta=delta,
        state=state,
    )
    for event in (widest, outcome):
        size = len(encode(event))
        assert size < PRODUCER_MAX_REQUEST_BYTES < BROKER_MESSAGE_MAX_BYTES, type(event)
    assert isinstance(widest, Decision)


def test_a_step_that_would_grow_the_state_past_its_limit_is_named() -> None:
    state = start_state_of()
    big = HandoffDelta(critique="c" * LIMITS.field_bytes)
    after = state.model_copy(update={"handoff": apply_delta(state.handoff, big)})
    assert step_problem(big, after, LIMITS) is None
    small = Limits(LIMITS.goal_bytes, LIMITS.task_bytes, LIMITS.field_bytes, 65_536)
    problem = step_problem(big, after, small)
    assert problem is not None and "AGENSBUS_LIMIT_STATE_BYTES" in problem
    over = HandoffDelta(evidence=["e" * (LIMITS.field_bytes + 1)])
    problem = step_problem(over, state, LIMITS)
    assert problem is not None and "evidence" in problem and "AGENSBUS_LIMIT_FIELD_BYTES" in problem


def store(tmp_path: Path) -> PayloadStore:
    return PayloadStore(tmp_path / "payloads", retention_s=3600.0)


def test_large_texts_travel_by_reference_and_come_back_whole(tmp_path: Path) -> None:
    payloads = store(tmp_path)
    document = "d" * 100_000
    delta = HandoffDelta(evidence=["short", document], draft_answer="x" * 20_000)
    carried = check_out(delta, payloads, inline_bytes=16_384)
    refs = {ref.field: ref for ref in carried.payloads}
    assert set(refs) == {"evidence", "draft_answer"}
    assert carried.evidence == ["short", marker(refs["evidence"].digest)]
    assert carried.draft_answer == marker(refs["draft_answer"].digest)
    assert refs["evidence"].bytes == 100_000
    handoff = apply_delta(start_state_of().handoff, carried)
    assert handoff.payloads == carried.payloads
    read = check_in(handoff, payloads)
    assert read.evidence == ["short", document] and read.draft_answer == "x" * 20_000


def test_a_step_with_nothing_large_is_left_as_it_is(tmp_path: Path) -> None:
    delta = HandoffDelta(evidence=["a", "b"], critique="fine")
    assert check_out(delta, store(tmp_path), inline_bytes=16_384) is delta
    handoff = start_state_of().handoff
    assert check_in(handoff, store(tmp_path)) is handoff


def test_a_replaced_draft_lets_go_of_its_payload(tmp_path: Path) -> None:
    payloads = store(tmp_path)
    first = check_out(HandoffDelta(draft_answer="1" * 20_000), payloads, 16_384)
    handoff = apply_delta(start_state_of().handoff, first)
    second = check_out(HandoffDelta(draft_answer="2" * 20_000), payloads, 16_384)
    handoff = apply_delta(handoff, second)
    assert handoff.payloads == second.payloads


def test_the_same_content_is_stored_once(tmp_path: Path) -> None:
    payloads = store(tmp_path)
    first = payloads.put("same" * 10_000, "evidence")
    assert payloads.put("same" * 10_000, "draft_answer").digest == first.digest
    assert len(list(payloads.directory.glob("*/*"))) == 1


def test_a_missing_or_altered_payload_is_poison(tmp_path: Path) -> None:
    payloads = store(tmp_path)
    with pytest.raises(Poison) as missing:
        payloads.get("sha256:" + "0" * 64)
    assert missing.value.rejected.error_type == "payload_missing"
    ref = payloads.put("content", "evidence")
    (path,) = payloads.directory.glob("*/*")
    path.write_text("tampered")
    with pytest.raises(Poison) as altered:
        payloads.get(ref.digest)
    assert altered.value.rejected.error_type == "payload_corrupt"


def test_payloads_expire_after_their_retention(tmp_path: Path) -> None:
    payloads = store(tmp_path)
    old = payloads.put("old", "evidence")
    payloads.put("new", "evidence")
    (old_path,) = [p for p in payloads.directory.glob("*/*") if p.name in old.digest]
    os.utime(old_path, (0, 0))
    assert payloads.sweep() == 1
    assert len(list(payloads.directory.glob("*/*"))) == 1
    assert FailureKind.OVERSIZE.value == "oversize"
