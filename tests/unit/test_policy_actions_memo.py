"""The candidate lists a pool memoises are the ones the rule gives, hit or miss."""

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import Regime, TaskFeatures, TrajectoryState
from services.policy import PolicySetup, candidate_actions, start_state
from services.policy.actions import MEMO_LIMIT, precondition_holds
from services.policy.cells import PAPER_MODELS, CellPool, paper_cells, skip_action


def _pool() -> CellPool:
    plans = {regime: tuple(paper_cells()) for regime in Regime}
    return CellPool(paper_cells(), plans, frozenset({"planner"}))


def _by_the_rule(
    state: TrajectoryState,
    pool: CellPool,
    allow_skip: bool,
    next_only: bool,
    blocked: frozenset[str],
) -> list[str]:
    """The documented rule, written out plainly."""
    used = set(state.invoked) | set(state.skipped)
    legal = []
    for name in state.plan:
        offered = [v.action for v in pool.cells[name].variants if v.model not in blocked]
        if (
            name not in used
            and precondition_holds(pool.cells[name].role, state.handoff)
            and offered
        ):
            legal.append((name, offered))
    chosen = legal[:1] if next_only else legal
    actions = [action for _, offered in chosen for action in offered]
    if allow_skip and len(legal) >= 2:
        actions += [skip_action(name) for name, _ in chosen if name not in pool.protected]
    return actions


@st.composite
def states(draw: st.DrawFn) -> TrajectoryState:
    pool = _pool()
    state = start_state(
        task_id="t",
        trajectory_id="t",
        goal="a goal",
        features=TaskFeatures(),
        setup=PolicySetup(pool=pool),
    )
    plan = list(state.plan)
    fates = draw(
        st.lists(
            st.sampled_from(("open", "invoked", "skipped")), min_size=len(plan), max_size=len(plan)
        )
    )
    handoff = state.handoff.model_copy(
        update={
            "draft_answer": draw(st.sampled_from((None, "a draft"))),
            "merged_answer": draw(st.sampled_from((None, "merged"))),
        }
    )
    return state.model_copy(
        update={
            "invoked": [c for c, f in zip(plan, fates, strict=True) if f == "invoked"],
            "skipped": [c for c, f in zip(plan, fates, strict=True) if f == "skipped"],
            "handoff": handoff,
        }
    )


options = st.tuples(st.booleans(), st.booleans(), st.frozensets(st.sampled_from(PAPER_MODELS)))
shared = _pool()  # memoises across examples: later examples hit what earlier ones missed


@settings(max_examples=300)
@given(states(), options)
def test_memoised_candidates_equal_the_rule_on_a_miss_and_on_a_hit(
    state: TrajectoryState, option: tuple[bool, bool, frozenset[str]]
) -> None:
    allow_skip, next_only, blocked = option
    expected = _by_the_rule(state, shared, allow_skip, next_only, blocked)
    for _ in range(2):  # the second call is a hit
        got = candidate_actions(
            state, shared, allow_skip=allow_skip, next_only=next_only, blocked_models=blocked
        )
        assert got == expected
    got.append("mutated by a caller")  # a caller's list is its own: the memo is untouched
    assert (
        candidate_actions(
            state, shared, allow_skip=allow_skip, next_only=next_only, blocked_models=blocked
        )
        == expected
    )
    assert 0 < len(shared.memo) <= MEMO_LIMIT
