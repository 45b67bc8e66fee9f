"""The rubric and the simulated judge."""

import math

import pytest

from schemas.events import RewardObserved
from schemas.records import Axis
from services.policy.rubric import RUBRIC_WEIGHTS, judge_confidence, overall_score
from services.sim import SimulatedJudge
from services.sim.spec import JudgeSpec


def test_rubric_weights_are_the_papers() -> None:
    assert dict(RUBRIC_WEIGHTS) == {
        Axis.GOAL_ACHIEVEMENT: 0.3,
        Axis.GROUNDING: 0.3,
        Axis.COORDINATION: 0.2,
        Axis.RECOVERY: 0.2,
    }


def test_overall_is_the_weighted_sum() -> None:
    axes = {
        Axis.GOAL_ACHIEVEMENT: 1.0,
        Axis.GROUNDING: 0.5,
        Axis.COORDINATION: 0.0,
        Axis.RECOVERY: 0.25,
    }
    assert overall_score(axes) == pytest.approx(0.3 + 0.15 + 0.0 + 0.05)


@pytest.mark.parametrize(
    ("overall", "confidence"),
    [
        ([0.6], 1.0),  # one judge cannot disagree
        ([0.5, 0.7], 0.5),  # std 0.1
        ([0.2, 0.8], 0.0),  # std 0.3, clamped
        ([0.5, 0.5, 0.8], 1.0 - math.sqrt(0.02) / 0.2),  # std sqrt(0.06 / 3)
        ([0.4, 0.4, 0.4], 1.0),
    ],
)
def test_confidence_formula(overall: list[float], confidence: float) -> None:
    assert judge_confidence(overall) == pytest.approx(confidence)


def test_confidence_needs_a_judge() -> None:
    with pytest.raises(ValueError):
        judge_confidence([])


def test_noiseless_judges_report_bias_and_disagreement() -> None:
    judges = [
        JudgeSpec(name="up", noise_sd=0.0, bias=0.1),
        JudgeSpec(name="down", noise_sd=0.0, bias=-0.1),
    ]
    judgement = SimulatedJudge(judges, seed=0).score("t", 0.5)
    assert [s.overall for s in judgement.scores] == pytest.approx([0.6, 0.4])
    assert judgement.quality == pytest.approx(0.5)
    assert judgement.confidence == pytest.approx(0.5)


def test_axis_scores_are_clipped() -> None:
    judge = SimulatedJudge([JudgeSpec(name="kind", noise_sd=0.0, bias=0.2)], seed=0)
    judgement = judge.score("t", 0.95)
    assert set(judgement.scores[0].axes.values()) == {1.0}
    assert judgement.quality == 1.0


def test_scores_depend_on_seed_and_trajectory_not_on_the_group() -> None:
    judges = [JudgeSpec(name=f"j{i}", noise_sd=0.1) for i in range(3)]
    judge = SimulatedJudge(judges, seed=4)
    group = judge.score_group([("a", 0.7), ("b", 0.3)])
    assert judge.score_group([("b", 0.3), ("a", 0.7)]) == group[::-1]
    assert group[0] == judge.score("a", 0.7)
    assert SimulatedJudge(judges, seed=5).score("a", 0.7) != group[0]
    assert judge.score("c", 0.7) != group[0]


def test_judgement_maps_onto_reward_observed() -> None:
    judges = [JudgeSpec(name="j1", noise_sd=0.05), JudgeSpec(name="j2", noise_sd=0.05)]
    judgement = SimulatedJudge(judges, seed=1).score("traj-1", 0.6)
    event = judgement.to_event(task_id="task-1", group_id="g")
    assert isinstance(event, RewardObserved)
    assert (event.trajectory_id, event.task_id, event.group_id) == ("traj-1", "task-1", "g")
    assert event.quality == judgement.quality
    assert event.confidence == judgement.confidence
    assert [s.judge for s in event.judges] == ["j1", "j2"]
    assert RewardObserved.model_validate_json(event.model_dump_json()) == event
