"""The RelativeJudge rubric: axis weights, the overall score and the
confidence derived from judges' disagreement. Pure, so the real judge can share it."""

import statistics
from collections.abc import Mapping, Sequence

from schemas.records import Axis

RUBRIC_WEIGHTS: Mapping[Axis, float] = {
    Axis.GOAL_ACHIEVEMENT: 0.3,
    Axis.GROUNDING: 0.3,
    Axis.COORDINATION: 0.2,
    Axis.RECOVERY: 0.2,
}

#: The spread of judges' overall scores at which confidence reaches zero.
DISAGREEMENT_SCALE = 0.2


def overall_score(axes: Mapping[Axis, float]) -> float:
    """Weighted sum of the axis scores, kept in [0, 1] against float round-off."""
    return min(1.0, max(0.0, sum(RUBRIC_WEIGHTS[axis] * axes[axis] for axis in RUBRIC_WEIGHTS)))


def judge_confidence(overall: Sequence[float]) -> float:
    """``clamp(1 - std/0.2, 0, 1)`` with the population std of the judges' overall scores;
    a single judge cannot disagree with itself and gets 1."""
    if not overall:
        raise ValueError("confidence needs at least one judge's score")
    spread = statistics.pstdev(overall)
    return min(1.0, max(0.0, 1.0 - spread / DISAGREEMENT_SCALE))
