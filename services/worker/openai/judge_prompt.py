"""The LLM RelativeJudge's pure half: the prompt that shows a group of trajectories side by
side under short labels, the JSON schema of the scores it asks for, and the parsing of a
judge's answer into rubric scores per label.

Parsing is strict per entry and lenient per answer: an answer that cannot be read at all
raises :class:`OutputError` (the caller asks once more); inside a readable answer, a label
the judge did not score, or scored badly, is an abstention on that trajectory only.
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import TrajectoryCompleted
from schemas.records import Axis
from services.policy.rubric import RUBRIC_WEIGHTS
from services.worker.openai.outputs import OutputError, correction, unfenced

#: Labels A..Z, then A2..Z2 and so on; a group holds at most 64 trajectories.
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: Characters of one handoff field shown to the judge; long fields are cut, and say so.
FIELD_CHARS = 4_000
#: Evidence items shown per trajectory: a group of many rollouts must fit one prompt.
EVIDENCE_ITEMS = 16

_AXIS_MEANING: Mapping[Axis, str] = {
    Axis.GOAL_ACHIEVEMENT: "does the final answer achieve the goal, within its constraints",
    Axis.GROUNDING: "are its claims supported by the evidence and the verification",
    Axis.COORDINATION: "did the steps build on each other (plan, evidence, draft, critique "
    "used), without wasted or missing steps",
    Axis.RECOVERY: "did it notice and repair failures, retries and weak drafts",
}


def labels(count: int) -> list[str]:
    """Short, distinct labels for ``count`` trajectories: A, B, ... Z, A2, ..."""
    return [_LETTERS[i % 26] + (str(i // 26 + 1) if i >= 26 else "") for i in range(count)]


def score_schema(group_labels: Sequence[str]) -> dict[str, Any]:
    """The answer's JSON schema: one entry per label with a number per rubric axis (the
    subset strict structured outputs accept: all properties required, none extra)."""
    entry = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(group_labels)},
            **{axis.value: {"type": "number", "description": "0 to 1"} for axis in RUBRIC_WEIGHTS},
        },
        "required": ["label", *(axis.value for axis in RUBRIC_WEIGHTS)],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"scores": {"type": "array", "items": entry}},
        "required": ["scores"],
        "additionalProperties": False,
    }


def response_format(group_labels: Sequence[str], mode: str) -> dict[str, Any]:
    """As the cells do: the schema itself where the model supports structured outputs,
    else JSON mode with the schema in the prompt."""
    if mode == "json_object":
        return {"type": "json_object"}
    schema = {"name": "judge_scores", "strict": True, "schema": score_schema(group_labels)}
    return {"type": "json_schema", "json_schema": schema}


def prompt(
    trajectories: Sequence[TrajectoryCompleted],
    group_labels: Sequence[str],
    mode: str,
    rotation: int = 0,
) -> list[dict[str, str]]:
    """The messages of one judge's request. ``rotation`` shifts the order in which the
    trajectories are shown (labels stay with their trajectory), so that several judges do
    not all see the same trajectory first: position bias then averages out."""
    axes = "\n".join(
        f"- {axis.value} (weight {weight:g}): {_AXIS_MEANING[axis]}"
        for axis, weight in RUBRIC_WEIGHTS.items()
    )
    system = [
        "You are a judge comparing attempts at the same kind of task side by side. Score "
        "every attempt on each rubric axis with a number from 0 (worst) to 1 (best); use "
        "the comparison to spread the scores, but score each attempt on its own merits.",
        f"Rubric:\n{axes}",
        "Reply with one JSON object and nothing else: "
        '{"scores": [{"label": ..., one number per axis}, ...]} with one entry per label.',
    ]
    if mode == "json_object":
        system.append(
            "The object must match this JSON schema:\n" + json.dumps(score_schema(group_labels))
        )
    pairs = list(zip(group_labels, trajectories, strict=True))
    shift = rotation % len(pairs) if pairs else 0
    shown = pairs[shift:] + pairs[:shift]
    body = "\n\n".join(describe(label, t) for label, t in shown)
    return [
        {"role": "system", "content": "\n\n".join(system)},
        {"role": "user", "content": f"Attempts to score ({', '.join(group_labels)}):\n\n{body}"},
    ]


@dataclass(frozen=True)
class Part:
    """One request's share of a group: the labels it shows and its messages."""

    labels: list[str]
    messages: list[dict[str, str]]


def parts(
    trajectories: Sequence[TrajectoryCompleted],
    group_labels: Sequence[str],
    mode: str,
    fits: Callable[[list[dict[str, str]]], bool],
    rotation: int = 0,
) -> tuple[list[Part], list[str]]:
    """The requests a judge makes for a group, and the labels of attempts too long to show.

    A group whose prompt ``fits`` the judge's context window is one request. A longer one is
    halved until each part fits, so every attempt is still scored beside others rather than
    lost to a provider's 400; an attempt that does not fit even alone is left out.
    """
    messages = prompt(trajectories, group_labels, mode, rotation)
    if fits(messages):
        return [Part(list(group_labels), messages)], []
    if len(trajectories) == 1:
        return [], list(group_labels)
    half = len(trajectories) // 2
    head = parts(trajectories[:half], group_labels[:half], mode, fits, rotation)
    tail = parts(trajectories[half:], group_labels[half:], mode, fits, rotation)
    return head[0] + tail[0], head[1] + tail[1]


def describe(label: str, trajectory: TrajectoryCompleted) -> str:
    """One trajectory as the judge reads it: its goal, the handoff the cells wrote, what
    ran and what was skipped, and what went wrong on the way."""
    state, handoff = trajectory.state, trajectory.state.handoff
    lines = [f"=== Attempt {label} ===", f"Goal: {_cut(handoff.goal)}"]
    if handoff.constraints:
        lines.append("Constraints: " + "; ".join(handoff.constraints))
    if handoff.subproblem:
        lines.append(f"Plan: {_cut(handoff.subproblem)}")
    if handoff.evidence:
        shown = [f"- {_cut(e)}" for e in handoff.evidence[:EVIDENCE_ITEMS]]
        hidden = len(handoff.evidence) - len(shown)
        if hidden:
            shown.append(f"[... {hidden} more items]")
        lines.append("Evidence:\n" + "\n".join(shown))
    if handoff.draft_answer:
        lines.append(f"Draft answer: {_cut(handoff.draft_answer)}")
    if handoff.critique:
        lines.append(f"Critique: {_cut(handoff.critique)}")
    if handoff.verification:
        check = handoff.verification
        lines.append(f"Verification: {check.verdict.value}. {_cut(check.rationale)}".rstrip())
    final = trajectory.answer or handoff.merged_answer or handoff.draft_answer
    lines.append(f"Final answer: {_cut(final) if final else '(none)'}")
    steps = [f"{edge.action} ({edge.status.value})" for edge in state.visited]
    lines.append("Steps: " + (", ".join(steps) if steps else "(none)"))
    lines.append("Skipped: " + (", ".join(state.skipped) if state.skipped else "(none)"))
    lines.append(
        f"Failures: {state.failures}; retries: {trajectory.retries}; tokens: "
        f"{trajectory.tokens}; ended by: {trajectory.termination.value}"
    )
    return "\n".join(lines)


def _cut(text: str) -> str:
    if len(text) <= FIELD_CHARS:
        return text
    return text[:FIELD_CHARS] + f" [... {len(text) - FIELD_CHARS} more characters]"


@dataclass(frozen=True)
class Scored:
    """What one judge's readable answer says: rubric axes per label it scored well, and
    why it scored none for the other labels."""

    axes: dict[str, dict[Axis, float]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    """label -> why its entry was not used (missing, duplicated, bad axis values)."""
    ignored: int = 0
    """Entries naming no label of the group."""

    def __or__(self, other: "Scored") -> "Scored":
        """The scores of two parts of one group (their labels do not overlap)."""
        return Scored(
            {**self.axes, **other.axes},
            {**self.rejected, **other.rejected},
            self.ignored + other.ignored,
        )


def parse(content: str, group_labels: Sequence[str]) -> Scored:
    """The scores in a judge's answer; raises :class:`OutputError` when the answer cannot
    be read at all (not JSON, or no ``scores`` list), which is worth one more request."""
    try:
        raw = json.loads(unfenced(content))
    except ValueError as error:
        raise OutputError("invalid_json", f"not JSON: {error}") from None
    entries = raw.get("scores") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise OutputError("schema", 'no "scores" list in the answer')
    wanted = set(group_labels)
    axes: dict[str, dict[Axis, float]] = {}
    rejected: dict[str, str] = {}
    seen: set[str] = set()
    ignored = 0
    for entry in entries:
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(label, str) or label not in wanted:
            ignored += 1
            continue
        if label in seen:
            # Two different verdicts on one attempt: neither can be trusted over the other.
            axes.pop(label, None)
            rejected[label] = "scored more than once"
            continue
        seen.add(label)
        values = _axes(entry)
        if isinstance(values, str):
            rejected[label] = values
        else:
            axes[label] = values
    for label in group_labels:
        if label not in seen:
            rejected[label] = "not scored"
    return Scored(axes, rejected, ignored)


def _axes(entry: Mapping[str, Any]) -> dict[Axis, float] | str:
    """The entry's rubric axes, or why they are unusable.

    Out-of-range values are rejected, not clamped: a judge answering 7 or 85 is most likely
    scoring on a 1-10 or percent scale, and clamping would turn "7 out of 10" into a perfect
    score. Rejecting makes that judge abstain on this attempt while the others still count.
    """
    found: dict[Axis, float] = {}
    for axis in RUBRIC_WEIGHTS:
        value = entry.get(axis.value)
        # bool is an int in Python, and "true" is no score.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{axis.value} is not a number"
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return f"{axis.value} = {value} is outside [0, 1]"
        found[axis] = float(value)
    return found


__all__ = [
    "EVIDENCE_ITEMS",
    "FIELD_CHARS",
    "Part",
    "Scored",
    "correction",
    "describe",
    "labels",
    "parse",
    "parts",
    "prompt",
    "response_format",
    "score_schema",
]
