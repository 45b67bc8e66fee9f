"""The LLM judge's pure half: labels, the score schema, the side-by-side prompt, and the
parsing of a judge's answer with every robustness case (unreadable, missing, unknown,
duplicated, out of range, not numeric); and the mean and confidence of several judges."""

import json
from typing import Any

import pytest

from schemas.events import TrajectoryCompleted
from schemas.records import Axis, JudgeScore, Verdict, Verification
from services.policy.outcomes import Judgement
from services.policy.rubric import RUBRIC_WEIGHTS, overall_score
from services.worker.openai.judge_prompt import (
    EVIDENCE_ITEMS,
    FIELD_CHARS,
    describe,
    labels,
    parse,
    parts,
    prompt,
    response_format,
    score_schema,
)
from services.worker.openai.outputs import OutputError
from tests.unit.support_judge import completed

AXES = [axis.value for axis in RUBRIC_WEIGHTS]


def written(task_id: str, rollout: int, **handoff: Any) -> TrajectoryCompleted:
    """A finished rollout whose handoff holds ``handoff`` (and no cut-off answer)."""
    trajectory = completed(task_id, "C3", rollout)
    state = trajectory.state
    state = state.model_copy(update={"handoff": state.handoff.model_copy(update=handoff)})
    return trajectory.model_copy(update={"state": state, "answer": handoff.get("merged_answer")})


def entry(label: str, value: Any = 0.5, **axes: Any) -> dict[str, Any]:
    return {"label": label, **dict.fromkeys(AXES, value), **axes}


def answer(*entries: dict[str, Any]) -> str:
    return json.dumps({"scores": list(entries)})


def test_labels_are_short_and_distinct() -> None:
    assert labels(3) == ["A", "B", "C"]
    many = labels(64)
    assert len(set(many)) == 64 and many[25:28] == ["Z", "A2", "B2"]


def test_the_schema_asks_one_number_per_axis_for_the_groups_labels_only() -> None:
    schema = score_schema(["A", "B"])
    item = schema["properties"]["scores"]["items"]
    assert item["properties"]["label"]["enum"] == ["A", "B"]
    # Strict structured outputs: every property required, nothing else allowed.
    assert set(item["required"]) == set(item["properties"]) == {"label", *AXES}
    assert item["additionalProperties"] is False and schema["additionalProperties"] is False
    strict = response_format(["A", "B"], "json_schema")
    assert strict["json_schema"]["schema"] == schema and strict["json_schema"]["strict"]
    assert response_format(["A"], "json_object") == {"type": "json_object"}


def test_the_prompt_shows_each_trajectory_under_its_label() -> None:
    first = written(
        "t-p",
        0,
        goal="Which versions does ADV-7 affect?",
        subproblem="1. find ADV-7",
        evidence=["ADV-7 affects 2.0 to 2.3"],
        draft_answer="2.0-2.3",
        critique="cite the advisory",
        verification=Verification(verdict=Verdict.SUPPORTED, rationale="matches ADV-7"),
        merged_answer="2.0 to 2.3 (ADV-7)",
    )
    second = written("t-p", 1, goal="Which versions does ADV-7 affect?")
    messages = prompt([first, second], ["A", "B"], "json_schema")
    system, user = messages[0]["content"], messages[1]["content"]
    for axis, weight in RUBRIC_WEIGHTS.items():
        assert f"{axis.value} (weight {weight:g})" in system
    assert "JSON schema" not in system  # the schema travels in response_format
    text = describe("A", first)
    for shown in (
        "=== Attempt A ===",
        "Goal: Which versions does ADV-7 affect?",
        "Plan: 1. find ADV-7",
        "- ADV-7 affects 2.0 to 2.3",
        "Draft answer: 2.0-2.3",
        "Critique: cite the advisory",
        "Verification: supported. matches ADV-7",
        "Final answer: 2.0 to 2.3 (ADV-7)",
        f"retries: {first.retries}",
        f"Failures: {first.state.failures}",
        f"ended by: {first.termination.value}",
    ):
        assert shown in text
    assert first.state.visited
    assert "Skipped: " + (", ".join(first.state.skipped) or "(none)") in text
    for edge in first.state.visited:
        assert f"{edge.action} ({edge.status.value})" in text
    assert text in user and describe("B", second) in user
    assert user.index("Attempt A") < user.index("Attempt B")


def test_judges_see_the_group_in_turn_and_json_mode_gets_the_schema() -> None:
    group = [written("t-r", r, goal=f"goal {r}") for r in range(3)]
    rotated = prompt(group, ["A", "B", "C"], "json_object", rotation=1)
    user = rotated[1]["content"]
    # Shown B, C, A, and each label still with its own trajectory.
    assert user.index("Attempt B") < user.index("Attempt C") < user.index("Attempt A")
    assert describe("A", group[0]) in user
    assert json.dumps(score_schema(["A", "B", "C"])) in rotated[0]["content"]


def test_long_fields_and_long_evidence_lists_are_cut_and_say_so() -> None:
    evidence = [f"fact {i}" for i in range(EVIDENCE_ITEMS + 3)]
    long = written("t-l", 0, draft_answer="x" * (FIELD_CHARS + 10), evidence=evidence)
    text = describe("A", long)
    assert "[... 10 more characters]" in text
    assert f"- fact {EVIDENCE_ITEMS - 1}\n[... 3 more items]" in text
    assert f"fact {EVIDENCE_ITEMS}" not in text


def within(characters: int) -> Any:
    """A context window of ``characters`` characters of prompt."""
    return lambda messages: sum(len(m["content"]) for m in messages) <= characters


def test_a_group_too_long_for_the_judge_is_halved_until_each_part_fits() -> None:
    group = [written("t-p", r, goal=f"goal {r}", draft_answer="d" * 900) for r in range(5)]
    group_labels = labels(5)
    whole = prompt(group, group_labels, "json_schema")
    fits_two = sum(len(m["content"]) for m in prompt(group[:2], group_labels[:2], "json_schema"))
    assert fits_two < sum(len(m["content"]) for m in whole)
    shown, too_long = parts(group, group_labels, "json_schema", within(fits_two))
    assert too_long == []
    # 5 -> 2 + 3 -> 2 + (1 + 2): every attempt in exactly one part, beside another one
    # wherever two still fit.
    assert [part.labels for part in shown] == [["A", "B"], ["C"], ["D", "E"]]
    for part in shown:
        assert within(fits_two)(part.messages)
        assert part.messages == prompt(
            [group[group_labels.index(label)] for label in part.labels],
            part.labels,
            "json_schema",
        )
    assert parts(group, group_labels, "json_schema", within(10**9)) == (
        [type(shown[0])(group_labels, whole)],
        [],
    )


def test_an_attempt_too_long_even_alone_is_left_out() -> None:
    short = written("t-q", 0, goal="short")
    long = written("t-q", 1, goal="long", draft_answer="d" * 3_000)
    alone = sum(len(m["content"]) for m in prompt([short], ["A"], "json_schema"))
    shown, too_long = parts([short, long], ["A", "B"], "json_schema", within(alone))
    assert [part.labels for part in shown] == [["A"]] and too_long == ["B"]


def test_a_full_answer_scores_every_label() -> None:
    content = answer(entry("A", 1.0), entry("B", 0, grounding=0.25))
    scored = parse(content, ["A", "B"])
    assert scored.axes["A"] == dict.fromkeys(RUBRIC_WEIGHTS, 1.0)
    assert scored.axes["B"][Axis.GROUNDING] == 0.25 and scored.axes["B"][Axis.RECOVERY] == 0.0
    assert scored.rejected == {} and scored.ignored == 0
    # JSON-mode models may fence their object; that is still readable.
    assert parse(f"```json\n{content}\n```", ["A", "B"]) == scored


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("the first attempt is best", "invalid_json"),
        ('{"scores": [', "invalid_json"),
        ("[1, 2]", "schema"),
        ('{"A": 0.5}', "schema"),
        ('{"scores": "A=0.5"}', "schema"),
    ],
)
def test_an_unreadable_answer_raises_for_the_corrective_request(content: str, problem: str) -> None:
    with pytest.raises(OutputError) as raised:
        parse(content, ["A"])
    assert raised.value.problem == problem


def test_missing_labels_are_abstentions_and_unknown_labels_are_ignored() -> None:
    scored = parse(answer(entry("A"), entry("Z"), entry("C", 0.1), "junk"), ["A", "B", "C"])
    assert set(scored.axes) == {"A", "C"}
    assert scored.rejected == {"B": "not scored"}
    assert scored.ignored == 2  # the unknown label Z and the entry that is no object


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (7, "outside [0, 1]"),
        (-0.1, "outside [0, 1]"),
        (85, "outside [0, 1]"),
        ("0.8", "not a number"),
        (None, "not a number"),
        (True, "not a number"),
    ],
)
def test_an_entry_with_a_bad_axis_is_rejected_not_clamped(bad: Any, reason: str) -> None:
    scored = parse(answer(entry("A", 0.6, coordination=bad), entry("B", 0.4)), ["A", "B"])
    assert "A" not in scored.axes and reason in scored.rejected["A"]
    assert scored.axes["B"] == dict.fromkeys(RUBRIC_WEIGHTS, 0.4)


def test_a_missing_axis_and_nan_are_rejected() -> None:
    partial = {"label": "A", "goal_achievement": 0.5, "grounding": 0.5, "coordination": 0.5}
    assert "recovery is not a number" in parse(answer(partial), ["A"]).rejected["A"]
    # Python's json reads NaN; a NaN score is no score.
    nan = '{"scores": [{"label": "A", "goal_achievement": NaN, "grounding": 1, '
    nan += '"coordination": 1, "recovery": 1}]}'
    assert "outside [0, 1]" in parse(nan, ["A"]).rejected["A"]


def test_a_label_scored_twice_counts_for_neither() -> None:
    scored = parse(answer(entry("A", 0.9), entry("A", 0.1), entry("B")), ["A", "B"])
    assert "A" not in scored.axes and scored.rejected["A"] == "scored more than once"
    assert set(scored.axes) == {"B"}


def score(judge: str, value: float) -> JudgeScore:
    axes = dict.fromkeys(RUBRIC_WEIGHTS, value)
    return JudgeScore(judge=judge, axes=axes, overall=overall_score(axes))


def test_several_judges_are_averaged_and_their_spread_sets_the_confidence() -> None:
    agreeing = Judgement.of("t", [score("a", 0.6), score("b", 0.6)])
    assert (agreeing.quality, agreeing.confidence) == pytest.approx((0.6, 1.0))
    # Overall 0.8 and 0.6: mean 0.7, population std 0.1, confidence 1 - 0.1/0.2.
    split = Judgement.of("t", [score("a", 0.8), score("b", 0.6)])
    assert (split.quality, split.confidence) == pytest.approx((0.7, 0.5))
    # A spread of 0.2 or more leaves no confidence at all.
    apart = Judgement.of("t", [score("a", 1.0), score("b", 0.5)])
    assert (apart.quality, apart.confidence) == pytest.approx((0.75, 0.0))
    # One judge measures no disagreement.
    alone = Judgement.of("t", [score("a", 0.3)])
    assert (alone.quality, alone.confidence) == pytest.approx((0.3, 1.0))
    assert [s.judge for s in split.scores] == ["a", "b"]
