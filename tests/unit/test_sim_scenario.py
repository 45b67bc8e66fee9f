"""Scenario files: validation messages, the loader, and the two shipped scenarios."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.records import Regime
from services.policy import detect_regime, fixed_pipeline, paper_pool
from services.sim import ScenarioError, load_scenario, parse_scenario, shipped_scenarios


def small() -> dict[str, Any]:
    """A minimal valid scenario with its own cells."""
    return {
        "name": "small",
        "description": "two cells",
        "cells": [
            {"name": "solver", "role": "solver", "variants": [{"model": "a"}, {"model": "b"}]},
            {"name": "evaluator", "role": "evaluator"},
        ],
        "plan": ["solver", "evaluator"],
        "defaults": {
            "solver": {"tokens_in": 100, "tokens_out": 50},
            "evaluator": {"tokens_in": 10, "tokens_out": 5},
        },
        "judges": [{"name": "j", "noise_sd": 0.1}],
        "classes": [
            {"name": "K", "description": "k", "features": {}, "count": 2, "base_quality": 0.5}
        ],
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(yaml.safe_dump(data), "bad.yaml")
    lines = str(caught.value).splitlines()
    assert all(line.startswith("bad.yaml: ") for line in lines)
    return [line.removeprefix("bad.yaml: ") for line in lines]


def test_small_scenario_is_valid() -> None:
    scenario = parse_scenario(yaml.safe_dump(small()), "small.yaml")
    assert scenario.tasks_per_epoch == 2
    assert scenario.classes["K"].plan == ("solver", "evaluator")


def test_plan_naming_an_unknown_cell() -> None:
    data = small()
    data["plan"] = ["solver", "critic", "evaluator"]
    assert problems_of(data) == ["plan: plan for straightforward names unknown cells ['critic']"]


def test_unknown_key_and_out_of_range_feature_are_each_one_line() -> None:
    data = small()
    data["colour"] = "blue"
    data["classes"][0]["features"] = {"ambiguity_level": 1.5}
    problems = problems_of(data)
    assert len(problems) == 2
    assert any(p.startswith("colour:") for p in problems)
    assert any(p.startswith("classes.0.features.ambiguity_level:") for p in problems)


def test_pipeline_and_cells_are_exclusive() -> None:
    data = small()
    data["pipeline"] = "paper"
    assert problems_of(data) == [
        "(top level): Value error, give exactly one of 'pipeline' or 'cells'"
    ]


def test_selector_matching_nothing_and_unknown_absent_cell() -> None:
    data = small()
    data["classes"][0]["effects"] = {"solver@c": {"gain": 0.1}}
    data["classes"][0]["absent"] = {"critic": -0.2}
    problems = problems_of(data)
    assert "classes.0.effects.solver@c: matches no variant of the pool" in problems
    assert any(p.startswith("classes.0.absent.critic: no cell 'critic'") for p in problems)


def test_every_variant_needs_token_figures() -> None:
    data = small()
    data["defaults"]["solver@a"] = {"tokens_in": 100, "tokens_out": 50}
    data["defaults"]["solver"] = {"tokens_in": 100}
    problems = problems_of(data)
    assert problems == [
        "defaults: variant solver@b has no tokens_out; set it on a selector that matches it "
        "(e.g. 'solver')"
    ]


def test_equally_specific_selectors_setting_one_field_are_ambiguous() -> None:
    data = small()
    data["cells"][0]["variants"] = [{"protocol": "p", "model": "a"}]
    data["defaults"]["solver.p"] = {"failure": 0.1}
    data["defaults"]["solver@a"] = {"failure": 0.2}
    (problem,) = problems_of(data)
    assert "solver.p@a gets this from both 'solver.p' and 'solver@a'" in problem


def test_most_specific_selector_wins_and_gains_add_up() -> None:
    data = small()
    data["defaults"]["solver"]["gain"] = 0.1
    data["defaults"]["solver@b"] = {"tokens_in": 300, "gain": 0.05}
    data["classes"][0]["effects"] = {
        "solver": {"gain": -0.1, "token_factor": 2.0},
        "solver@b": {"gain": 0.02},
    }
    task_class = parse_scenario(yaml.safe_dump(data), "x").classes["K"]
    assert task_class.costs["solver@a"].tokens_in.mean == 200
    assert task_class.costs["solver@b"].tokens_in.mean == 600
    assert task_class.costs["solver@b"].tokens_out.mean == 100
    assert task_class.gains[0, :2] == pytest.approx([0.0, 0.07])


def test_default_variants_have_no_gain() -> None:
    data = small()
    data["classes"][0]["effects"] = {"evaluator": {"gain": -0.02}}
    (problem,) = problems_of(data)
    assert problem.startswith("classes.0.effects: the default variant evaluator has gain -0.02")


def test_retrieval_cells_need_an_evidence_count() -> None:
    data = small()
    data["cells"].insert(0, {"name": "memory", "role": "memory"})
    data["plan"] = ["memory", "solver", "evaluator"]
    data["defaults"]["memory"] = {"tokens_in": 1, "tokens_out": 1}
    (problem,) = problems_of(data)
    assert problem.startswith("classes.0.evidence: no evidence count for cell 'memory'")
    data["evidence"] = {"memory": 4}
    assert parse_scenario(yaml.safe_dump(data), "x").classes["K"].evidence == {"memory": 4}


def test_yaml_syntax_error_names_the_file() -> None:
    with pytest.raises(ScenarioError, match=r"^broken\.yaml: line 1, column 16: not YAML: "):
        parse_scenario("name: [unclosed", "broken.yaml")


def test_unknown_name_lists_the_shipped_scenarios() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario("no-such-scenario")
    message = str(caught.value)
    assert "unknown scenario 'no-such-scenario'" in message
    assert "security-advisories" in message and "distributed-systems" in message


def test_missing_file_path(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "absent.yaml")


def test_loads_a_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(small()), encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.name == "small"
    assert scenario.source == str(path)


# --- the shipped scenarios ------------------------------------------------------------------


def test_both_corpora_are_shipped() -> None:
    assert set(shipped_scenarios()) >= {"security-advisories", "distributed-systems"}


@pytest.mark.parametrize("name", ["security-advisories", "distributed-systems"])
def test_shipped_scenarios_have_eight_classes_sixty_tasks_and_the_paper_pool(name: str) -> None:
    scenario = load_scenario(name)
    assert len(scenario.classes) == 8
    assert scenario.tasks_per_epoch == 60
    assert scenario.pool.actions == paper_pool().actions
    for task_class in scenario.classes.values():
        assert task_class.plan == paper_pool().plan_for(task_class.regime)


def test_security_advisories_regimes_follow_the_paper_detector() -> None:
    scenario = load_scenario("security-advisories")
    regimes = {name: detect_regime(c.features) for name, c in scenario.classes.items()}
    assert regimes == {
        "C1": Regime.STRAIGHTFORWARD,
        "C2": Regime.EVIDENCE_HEAVY,
        "C3": Regime.EVIDENCE_HEAVY,
        "C4": Regime.EVIDENCE_HEAVY,
        "C5": Regime.AMBIGUOUS,
        "C6": Regime.STRAIGHTFORWARD,
        "C7": Regime.EVIDENCE_HEAVY,
        "C8": Regime.STRAIGHTFORWARD,
    }
    counts = [c.count for c in scenario.classes.values()]
    assert counts == [8, 8, 7, 8, 7, 7, 7, 8]


@pytest.mark.parametrize("name", ["security-advisories", "distributed-systems"])
def test_fixed_pipeline_costs_are_of_the_papers_order(name: str) -> None:
    """Mean tokens of one pass of the fixed pipeline, before failures: 10k to 16k."""
    scenario = load_scenario(name)
    per_class = []
    for task_class in scenario.classes.values():
        actions = fixed_pipeline(scenario.pool, task_class.regime)
        costs = [task_class.costs[a] for a in actions]
        per_class.append(sum(c.tokens_in.mean + c.tokens_out.mean for c in costs))
    assert 10_000 <= sum(per_class) / len(per_class) <= 16_000
