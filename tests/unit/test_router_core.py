"""The router's pure core: tasks and outcomes in, decisions and completions out."""

import math

import pytest

from schemas.events import (
    ActionKind,
    Decision,
    DecisionReason,
    PolicySnapshot,
    Termination,
    TrajectoryCompleted,
)
from schemas.policy_file import NodeRecord, PolicyDocument
from schemas.records import Budget, FoldSpec, HandoffDelta, StepStatus
from services.policy import (
    PolicyGraph,
    PolicySetup,
    candidate_actions,
    make_pool,
    trajectory_ids,
)
from services.policy.arms import arm_named
from services.policy.cells import paper_cells
from services.policy.selection import softmax
from services.router.core import (
    Duplicate,
    RecentSteps,
    SnapshotVerdict,
)
from services.router.readiness import PolicyCatchUp
from services.runtime.codec import Rejected
from tests.unit.support_router import (
    SCENARIO,
    SETUP,
    confident_graph,
    core,
    decisions,
    execute,
    routed,
    run_to_end,
    snapshot,
    start_state_of,
    task,
)


def skip_planner_graph() -> PolicyGraph:
    """Every first action tried once at reward 0, except skip:planner at 5."""
    candidates = candidate_actions(start_state_of(), SETUP.pool)
    return confident_graph({a: 0.0 for a in candidates} | {"skip:planner": 5.0})


# --- tasks -----------------------------------------------------------------------------------


def test_a_cold_task_is_taken_to_its_first_invoke_with_the_state_waiting_on_it() -> None:
    events = routed(core().on_task(task()))
    assert all(isinstance(e, Decision) for e in events)
    last = decisions(events)[-1]
    assert last.action_kind is ActionKind.INVOKE
    assert (last.action, last.cell, last.step, last.decision_id) == (
        "planner",
        "planner",
        0,
        "t1:0",
    )
    assert last.reason is DecisionReason.RULE_BASED_PRIOR
    assert (last.propensity, last.policy_version, last.scores) == (1.0, 0, [])
    pending = last.state.pending
    assert pending is not None
    assert (pending.step, pending.action, pending.signature) == (0, "planner", last.signature)
    assert last.state.trajectory_id == last.trajectory_id == last.task_id == "t1"


def test_skips_are_published_with_the_state_already_advanced() -> None:
    router = core()
    # skip:planner has the best mean at the start node; after it nothing else stands out,
    # so the tie goes to the first invoke in plan order (memory).
    graph = skip_planner_graph()
    assert router.on_snapshot(snapshot(graph, 1)).adopted
    skip, invoke = decisions(routed(router.on_task(task())))
    assert (skip.action, skip.action_kind, skip.cell, skip.step) == (
        "skip:planner",
        ActionKind.SKIP,
        "planner",
        0,
    )
    assert (skip.protocol, skip.model) == (None, None)
    assert skip.state.step == 1
    assert skip.state.skipped == ["planner"]
    assert skip.state.pending is None
    assert [(e.action, e.status) for e in skip.state.visited] == [
        ("skip:planner", StepStatus.SKIPPED)
    ]
    assert (invoke.action, invoke.step, invoke.decision_id) == ("memory", 1, "t1:1")
    assert invoke.state.skipped == ["planner"]
    assert invoke.state.pending is not None and invoke.state.pending.step == 1
    assert skip.policy_version == invoke.policy_version == 1
    assert skip.reason is DecisionReason.GRAPH_RECOMMENDATION


def test_untried_actions_score_null_for_infinity_and_tried_ones_keep_their_numbers() -> None:
    router = core()
    assert router.on_snapshot(snapshot(confident_graph({"planner": 0.4}), 2)).adopted
    (first,) = decisions(routed(router.on_task(task())))
    by_action = {s.action: s for s in first.scores}
    assert first.reason is DecisionReason.UNTRIED_ACTION
    assert first.action == "memory"  # the first untried candidate in plan order
    assert by_action["memory"].score is None and by_action["memory"].bonus is None
    planner = by_action["planner"]
    assert planner.score is not None and planner.bonus is not None
    assert planner.score == pytest.approx(0.4 + planner.bonus)
    assert planner.visits == 1
    assert planner.mean == pytest.approx(0.4)
    assert first.exploration_c == pytest.approx(1.4 * 2 ** (-10 / 50))


def test_rollouts_start_one_trajectory_each() -> None:
    events = routed(core().on_task(task("job", rollouts=3)))
    assert [d.trajectory_id for d in decisions(events)] == ["job~0", "job~1", "job~2"]
    assert {d.task_id for d in decisions(events)} == {"job"}
    assert [d.decision_id for d in decisions(events)] == ["job~0:0", "job~1:0", "job~2:0"]
    assert trajectory_ids("job", 1) == ["job"]


def test_a_task_whose_rollout_ids_would_be_too_long_is_rejected() -> None:
    result = core().on_task(task("x" * 127, rollouts=2))
    assert isinstance(result, Rejected)
    assert result.error_type == "invalid_task"
    assert "trajectory_id" in result.reason


def test_a_task_for_a_tenant_not_served_is_rejected() -> None:
    result = core().on_task(task(tenant="other"))
    assert result == Rejected("unknown_tenant", "tenant 'other' is not served by this router")


def test_a_trajectory_with_no_legal_first_step_completes_at_step_zero() -> None:
    # A verifier needs a draft, so a plan of only a verifier has nothing to run.
    pool = make_pool(paper_cells().values(), ["verifier"])
    (completed,) = routed(core(PolicySetup(pool=pool)).on_task(task()))
    assert isinstance(completed, TrajectoryCompleted)
    assert (completed.termination, completed.steps, completed.tokens) == (
        Termination.NO_LEGAL_ACTION,
        0,
        0,
    )
    assert completed.answer is None
    assert completed.state.visited == []


# --- outcomes --------------------------------------------------------------------------------


def test_a_whole_trajectory_runs_to_the_evaluator_and_completes() -> None:
    router = core()
    events = run_to_end(router, task())
    completed = events[-1]
    assert isinstance(completed, TrajectoryCompleted)
    assert [e for e in events if isinstance(e, TrajectoryCompleted)] == [completed]
    steps = [d.step for d in decisions(events)]
    assert steps == list(range(len(steps)))
    assert completed.termination is Termination.EVALUATOR_DONE
    assert decisions(events)[-1].action == "evaluator"
    state = completed.state
    assert (completed.steps, completed.tokens, completed.retries) == (
        state.step,
        state.tokens_used,
        state.retries,
    )
    assert completed.steps == len(steps) == 7
    assert completed.answer == state.handoff.draft_answer is not None
    assert state.tokens_used > 0
    assert [e.action for e in state.visited] == [d.action for d in decisions(events)]


def test_an_evaluator_outcome_with_done_ends_the_trajectory_as_evaluator_done() -> None:
    router = core(budget=Budget(max_steps=24))
    events = routed(router.on_task(task()))
    while (last := decisions(events)[-1]).action != "evaluator":
        events = routed(router.on_outcome(execute(last)))
    done = execute(last).model_copy(update={"status": StepStatus.SUCCEEDED, "done": True})
    (completed,) = routed(router.on_outcome(done))
    assert isinstance(completed, TrajectoryCompleted)
    assert completed.termination is Termination.EVALUATOR_DONE
    assert completed.state.done and completed.state.pending is None


def test_a_failed_evaluator_leaves_no_legal_action() -> None:
    router = core()
    events = routed(router.on_task(task()))
    while (last := decisions(events)[-1]).action != "evaluator":
        events = routed(router.on_outcome(execute(last)))
    failed = execute(last).model_copy(update={"status": StepStatus.FAILED, "done": False})
    (completed,) = routed(router.on_outcome(failed))
    assert isinstance(completed, TrajectoryCompleted)
    assert completed.termination is Termination.NO_LEGAL_ACTION
    assert completed.state.failures == 1


def test_the_step_budget_ends_a_trajectory_after_its_outcome() -> None:
    router = core(budget=Budget(max_steps=1))
    (first,) = decisions(routed(router.on_task(task())))
    (completed,) = routed(router.on_outcome(execute(first)))
    assert isinstance(completed, TrajectoryCompleted)
    assert (completed.termination, completed.steps) == (Termination.STEP_BUDGET, 1)
    # a task's own budget wins over the router's default
    (first,) = decisions(routed(router.on_task(task("t2", budget=Budget(max_steps=2)))))
    assert decisions(routed(router.on_outcome(execute(first))))


def test_a_duplicate_outcome_yields_nothing_the_second_time() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    outcome = execute(first)
    assert decisions(routed(router.on_outcome(outcome)))
    assert router.on_outcome(outcome) == Duplicate("t1", 0)
    # a redelivery with a fresh event id is the same step all the same
    assert router.on_outcome(outcome.model_copy(update={"event_id": "again"})) == Duplicate("t1", 0)


def test_a_forgotten_outcome_is_absorbed_again() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    outcome = execute(first)
    before = [(d.decision_id, d.action) for d in decisions(routed(router.on_outcome(outcome)))]
    router.forget("t1", 0)
    again = [(d.decision_id, d.action) for d in decisions(routed(router.on_outcome(outcome)))]
    assert again == before
    assert router.on_outcome(outcome) == Duplicate("t1", 0)


def test_the_dedupe_window_is_bounded_and_forgets_the_oldest_first() -> None:
    window = RecentSteps(2)
    for key in [("a", 0), ("b", 0), ("c", 0)]:
        window.add(key)
    assert len(window) == 2
    assert ("a", 0) not in window
    assert ("b", 0) in window and ("c", 0) in window


def test_an_outcome_for_a_step_not_pending_is_rejected_with_the_reason() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    outcome = execute(first)
    wrong_step = router.on_outcome(outcome.model_copy(update={"step": 3}))
    assert isinstance(wrong_step, Rejected)
    assert wrong_step.error_type == "unknown_step"
    assert "waits on step 0 (planner), the outcome is for step 3 (planner)" in wrong_step.reason
    wrong_action = router.on_outcome(
        outcome.model_copy(update={"action": "memory", "cell": "memory"})
    )
    assert isinstance(wrong_action, Rejected)
    assert wrong_action.error_type == "unknown_step"
    nothing_pending = outcome.model_copy(
        update={"state": first.state.model_copy(update={"pending": None})}
    )
    rejected = router.on_outcome(nothing_pending)
    assert isinstance(rejected, Rejected) and rejected.error_type == "unknown_step"
    assert "waits on no step" in rejected.reason
    # a rejected outcome does not count as absorbed: the real one still goes through
    assert decisions(routed(router.on_outcome(outcome)))


def test_outcomes_naming_an_unknown_tenant_action_or_trajectory_are_rejected() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    outcome = execute(first)
    cases = {
        "unknown_tenant": {"tenant": "other"},
        "unknown_action": {"action": "planner.deep@huge"},
        "unknown_trajectory": {"trajectory_id": "t2"},
    }
    for error_type, update in cases.items():
        result = router.on_outcome(outcome.model_copy(update=update))
        assert isinstance(result, Rejected), error_type
        assert result.error_type == error_type
        assert result.reason
    skip = router.on_outcome(outcome.model_copy(update={"action": "skip:planner"}))
    assert isinstance(skip, Rejected) and skip.error_type == "unknown_action"


def test_a_state_that_does_not_fit_the_pool_is_rejected_not_raised() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    alien = first.state.model_copy(update={"plan": ["planner", "oracle"]})
    result = router.on_outcome(execute(first).model_copy(update={"state": alien}))
    assert isinstance(result, Rejected)
    assert result.error_type == "invalid_state"
    assert "oracle" in result.reason


def test_tenants_keep_their_own_policy() -> None:
    router = core()
    graph = skip_planner_graph()
    assert router.on_snapshot(snapshot(graph, 4, tenant="acme")).adopted
    (cold,) = decisions(routed(router.on_task(task())))
    acme = decisions(routed(router.on_task(task(tenant="acme"))))
    assert (cold.action, cold.policy_version, cold.tenant) == ("planner", 0, "default")
    assert (acme[0].action, acme[0].policy_version, acme[0].tenant) == ("skip:planner", 4, "acme")


# --- snapshots -------------------------------------------------------------------------------


def test_only_newer_snapshots_of_served_tenants_are_adopted() -> None:
    router = core()
    graph = PolicyGraph()
    verdicts = [
        router.on_snapshot(snapshot(graph, v, tenant=t)).verdict
        for v, t in [(3, "default"), (2, "default"), (3, "default"), (0, "acme"), (5, "elsewhere")]
    ]
    assert verdicts == [
        SnapshotVerdict.ADOPTED,
        SnapshotVerdict.STALE,
        SnapshotVerdict.STALE,
        SnapshotVerdict.ADOPTED,  # a cold tenant takes any version, 0 included
        SnapshotVerdict.NOT_SERVED,
    ]
    assert (router.adopted_version("default"), router.adopted_version("acme")) == (3, 0)
    assert router.on_snapshot(snapshot(graph, 5)).adopted
    (decision,) = decisions(routed(router.on_task(task())))
    assert decision.policy_version == 5


def test_a_snapshot_folding_states_differently_is_refused() -> None:
    router = core()
    result = router.on_snapshot(snapshot(PolicyGraph(), 9, fold=FoldSpec(granularity=0.25)))
    assert result.verdict is SnapshotVerdict.FOLD_MISMATCH
    assert "granularity" in result.detail
    assert router.adopted_version("default") is None


def test_a_snapshot_whose_graph_does_not_load_is_refused() -> None:
    router = core()
    document = PolicyDocument(nodes=[NodeRecord(signature="not a signature", visits=1)])
    result = router.on_snapshot(PolicySnapshot(version=1, policy=document))
    assert result.verdict is SnapshotVerdict.INVALID
    assert result.detail
    assert router.adopted_version("default") is None


# --- readiness -------------------------------------------------------------------------------


def test_readiness_waits_for_the_policy_topic_end_seen_at_start() -> None:
    router = core()
    catch_up = PolicyCatchUp()
    assert catch_up.check(router) == (False, "measuring the policy topic")
    catch_up.expect({0: 2}, {0: 5})
    catch_up.read(0, 2)
    assert catch_up.check(router) == (False, "replaying the policy topic: 2 offsets to go")
    router.on_snapshot(snapshot(PolicyGraph(), 7))
    catch_up.read(0, 4)
    assert catch_up.check(router) == (
        True,
        "caught up with the policy topic: default v7, acme cold (no snapshot)",
    )


def test_an_empty_policy_topic_makes_a_deliberately_cold_router_ready() -> None:
    catch_up = PolicyCatchUp()
    catch_up.expect({0: 4}, {0: 4})  # compacted or deleted down to nothing
    assert catch_up.check(core()) == (True, "cold: the policy topic was empty at start")


def test_every_event_survives_its_wire_form() -> None:
    for event in run_to_end(core(), task(rollouts=2)):
        assert type(event).model_validate_json(event.model_dump_json()) == event


def test_outcome_delta_and_tokens_reach_the_state() -> None:
    router = core()
    (first,) = decisions(routed(router.on_task(task())))
    outcome = execute(first).model_copy(
        update={
            "status": StepStatus.SUCCEEDED,
            "tokens_in": 100,
            "tokens_out": 20,
            "retries": 1,
            "delta": HandoffDelta(subproblem="narrowed"),
        }
    )
    (second,) = decisions(routed(router.on_outcome(outcome)))
    assert second.state.handoff.subproblem == "narrowed"
    assert (second.state.tokens_used, second.state.retries) == (120, 1)
    assert second.state.visited[0].status is StepStatus.SUCCEEDED


def test_a_stochastic_arms_prior_decision_still_lists_every_candidate() -> None:
    # Cold, the prior chooses; a stochastic arm logs the candidates anyway, for off-policy
    # evaluation (a paper-mode router does not: see the cold task test above).
    arm = arm_named("agensbus-free+softmax")
    first = decisions(routed(core(arm.setup(SCENARIO, 3)).on_task(task())))[0]
    assert first.reason is DecisionReason.RULE_BASED_PRIOR and first.propensity == 1.0
    actions = [s.action for s in first.scores]
    assert first.action in actions and len(actions) > 1
    assert all(s.visits == 0 for s in first.scores)


def test_a_stochastic_arm_logs_the_exact_propensity_of_each_draw() -> None:
    arm = arm_named("agensbus-free+softmax")
    router = core(arm.setup(SCENARIO, 3))
    graph = confident_graph({"planner": 0.4, "skip:planner": 0.41})
    assert router.on_snapshot(snapshot(graph, 1)).adopted
    log = decisions(run_to_end(router, task()))
    drawn = [d for d in log if d.reason is not DecisionReason.RULE_BASED_PRIOR]
    assert drawn, "the softmax arm must have drawn among scored candidates"
    for decision in drawn:
        scores = [math.inf if s.score is None else s.score for s in decision.scores]
        chosen = [s.action for s in decision.scores].index(decision.action)
        expected = softmax(scores, arm.selection.temperature)[chosen]
        assert decision.propensity == expected
    assert any(d.propensity < 1.0 for d in drawn)
