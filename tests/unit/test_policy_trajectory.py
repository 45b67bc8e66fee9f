"""Legal actions, skip:X, and a trajectory's life in the router's pure logic."""

import pytest

from schemas.events import Termination
from schemas.records import (
    Budget,
    FoldSpec,
    HandoffDelta,
    Regime,
    SelectionConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
)
from services.policy import (
    PAPER_PLAN,
    PolicyGraph,
    PolicySetup,
    StepResult,
    absorb,
    advance,
    backup,
    candidate_actions,
    decide,
    fixed_pipeline,
    legal_cells,
    paper_pool,
    signature_of,
    start_state,
)

SETUP = PolicySetup()
EVIDENCE = TaskFeatures(evidence_availability=0.9, verification_need=0.7)


def _state(**kw: object) -> TrajectoryState:
    args: dict[str, object] = {
        "task_id": "t1",
        "trajectory_id": "tr1",
        "goal": "g",
        "features": EVIDENCE,
        "setup": SETUP,
    }
    args.update(kw)
    return start_state(**args)  # type: ignore[arg-type]


def test_paper_pool_has_sixteen_variants_and_the_fixed_baseline_has_seven_cells() -> None:
    pool = paper_pool()
    assert len(pool.actions) == 16
    assert fixed_pipeline(pool, Regime.AMBIGUOUS) == (
        "planner",
        "memory",
        "web_search_primary",
        "web_search_secondary",
        "solver.chain_of_thought@balanced",
        "verifier@balanced",
        "evaluator",
    )


def test_initial_candidates_respect_preconditions_and_order() -> None:
    s = _state()
    assert s.regime is Regime.EVIDENCE_HEAVY
    assert legal_cells(s, SETUP.pool) == list(PAPER_PLAN[:5])  # no draft: no verifier/evaluator
    cands = candidate_actions(s, SETUP.pool)
    assert cands[:4] == ["planner", "memory", "web_search_primary", "web_search_secondary"]
    assert len([c for c in cands if c.startswith("solver.")]) == 9
    assert cands[-5:] == [
        "skip:planner",
        "skip:memory",
        "skip:web_search_primary",
        "skip:web_search_secondary",
        "skip:solver",
    ]
    assert candidate_actions(s, SETUP.pool, allow_skip=False) == cands[:-5]


def test_the_last_legal_cell_cannot_be_skipped() -> None:
    s = _state().model_copy(
        update={"invoked": ["planner", "memory", "web_search_primary", "web_search_secondary"]}
    )
    cands = candidate_actions(s, SETUP.pool)
    assert cands == [v.action for v in SETUP.pool.cells["solver"].variants]


def _run(
    setup: PolicySetup,
    graph: PolicyGraph,
    state: TrajectoryState,
    fail: frozenset[str] = frozenset(),
) -> tuple[TrajectoryState, Termination, list[str]]:
    actions: list[str] = []
    while True:
        steps, ended = advance(state, graph, setup)
        actions += [s.action for s in steps]
        if ended is not None:
            return state if not steps else steps[-1].state, ended, actions
        step = steps[-1]
        role = setup.pool.cells[step.cell].role.value
        delta = {
            "planner": HandoffDelta(subproblem="p"),
            "memory": HandoffDelta(evidence=["e1", "e2"]),
            "solver": HandoffDelta(draft_answer="d"),
        }.get(role, HandoffDelta())
        state = absorb(
            step.state,
            StepResult(
                succeeded=step.cell not in fail,
                delta=delta,
                tokens=100,
                retries=0,
                done=role == "evaluator",
            ),
            setup,
        )


def test_fixed_mode_runs_the_fixed_pipeline_to_the_evaluator() -> None:
    setup = PolicySetup(selection=SelectionConfig(mode="fixed"))
    final, ended, actions = _run(setup, PolicyGraph(), _state())
    assert ended is Termination.EVALUATOR_DONE
    assert tuple(actions) == fixed_pipeline(setup.pool, Regime.EVIDENCE_HEAVY)
    assert final.step == 7
    assert final.tokens_used == 700
    assert [e.status for e in final.visited] == [StepStatus.SUCCEEDED] * 7
    assert final.beliefs.correctness == pytest.approx(0.3)


def test_skips_apply_in_place_and_are_logged_as_visited_edges() -> None:
    graph = PolicyGraph()
    s = _state()
    sig = signature_of(s, SETUP)
    # make skip:planner the clear winner at the first node
    edges = [(sig, a, False) for a in candidate_actions(s, SETUP.pool)]
    rewards = [1.0 if a == "skip:planner" else 0.0 for _, a, _ in edges]
    graph.backup(graph.batch(edges * 3, rewards * 3, [0.0] * (3 * len(edges))))
    steps, ended = advance(s, graph, SETUP)
    assert ended is None
    assert steps[0].action == "skip:planner"
    assert steps[0].is_skip
    assert steps[0].state.skipped == ["planner"]
    assert steps[0].state.visited[0].status is StepStatus.SKIPPED
    assert steps[-1].state.pending is not None
    assert steps[-1].state.pending.step == len(steps) - 1
    with pytest.raises(ValueError, match="waits on step"):
        decide(steps[-1].state, graph, SETUP)


def test_a_failed_solver_leaves_no_draft_and_the_trajectory_runs_out_of_actions() -> None:
    setup = PolicySetup(selection=SelectionConfig(mode="fixed"))
    final, ended, actions = _run(setup, PolicyGraph(), _state(), fail=frozenset({"solver"}))
    assert ended is Termination.NO_LEGAL_ACTION
    assert final.failures == 1
    assert final.handoff.draft_answer is None
    assert "verifier@balanced" not in actions


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (Budget(max_steps=3), Termination.STEP_BUDGET),
        (Budget(max_tokens=250), Termination.TOKEN_BUDGET),
    ],
)
def test_budgets_end_trajectories(budget: Budget, expected: Termination) -> None:
    setup = PolicySetup(selection=SelectionConfig(mode="fixed"))
    _, ended, actions = _run(setup, PolicyGraph(), _state(budget=budget))
    assert ended is expected
    assert len(actions) == 3


def test_governance_halt_ends_the_trajectory() -> None:
    s = _state()
    steps, _ = advance(s, PolicyGraph(), SETUP)
    halted = absorb(steps[-1].state, StepResult(succeeded=False, halt="auth"), SETUP)
    assert (halted.halted, halted.halt_reason) == (True, "auth")
    assert decide(halted, PolicyGraph(), SETUP) is Termination.GOVERNANCE_HALT


def test_absorb_without_a_pending_step_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pending"):
        absorb(_state(), StepResult(succeeded=True), SETUP)


def test_fold_keys_carry_the_task_class_only_when_the_fold_asks() -> None:
    plain = _state(task_class="C3")
    assert plain.fold_keys == {}
    keyed_setup = PolicySetup(fold=FoldSpec(extra_keys=["task_class"]))
    keyed = _state(task_class="C3", setup=keyed_setup)
    assert signature_of(keyed, keyed_setup).endswith("|task_class=C3")


def test_backup_credits_every_visited_edge_with_the_reward() -> None:
    setup = PolicySetup(selection=SelectionConfig(mode="fixed"))
    graph = PolicyGraph()
    final, _, _ = _run(setup, graph, _state(), fail=frozenset({"memory"}))
    updates = backup(graph, [(final, 0.42)])
    assert updates == len(final.visited) == 7
    assert graph.total_node_visits == 7
    first = final.visited[0]
    assert graph.edge(first.signature, first.action).mean_reward == pytest.approx(0.42)
    memory = final.visited[1]
    assert graph.edge(memory.signature, memory.action).failures == 1
    assert graph.edge(memory.signature, memory.action).visits == 0
