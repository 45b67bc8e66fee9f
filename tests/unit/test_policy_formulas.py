"""Every paper formula against numbers computed by hand."""

import math

import pytest

from schemas.records import RewardConfig, SelectionConfig, TaskFeatures
from services.policy import detect_regime, exploration_constant, hybrid_reward
from services.policy.selection import ucb_score

# --- regime detector ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({}, "straightforward"),
        ({"contradiction_risk": 0.7}, "straightforward"),
        ({"contradiction_risk": 0.7000001}, "contradictory"),
        ({"ambiguity_level": 0.7}, "straightforward"),
        ({"ambiguity_level": 0.71}, "ambiguous"),
        # first match wins: contradiction beats ambiguity
        ({"contradiction_risk": 0.9, "ambiguity_level": 0.9}, "contradictory"),
        ({"evidence_availability": 0.71, "verification_need": 0.61}, "evidence_heavy"),
        ({"evidence_availability": 0.7, "verification_need": 0.9}, "high_risk"),
        ({"evidence_availability": 0.71, "verification_need": 0.6}, "straightforward"),
        ({"verification_need": 0.8}, "straightforward"),
        ({"verification_need": 0.81}, "high_risk"),
        # evidence_heavy is checked before high_risk
        ({"evidence_availability": 0.9, "verification_need": 0.95}, "evidence_heavy"),
        (
            {"ambiguity_level": 0.8, "evidence_availability": 0.9, "verification_need": 0.9},
            "ambiguous",
        ),
    ],
)
def test_regime_rules_are_strict_and_ordered(features: dict[str, float], expected: str) -> None:
    assert detect_regime(TaskFeatures(**features)).value == expected


# --- exploration constant ---------------------------------------------------------------


def test_exploration_constant_at_paper_checkpoints() -> None:
    assert exploration_constant(0) == pytest.approx(1.4, abs=1e-12)
    assert exploration_constant(50) == pytest.approx(0.7, abs=1e-12)
    # 1.4 * 2^-1.5 = 0.494975 < 0.5: the floor takes over
    assert exploration_constant(75) == 0.5
    assert exploration_constant(10_000) == 0.5
    assert exploration_constant(25) == pytest.approx(1.4 / math.sqrt(2), abs=1e-12)


def test_exploration_constant_follows_config() -> None:
    config = SelectionConfig(c_min=0.1, c_initial=2.0, c_half_life=10.0)
    assert exploration_constant(20, config) == pytest.approx(0.5, abs=1e-12)
    assert exploration_constant(100, config) == pytest.approx(0.1, abs=1e-12)


# --- UCB score --------------------------------------------------------------------------


def test_ucb_score_for_a_tried_action() -> None:
    # N = 10, n = 4, f = 1, mean = 0.6, c = 1.4 * 2^(-10/50)
    c = 1.4 * 2 ** (-0.2)
    score, bonus, penalty = ucb_score(0.6, 4, 1, math.log(11), c, 0.5)
    assert bonus == pytest.approx(c * math.sqrt(math.log(11) / 4), abs=1e-12)
    assert penalty == pytest.approx(0.5 * 1 / 5, abs=1e-12)
    assert score == pytest.approx(0.6 + c * math.sqrt(math.log(11) / 4) - 0.1, abs=1e-12)


def test_ucb_score_for_an_action_that_only_failed() -> None:
    score, _, penalty = ucb_score(0.0, 0, 3, math.log(21), 0.9, 0.5)
    assert penalty == 0.5
    assert score == pytest.approx(-0.5 + 0.9 * math.sqrt(math.log(21) / 3), abs=1e-12)


def test_ucb_score_for_an_untried_action_is_infinite() -> None:
    assert ucb_score(0.0, 0, 0, math.log(6), 1.0, 0.5)[0] == math.inf


# --- hybrid reward ----------------------------------------------------------------------


def test_hybrid_reward_paper_defaults() -> None:
    assert hybrid_reward(0.8, 4_000, 0) == pytest.approx(0.8 - 0.3 * 0.5, abs=1e-12)
    assert hybrid_reward(0.8, 4_000, 2) == pytest.approx(0.65 - 0.30, abs=1e-12)


def test_hybrid_reward_cost_saturates_at_8000_tokens() -> None:
    assert hybrid_reward(0.9, 8_000, 0) == pytest.approx(0.6, abs=1e-12)
    assert hybrid_reward(0.9, 25_198, 0) == pytest.approx(0.6, abs=1e-12)
    assert hybrid_reward(0.9, 12_960, 1) == pytest.approx(0.45, abs=1e-12)


@pytest.mark.parametrize(("quality", "clamped"), [(1.3, 1.0), (-0.2, 0.0), (0.4, 0.4)])
def test_hybrid_reward_clamps_quality_into_the_unit_interval(
    quality: float, clamped: float
) -> None:
    assert hybrid_reward(quality, 4_000, 1) == pytest.approx(clamped - 0.15 - 0.15, abs=1e-12)


def test_hybrid_reward_uses_its_config() -> None:
    config = RewardConfig(quality_weight=2.0, cost_weight=0.5, token_cap=1_000, retry_penalty=0.0)
    assert hybrid_reward(0.5, 500, 3, config) == pytest.approx(1.0 - 0.25, abs=1e-12)
