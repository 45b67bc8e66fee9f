"""The simulated world: determinism, failures and retries, handoff deltas, latent quality."""

from typing import Any

import pytest
import yaml

from schemas.events import FailureKind
from schemas.records import PendingStep, StepStatus, TrajectoryState, Verdict
from services.policy import PolicyGraph, PolicySetup, Variant, absorb, advance, start_state
from services.policy.arms import policy_setup
from services.policy.outcomes import Execution
from services.sim import Scenario, World, load_scenario, parse_scenario


def line_scenario(**class_fields: Any) -> dict[str, Any]:
    """planner -> memory -> solver -> verifier -> evaluator, no noise in tokens."""
    cells = [
        ("planner", "planner"),
        ("memory", "memory"),
        ("solver", "solver"),
        ("verifier", "verifier"),
        ("evaluator", "evaluator"),
    ]
    return {
        "name": "line",
        "description": "one of each",
        "cells": [{"name": n, "role": r} for n, r in cells],
        "plan": [n for n, _ in cells],
        "max_retries": 2,
        "defaults": {n: {"tokens_in": 100, "tokens_out": 40} for n, _ in cells},
        "absent": {"solver": -1.0},
        "evidence": {"memory": 3},
        "judges": [{"name": "j", "noise_sd": 0.0}],
        "classes": [
            {
                "name": "K",
                "description": "k",
                "features": {},
                "count": 1,
                "base_quality": 0.5,
                **class_fields,
            }
        ],
    }


def build(data: dict[str, Any]) -> Scenario:
    return parse_scenario(yaml.safe_dump(data), "test")


def first_invoke(
    scenario: Scenario, trajectory_id: str = "t-1", task_class: str = "K"
) -> tuple[TrajectoryState, Variant, PolicySetup]:
    setup = policy_setup(scenario, "fixed")
    features = scenario.classes[task_class].features
    state = start_state(
        task_id=trajectory_id,
        trajectory_id=trajectory_id,
        goal="g",
        features=features,
        setup=setup,
        task_class=task_class,
    )
    steps, _ = advance(state, PolicyGraph(), setup)
    variant = steps[-1].variant
    assert variant is not None
    return steps[-1].state, variant, setup


def run(
    world: World, scenario: Scenario, trajectory_id: str = "t-1", task_class: str = "K"
) -> list[Execution]:
    """Run the fixed pipeline to the end; return every execution."""
    state, variant, setup = first_invoke(scenario, trajectory_id, task_class)
    executions = []
    while True:
        execution = world.execute(state, variant)
        executions.append(execution)
        state = absorb(state, execution.result, setup)
        steps, ended = advance(state, PolicyGraph(), setup)
        if ended is not None:
            return executions
        state = steps[-1].state
        assert steps[-1].variant is not None
        variant = steps[-1].variant


def test_same_decision_same_outcome_even_from_another_world() -> None:
    scenario = load_scenario("security-advisories")
    state, variant, _ = first_invoke(scenario, task_class="C2")
    assert World(scenario, 7).execute(state, variant) == World(scenario, 7).execute(state, variant)


def test_a_whole_trajectory_replays_identically_and_another_seed_differs() -> None:
    scenario = load_scenario("security-advisories")
    first = run(World(scenario, 7), scenario, "t-1", "C3")
    assert len(first) == 7
    assert run(World(scenario, 7), scenario, "t-1", "C3") == first
    assert run(World(scenario, 8), scenario, "t-1", "C3") != first
    assert run(World(scenario, 7), scenario, "t-2", "C3") != first


def test_zero_failure_costs_one_attempt() -> None:
    scenario = build(line_scenario())
    state, variant, _ = first_invoke(scenario)
    execution = World(scenario, 0).execute(state, variant)
    assert execution.result.succeeded
    assert (execution.attempts, execution.result.retries) == (1, 0)
    assert (execution.tokens_in, execution.tokens_out, execution.result.tokens) == (100, 40, 140)
    assert execution.failure_kind is None


def test_every_attempt_failing_fails_the_step_after_all_retries() -> None:
    scenario = build(line_scenario(effects={"planner": {"failure": 1.0}}))
    state, variant, setup = first_invoke(scenario)
    execution = World(scenario, 0).execute(state, variant)
    assert not execution.result.succeeded
    assert (execution.attempts, execution.result.retries) == (3, 2)
    # Failed attempts spend their prompt tokens; no output survives.
    assert (execution.tokens_in, execution.tokens_out, execution.result.tokens) == (300, 0, 300)
    assert execution.failure_kind is FailureKind.SIMULATED
    assert execution.status is StepStatus.FAILED
    after = absorb(state, execution.result, setup)
    assert (after.failures, after.retries, after.tokens_used) == (1, 2, 300)


def test_a_retry_that_succeeds_is_counted() -> None:
    scenario = build(line_scenario(effects={"planner": {"failure": 0.5}}))
    world = World(scenario, 0)
    executions = [world.execute(*first_invoke(scenario, f"t-{i}")[:2]) for i in range(40)]
    second_try = [e for e in executions if e.attempts == 2]
    assert second_try, "with p = 0.5 some step must succeed on its second attempt"
    for execution in second_try:
        assert execution.result.succeeded and execution.result.retries == 1
        assert execution.result.tokens == 2 * 100 + 40


def test_handoff_deltas_by_role() -> None:
    scenario = build(line_scenario())
    planner, memory, solver, verifier, evaluator = run(World(scenario, 0), scenario)
    assert planner.result.delta.subproblem
    assert len(memory.result.delta.evidence) == 3
    assert solver.result.delta.draft_answer
    assert verifier.result.delta.verification is not None
    assert evaluator.result.done and not solver.result.done


@pytest.mark.parametrize(
    ("base", "verdict"), [(1.0, Verdict.SUPPORTED), (0.0, Verdict.UNSUPPORTED)]
)
def test_verdict_follows_the_draft_quality(base: float, verdict: Verdict) -> None:
    scenario = build(line_scenario(base_quality=base))
    for seed in range(5):
        verification = run(World(scenario, seed), scenario)[3].result.delta.verification
        assert verification is not None and verification.verdict is verdict


def finish(
    scenario: Scenario, order: list[str], skip: list[str], actions: dict[str, str] | None = None
) -> TrajectoryState:
    """Run the given cells in the given order (skipping ``skip`` first), each on its default
    variant unless ``actions`` names another."""
    setup = policy_setup(scenario, "fixed")
    world = World(scenario, 0)
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="g",
        features=scenario.classes["K"].features,
        setup=setup,
        task_class="K",
    )
    state = state.model_copy(update={"skipped": skip})
    for cell in order:
        variant = scenario.pool.variant((actions or {}).get(cell, cell))
        pending = PendingStep(
            step=state.step, signature="s", action=variant.action, cell=cell, propensity=1.0
        )
        state = state.model_copy(update={"pending": pending})
        state = absorb(state, world.execute(state, variant).result, setup)
    return state


def test_latent_quality_is_base_plus_gains_plus_absence_effects() -> None:
    absent = {"planner": -0.1, "memory": -0.3, "verifier": -0.2, "evaluator": -0.05}
    data = line_scenario(base_quality=0.8, absent=absent)
    data["cells"][2]["variants"] = [{}, {"model": "big"}]
    data["defaults"]["solver@big"] = {"gain": 0.15}
    scenario = build(data)
    world = World(scenario, 0)
    full = ["planner", "memory", "solver", "verifier", "evaluator"]
    assert world.true_quality(finish(scenario, full, [])) == pytest.approx(0.8)
    big = finish(scenario, full, [], {"solver": "solver@big"})
    assert world.true_quality(big) == pytest.approx(0.8 + 0.15)
    no_memory = finish(scenario, ["planner", "solver", "verifier"], ["memory", "evaluator"])
    assert world.true_quality(no_memory) == pytest.approx(0.8 - 0.3 - 0.05)
    # Memory after the draft was written informs nothing: it counts as absent.
    late = ["planner", "solver", "memory", "verifier", "evaluator"]
    assert world.true_quality(finish(scenario, late, [])) == pytest.approx(0.8 - 0.3)
    no_answer = finish(scenario, ["planner", "memory"], ["solver"])
    assert world.true_quality(no_answer) == 0.0
