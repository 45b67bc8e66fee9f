"""Per-trajectory governance rules, and candidates without the models a breaker withholds."""

import pytest

from schemas.events import FailureKind, Termination
from schemas.records import Role, SelectionConfig, TaskFeatures, TrajectoryState
from services.policy import (
    Cell,
    PolicyGraph,
    PolicySetup,
    StepResult,
    Variant,
    absorb,
    advance,
    candidate_actions,
    make_pool,
    start_state,
)
from services.policy.governance import (
    REPEATED_FAILURES,
    GovernanceConfig,
    halt_reason,
    parse_failure_kinds,
)

PAPER = GovernanceConfig()

POOL = make_pool(
    [
        Cell("planner", Role.PLANNER, (Variant("planner", None, "x"),)),
        Cell("solver", Role.SOLVER, (Variant("solver", None, "x"), Variant("solver", None, "y"))),
        Cell("evaluator", Role.EVALUATOR, (Variant("evaluator"),)),
    ],
    ["planner", "solver", "evaluator"],
)
SETUP = PolicySetup(pool=POOL)


def state(setup: PolicySetup = SETUP) -> TrajectoryState:
    return start_state(
        task_id="t", trajectory_id="t", goal="g", features=TaskFeatures(), setup=setup
    )


@pytest.mark.parametrize("kind", [FailureKind.AUTH, FailureKind.QUOTA])
def test_auth_and_quota_halt_at_the_first_failure(kind: FailureKind) -> None:
    assert halt_reason(1, kind, PAPER) == kind.value


@pytest.mark.parametrize("kind", [None, FailureKind.SERVER, FailureKind.SCHEMA])
def test_other_failures_halt_only_beyond_the_limit(kind: FailureKind | None) -> None:
    assert [halt_reason(n, kind, PAPER) for n in (1, 2, 3)] == [None, None, None]
    assert halt_reason(4, kind, PAPER) == REPEATED_FAILURES


def test_the_rules_follow_the_config() -> None:
    config = GovernanceConfig(halt_on=frozenset({FailureKind.RATE_LIMITED}), max_failures=0)
    assert halt_reason(1, FailureKind.RATE_LIMITED, config) == "rate_limited"
    assert halt_reason(1, FailureKind.AUTH, config) == REPEATED_FAILURES
    lenient = GovernanceConfig(halt_on=frozenset(), max_failures=1000)
    assert halt_reason(5, FailureKind.AUTH, lenient) is None
    with pytest.raises(ValueError, match="at least 0"):
        GovernanceConfig(max_failures=-1)


def test_failure_kinds_parse_from_settings_text() -> None:
    assert parse_failure_kinds(" auth, quota ,") == {FailureKind.AUTH, FailureKind.QUOTA}
    assert parse_failure_kinds("") == frozenset()
    with pytest.raises(ValueError, match=r"unknown failure kinds \['oops'\]; known: auth, "):
        parse_failure_kinds("auth,oops")


def test_a_halted_step_ends_the_trajectory_with_its_reason() -> None:
    steps, _ = advance(state(), PolicyGraph(), SETUP)
    after = absorb(steps[-1].state, StepResult(False, halt="quota"), SETUP)
    assert (after.halted, after.halt_reason, after.failures) == (True, "quota", 1)
    assert advance(after, PolicyGraph(), SETUP) == ([], Termination.GOVERNANCE_HALT)


def test_a_blocked_model_loses_its_variants_and_a_cell_left_without_any_waits() -> None:
    s = state()
    assert candidate_actions(s, POOL) == ["planner@x", "solver@x", "solver@y", "skip:planner",
                                          "skip:solver"]  # fmt: skip
    # The planner has no other model: it is neither offered nor skippable for now, and the
    # solver, the only cell left, cannot be skipped either.
    assert candidate_actions(s, POOL, blocked_models=frozenset({"x"})) == ["solver@y"]
    assert candidate_actions(s, POOL, blocked_models=frozenset({"x", "y"})) == []
    next_only = candidate_actions(s, POOL, next_only=True, blocked_models=frozenset({"x"}))
    assert next_only == ["solver@y"]


def test_advance_routes_around_a_blocked_model_and_the_cell_comes_back() -> None:
    setup = PolicySetup(pool=POOL, selection=SelectionConfig(mode="fixed"))
    steps, ended = advance(state(setup), PolicyGraph(), setup, frozenset({"x"}))
    assert (ended, [s.action for s in steps]) == (None, ["solver@y"])
    solved = absorb(steps[-1].state, StepResult(True), setup)
    # x offered again: the planner, never run nor skipped, is legal once more.
    steps, ended = advance(solved, PolicyGraph(), setup)
    assert (ended, steps[-1].action) == (None, "planner@x")
    # Everything blocked: nothing legal is left, the trajectory ends for want of actions.
    assert advance(state(setup), PolicyGraph(), setup, frozenset({"x", "y"})) == (
        [],
        Termination.NO_LEGAL_ACTION,
    )
