"""Governance in the router's core: halts with their reason, and the breakers' effect on
decisions (which models are offered, what the decisions say)."""

import pytest
from click.testing import CliRunner

from schemas.events import (
    Decision,
    FailureKind,
    StepOutcome,
    TaskSubmitted,
    Termination,
    TrajectoryCompleted,
)
from schemas.records import HandoffDelta, Role, StepStatus, TaskFeatures
from services.cli.serve import router
from services.cli.topics import summarize
from services.policy import Cell, PolicySetup, Variant, make_pool
from services.policy.governance import GovernanceConfig
from services.router.app import breaker_config, governance_config, models_of
from services.router.breaker import BreakerConfig, Breakers
from services.router.core import RouterCore, RouterEvent
from services.runtime.settings import Settings
from tests.unit.support_clock import Clock
from tests.unit.support_router import SETUP, task

POOL = make_pool(
    [
        Cell("solver", Role.SOLVER, (Variant("solver", None, "x"), Variant("solver", None, "y"))),
        Cell("evaluator", Role.EVALUATOR, (Variant("evaluator"),)),
    ],
    ["solver", "evaluator"],
)
BREAKER = BreakerConfig(window=4, window_s=60.0, failure_rate=0.5, min_calls=2, cooldown_s=10.0)


def submitted(task_id: str) -> TaskSubmitted:
    return TaskSubmitted(task_id=task_id, goal="g", features=TaskFeatures())


def only(events: object, kind: type[Decision] | type[TrajectoryCompleted]) -> list[RouterEvent]:
    assert isinstance(events, list), events
    return [e for e in events if isinstance(e, kind)]


def decision_of(events: object) -> Decision:
    [decision] = only(events, Decision)
    assert isinstance(decision, Decision)
    return decision


def completed_of(events: object) -> TrajectoryCompleted:
    [completed] = only(events, TrajectoryCompleted)
    assert isinstance(completed, TrajectoryCompleted)
    return completed


def outcome(decision: Decision, failure: FailureKind | None = None) -> StepOutcome:
    """The worker's answer: a draft from a solver, done from the evaluator, or a failure."""
    solver = decision.cell == "solver"
    return StepOutcome(
        decision_id=decision.decision_id,
        trajectory_id=decision.trajectory_id,
        step=decision.step,
        action=decision.action,
        cell=decision.cell,
        status=StepStatus.SUCCEEDED if failure is None else StepStatus.FAILED,
        failure_kind=failure,
        delta=HandoffDelta(draft_answer="d") if solver and failure is None else HandoffDelta(),
        done=not solver and failure is None,
        state=decision.state,
    )


# --- halts ------------------------------------------------------------------------------------


def test_an_auth_failure_halts_with_its_reason() -> None:
    core = RouterCore(SETUP, ("default",), governance=GovernanceConfig())
    first = decision_of(core.on_task(task()))
    done = completed_of(core.on_outcome(outcome(first, FailureKind.AUTH)))
    assert (done.termination, done.halt_reason) == (Termination.GOVERNANCE_HALT, "auth")
    assert (done.state.halted, done.state.failures, done.steps) == (True, 1, 1)
    assert summarize(done).startswith("completed  t1 governance_halt (auth) steps=1 ")


def test_the_fourth_failed_step_halts_as_repeated_failures() -> None:
    core = RouterCore(SETUP, ("default",), governance=GovernanceConfig())
    decision = decision_of(core.on_task(task()))
    for _ in range(3):  # planner, memory, web search fail; the trajectory goes on
        decision = decision_of(core.on_outcome(outcome(decision, FailureKind.SERVER)))
    done = completed_of(core.on_outcome(outcome(decision, FailureKind.SERVER)))
    assert done.termination is Termination.GOVERNANCE_HALT
    assert (done.halt_reason, done.state.failures) == ("repeated_failures", 4)


def test_without_governance_nothing_halts() -> None:
    core = RouterCore(SETUP, ("default",))
    first = decision_of(core.on_task(task()))
    events = core.on_outcome(outcome(first, FailureKind.AUTH))
    assert only(events, TrajectoryCompleted) == []
    assert decision_of(events).state.failures == 1


def test_a_trajectory_ending_otherwise_carries_no_halt_reason() -> None:
    core = RouterCore(PolicySetup(pool=POOL), ("default",), governance=GovernanceConfig())
    solver = decision_of(core.on_task(submitted("t")))
    evaluator = decision_of(core.on_outcome(outcome(solver)))
    done = completed_of(core.on_outcome(outcome(evaluator)))
    assert (done.termination, done.halt_reason) == (Termination.EVALUATOR_DONE, None)


# --- breakers ---------------------------------------------------------------------------------


def test_the_router_routes_around_a_failing_model_and_probes_it_after_the_cool_down() -> None:
    clock = Clock()
    breakers = Breakers({"x", "y"}, BREAKER, clock)
    core = RouterCore(PolicySetup(pool=POOL), ("default",), breakers=breakers)

    def first(task_id: str) -> Decision:
        return decision_of(core.on_task(submitted(task_id)))

    # The prior runs the default variant, solver@x, until x has failed often enough.
    for name in ("a", "b"):
        decision = first(name)
        assert (decision.action, decision.reason_detail) == ("solver@x", None)
        core.on_outcome(outcome(decision, FailureKind.SERVER))
    withheld = first("c")
    assert withheld.action == "solver@y"
    assert withheld.reason_detail == "breaker open: x until 2026-05-28T20:26:50Z"
    assert summarize(withheld).endswith(' detail="breaker open: x until 2026-05-28T20:26:50Z"')
    assert "detail=" not in summarize(decision)
    assert [t.target.label for t in breakers.drain()] == ["open"]

    clock.now += BREAKER.cooldown_s
    probe = first("d")
    assert (probe.action, probe.reason_detail) == ("solver@x", "breaker half-open: probe of x")
    meanwhile = first("e")  # one probe at a time
    assert meanwhile.action == "solver@y"
    assert meanwhile.reason_detail == "breaker half-open: x probe in flight"

    core.on_outcome(outcome(probe))
    healed = first("f")
    assert (healed.action, healed.reason_detail) == ("solver@x", None)
    assert [t.target.label for t in breakers.drain()] == ["half_open", "closed"]


def test_a_failed_probe_withholds_the_model_for_another_cool_down() -> None:
    clock = Clock()
    breakers = Breakers({"x", "y"}, BREAKER, clock)
    core = RouterCore(PolicySetup(pool=POOL), ("default",), breakers=breakers)
    for name in ("a", "b"):
        core.on_outcome(outcome(decision_of(core.on_task(submitted(name))), FailureKind.TIMEOUT))
    clock.now += BREAKER.cooldown_s
    probe = decision_of(core.on_task(submitted("c")))
    assert probe.action == "solver@x"
    clock.now += 1
    core.on_outcome(outcome(probe, FailureKind.SERVER))
    again = decision_of(core.on_task(submitted("d")))
    assert again.action == "solver@y"
    assert again.reason_detail == "breaker open: x until 2026-05-28T20:27:01Z"


def test_every_model_withheld_ends_the_trajectory_for_want_of_actions() -> None:
    breakers = Breakers({"x", "y"}, BREAKER, Clock())
    core = RouterCore(PolicySetup(pool=POOL), ("default",), breakers=breakers)
    for n, model in enumerate(("x", "y", "x", "y")):
        breakers.record(model, (f"earlier-{n}", 0), True)
    done = completed_of(core.on_task(submitted("t")))
    assert (done.termination, done.halt_reason, done.steps) == (
        Termination.NO_LEGAL_ACTION,
        None,
        0,
    )


# --- settings ---------------------------------------------------------------------------------


def test_settings_make_the_configs_and_the_defaults_are_the_documented_ones() -> None:
    assert governance_config(Settings()) == GovernanceConfig()
    assert breaker_config(Settings()) == BreakerConfig()
    settings = Settings(
        governance_halt_on="quota",
        governance_max_failures=1,
        breaker_enabled="false",  # as a flag or the environment give it
        breaker_window=8,
        breaker_window_s=30,
        breaker_failure_rate=0.25,
        breaker_min_calls=8,
        breaker_cooldown_s=2,
    )
    assert governance_config(settings) == GovernanceConfig(frozenset({FailureKind.QUOTA}), 1)
    assert breaker_config(settings) == BreakerConfig(False, 8, 30.0, 0.25, 8, 2.0)
    assert models_of(POOL) == {"x", "y"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--governance-halt-on", "auth,oops"], "unknown failure kinds ['oops']"),
        (["--breaker-min-calls", "30"], "30 exceeds breaker_window (20): the breaker could never"),
        (["--breaker-failure-rate", "0"], "--breaker-failure-rate"),
    ],
)
def test_unusable_governance_settings_are_usage_errors(flags: list[str], message: str) -> None:
    result = CliRunner().invoke(router, flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
