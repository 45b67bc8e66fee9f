"""The oracle on a scenario small enough to enumerate and price by hand."""

from typing import Any

import numpy as np
import pytest
import yaml

from schemas.records import (
    Handoff,
    Regime,
    RewardConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
    VisitedEdge,
)
from services.policy.arms import policy_setup
from services.sim import Engine, Oracle, load_scenario, parse_scenario

#: A cost term that bites below the paper's 8,000 tokens, so cheap paths can win.
REWARD = RewardConfig(token_cap=2_000)


def hand_scenario() -> dict[str, Any]:
    """memory -> solver (cheap | good) -> evaluator; base 0.6; only solver@good fails
    (p = 0.5 per attempt, one retry: succeeds with 0.75, 1.5 attempts expected)."""
    return {
        "name": "hand",
        "description": "priced by hand",
        "cells": [
            {"name": "memory", "role": "memory"},
            {
                "name": "solver",
                "role": "solver",
                "variants": [{"model": "cheap"}, {"model": "good"}],
            },
            {"name": "evaluator", "role": "evaluator"},
        ],
        "plan": ["memory", "solver", "evaluator"],
        "max_retries": 1,
        "defaults": {
            "memory": {"tokens_in": 200, "tokens_out": 800},
            "solver@cheap": {"tokens_in": 400, "tokens_out": 100},
            "solver@good": {"tokens_in": 1000, "tokens_out": 1000, "failure": 0.5, "gain": 0.25},
            "evaluator": {"tokens_in": 200, "tokens_out": 0},
        },
        "absent": {"solver": -1.0, "evaluator": -0.05, "memory": -0.10},
        "evidence": {"memory": 2},
        "judges": [{"name": "j", "noise_sd": 0.0}],
        "classes": [
            {"name": "T", "description": "t", "features": {}, "count": 3, "base_quality": 0.6}
        ],
    }


# (invoked actions, memory late) -> expected reward, worked out in the comments.
HAND_REWARDS = {
    # no answer: Q = clip(0.6 - 1 - 0.05) = 0; T = 1000 -> cost 0.3 * 0.5
    (("memory",), False): -0.15,
    # Q = 0.6 - 0.10 (no memory); T = 700 -> 0.105
    (("solver@cheap", "evaluator"), False): 0.395,
    # Q = 0.6; T = 1700 -> 0.255
    (("memory", "solver@cheap", "evaluator"), False): 0.345,
    # memory after the draft does not count: Q = 0.5; T = 1700
    (("memory", "solver@cheap", "evaluator"), True): 0.245,
    # Q = 0.6 - 0.10 - 0.05 (no evaluator); T = 1500 -> 0.225
    (("memory", "solver@cheap"), True): 0.225,
    # EQ = 0.75 * 0.75; T = 2250 + 0.75 * 200 (capped: 0.3); retries 0.5 -> 0.075
    (("solver@good", "evaluator"), False): 0.1875,
    # EQ = 0.75 * 0.85; T = 3400
    (("memory", "solver@good", "evaluator"), False): 0.2625,
    # EQ = 0.75 * 0.75; T = 3400
    (("memory", "solver@good", "evaluator"), True): 0.1875,
    # EQ = 0.75 * 0.70; T = 3250
    (("memory", "solver@good"), True): 0.15,
}


def oracle() -> Oracle:
    return Oracle(parse_scenario(yaml.safe_dump(hand_scenario()), "hand"), REWARD)


def test_every_reachable_path_and_its_expected_reward() -> None:
    best = oracle().for_class("T")
    found = {
        (best.actions(row), bool(best.paths.late[row].any())): float(best.reward[row])
        for row in range(len(best.paths))
    }
    assert found.keys() == HAND_REWARDS.keys()
    for path, reward in HAND_REWARDS.items():
        assert found[path] == pytest.approx(reward), path


def test_expected_quality_tokens_and_retries_of_the_failing_variant() -> None:
    best = oracle().for_class("T")
    row = next(
        r
        for r in range(len(best.paths))
        if best.actions(r) == ("memory", "solver@good", "evaluator")
        and not best.paths.late[r].any()
    )
    assert best.quality[row] == pytest.approx(0.75 * 0.85)
    assert best.tokens[row] == pytest.approx(1000 + 1500 * 1.5 + 0.75 * 200)
    assert best.retries[row] == pytest.approx(0.5)


def test_the_oracle_is_the_cheap_solver_without_memory() -> None:
    best = oracle().for_class("T")
    assert best.actions(best.best) == ("solver@cheap", "evaluator")
    assert best.best_reward == pytest.approx(0.395)


def test_regret_of_trajectories() -> None:
    """The fixed pipeline (memory, solver@cheap, evaluator) earns 0.345 in expectation."""
    scenario = parse_scenario(yaml.safe_dump(hand_scenario()), "hand")
    engine = Engine(scenario, policy_setup(scenario, "fixed"), reward=REWARD)
    record = engine.trajectory(1, scenario.classes["T"], "t-1")
    assert record.regret == pytest.approx(0.395 - 0.345)


def test_undecided_cells_are_completed_in_the_best_way() -> None:
    """A trajectory whose solver failed never decided on the evaluator: it is charged as if
    it had taken the best completion (the evaluator), not as if it had given it up."""
    data = hand_scenario()
    data["defaults"]["solver@cheap"]["failure"] = 0.5
    scenario = parse_scenario(yaml.safe_dump(data), "hand")
    engine = Engine(scenario, policy_setup(scenario, "fixed"), reward=REWARD)
    records = (engine.trajectory(1, scenario.classes["T"], f"t-{i}") for i in range(100))
    record = next(r for r in records if "evaluator" not in r.state.invoked)
    assert not record.state.done
    best = engine.regret_oracle.for_class("T")
    # With the evaluator: EQ = 0.75 * 0.6, T = 1000 + 450 * 1.5 + 0.75 * 200, 0.5 retries.
    # (Without it the path would be worth 0.75 * 0.55 - 0.3 * 1675 / 2000 - 0.075.)
    with_evaluator = 0.45 - 0.3 * 1825 / 2000 - 0.075
    assert best.best_reward - record.regret == pytest.approx(with_evaluator)


def finished(actions: list[str], skipped: list[str]) -> TrajectoryState:
    """A trajectory that invoked ``actions`` in order, all successfully, and is done."""
    visited = [
        VisitedEdge(step=i, signature="s", action=a, propensity=1.0, status=StepStatus.SUCCEEDED)
        for i, a in enumerate(actions)
    ]
    return TrajectoryState(
        task_id="t",
        trajectory_id="t",
        regime=Regime.STRAIGHTFORWARD,
        task_class="T",
        features=TaskFeatures(),
        plan=["memory", "solver", "evaluator"],
        handoff=Handoff(goal="g"),
        invoked=[a.split("@")[0] for a in actions],
        skipped=skipped,
        visited=visited,
        done=True,
    )


def test_regret_of_hand_built_trajectories() -> None:
    oracle_ = oracle()
    best = oracle_.for_class("T").best_reward
    assert oracle_.regret(finished(["solver@cheap", "evaluator"], ["memory"])) == pytest.approx(0)
    in_order = finished(["memory", "solver@good", "evaluator"], [])
    assert oracle_.regret(in_order) == pytest.approx(best - 0.2625)
    late_memory = finished(["solver@good", "memory", "evaluator"], [])
    assert oracle_.regret(late_memory) == pytest.approx(best - 0.1875)


def test_classes_of_one_regime_share_the_enumeration() -> None:
    scenario = load_scenario("security-advisories")
    oracle_ = Oracle(scenario)
    c2, c3 = oracle_.for_class("C2"), oracle_.for_class("C3")
    assert c2.paths is c3.paths
    assert not np.array_equal(c2.reward, c3.reward)
