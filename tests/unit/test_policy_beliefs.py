"""The six role belief updates, the handoff and the signature fold."""

import pytest

from schemas.records import (
    Beliefs,
    FoldSpec,
    Handoff,
    HandoffDelta,
    Regime,
    Role,
    Verdict,
    Verification,
)
from services.policy import apply_delta, fold, presence_mask, update_beliefs
from services.policy.signature import Signature, bucket

START = Beliefs()


def _beliefs(b: Beliefs) -> tuple[float, float, float, float, float]:
    return (
        b.correctness,
        b.uncertainty,
        b.handoff_quality,
        b.contradiction_risk,
        b.evidence_sufficiency,
    )


def test_initial_beliefs_are_the_papers() -> None:
    assert _beliefs(START) == (0.1, 0.9, 0.2, 0.5, 0.1)


@pytest.mark.parametrize(
    ("role", "delta", "expected"),
    [
        (Role.PLANNER, HandoffDelta(subproblem="s"), (0.1, 0.85, 0.3, 0.5, 0.1)),
        (Role.MEMORY, HandoffDelta(evidence=["a", "b"]), (0.1, 0.8, 0.25, 0.5, 0.3)),
        # 5 items would add 0.5; the cap is 0.3
        (Role.MEMORY, HandoffDelta(evidence=["e"] * 5), (0.1, 0.8, 0.25, 0.5, 0.4)),
        (Role.MEMORY, HandoffDelta(), (0.1, 0.8, 0.25, 0.5, 0.1)),
        (Role.SOLVER, HandoffDelta(draft_answer="d"), (0.3, 0.8, 0.3, 0.5, 0.1)),
        (Role.CRITIC, HandoffDelta(critique="c"), (0.1, 0.95, 0.2, 0.7, 0.1)),
        (
            Role.VERIFIER,
            HandoffDelta(verification=Verification(verdict=Verdict.SUPPORTED)),
            (0.35, 0.7, 0.2, 0.35, 0.2),
        ),
        (
            Role.VERIFIER,
            HandoffDelta(verification=Verification(verdict=Verdict.PARTIALLY_SUPPORTED)),
            (0.2, 0.85, 0.2, 0.45, 0.1),
        ),
        (
            Role.VERIFIER,
            HandoffDelta(verification=Verification(verdict=Verdict.UNSUPPORTED)),
            (0.0, 1.0, 0.2, 0.7, 0.1),
        ),
        (Role.SYNTHESIZER, HandoffDelta(merged_answer="m"), (0.18, 0.85, 0.32, 0.5, 0.1)),
        (Role.WEB_SEARCH, HandoffDelta(evidence=["w"]), (0.1, 0.9, 0.2, 0.5, 0.1)),
        (Role.EVALUATOR, HandoffDelta(), (0.1, 0.9, 0.2, 0.5, 0.1)),
    ],
)
def test_role_updates_match_the_paper(
    role: Role, delta: HandoffDelta, expected: tuple[float, ...]
) -> None:
    assert _beliefs(update_beliefs(START, role, delta)) == pytest.approx(expected, abs=1e-12)


def test_updates_are_clipped_and_exact() -> None:
    b = START
    for _ in range(6):
        b = update_beliefs(b, Role.SOLVER, HandoffDelta(draft_answer="d"))
    assert b.correctness == 1.0
    assert b.uncertainty == 0.3  # exactly, not 0.29999999999999993
    assert b.handoff_quality == 0.8


def test_a_step_that_wrote_nothing_moves_no_belief() -> None:
    assert update_beliefs(START, Role.SOLVER, HandoffDelta()) == START
    assert update_beliefs(START, Role.VERIFIER, HandoffDelta()) == START


def test_handoff_delta_replaces_fields_and_appends_evidence() -> None:
    h = Handoff(goal="g", evidence=["a"])
    h2 = apply_delta(h, HandoffDelta(evidence=["b"], draft_answer="d"))
    assert h2.evidence == ["a", "b"]
    assert h2.draft_answer == "d"
    assert h.draft_answer is None
    assert presence_mask(h2) == "1011000"
    assert presence_mask(Handoff(goal="g")) == "1000000"


def test_bucket_uses_integers() -> None:
    assert bucket(0.3, 0.1) == 3  # float floor(0.3 / 0.1) would give 2
    assert bucket(0.7, 0.1) == 7
    assert bucket(0.2999, 0.1) == 2  # beliefs resolve to 1e-4
    assert bucket(1.0, 0.1) == 10
    assert bucket(0.0, 0.1) == 0
    assert bucket(0.5, 0.25) == 2


def test_signature_text_and_parse_round_trip() -> None:
    spec = FoldSpec(extra_keys=["task_class"])
    b = update_beliefs(START, Role.SOLVER, HandoffDelta(draft_answer="d"))
    sig = fold(
        spec, Regime.EVIDENCE_HEAVY, Handoff(goal="g", draft_answer="d"), b, {"task_class": "C3"}
    )
    assert sig.text == "v1|evidence_heavy|1001000|c3.u8.r5.e1|task_class=C3"
    assert Signature.parse(sig.text) == sig
    missing = fold(spec, Regime.AMBIGUOUS, Handoff(goal="g"), START, {})
    assert missing.text == "v1|ambiguous|1000000|c1.u9.r5.e1|task_class=-"


def test_fold_granularity_is_configurable() -> None:
    sig = fold(FoldSpec(granularity=0.25), Regime.STRAIGHTFORWARD, Handoff(goal="g"), START)
    assert sig.text == "v1|straightforward|1000000|c0.u3.r2.e0"


@pytest.mark.parametrize(
    "text",
    ["", "v1|nope|1000000|c1.u9.r5.e1", "v1|ambiguous|10|c1.u9", "ambiguous|1000000|c1.u9.r5.e1"],
)
def test_signature_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match=r"signature|regime"):
        Signature.parse(text)


def test_fold_spec_rejects_uneven_granularity() -> None:
    with pytest.raises(ValueError, match="divide 1"):
        FoldSpec(granularity=0.3)
