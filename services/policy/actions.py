"""Legal actions in the linear-with-skip topology."""

from collections.abc import Sequence

from schemas.records import Handoff, Role, TrajectoryState
from services.policy.cells import CellPool, skip_action

#: Entries a pool's memo of candidate lists keeps before it starts afresh: far more than the
#: distinct (plan, cells used, answers present) of a deployment's live trajectories.
MEMO_LIMIT = 4_096


def precondition_holds(role: Role, handoff: Handoff) -> bool:
    """Cells that judge, critique or finish an answer need a draft to work on."""
    return _precondition(role, handoff.draft_answer is not None, handoff.merged_answer is not None)


def _precondition(role: Role, has_draft: bool, has_merged: bool) -> bool:
    if role in (Role.CRITIC, Role.VERIFIER, Role.SYNTHESIZER):
        return has_draft
    if role is Role.EVALUATOR:
        return has_draft or has_merged
    return True


def legal_cells(state: TrajectoryState, pool: CellPool) -> list[str]:
    """Cells of the plan not yet invoked or skipped whose preconditions hold, in plan order."""
    handoff = state.handoff
    used = set(state.invoked) | set(state.skipped)
    return _legal(
        state.plan, used, pool, handoff.draft_answer is not None, handoff.merged_answer is not None
    )


def _legal(
    plan: Sequence[str], used: set[str] | frozenset[str], pool: CellPool, draft: bool, merged: bool
) -> list[str]:
    cells = pool.cells
    return [
        name for name in plan if name not in used and _precondition(cells[name].role, draft, merged)
    ]


def candidate_actions(
    state: TrajectoryState,
    pool: CellPool,
    *,
    allow_skip: bool = True,
    next_only: bool = False,
    blocked_models: frozenset[str] = frozenset(),
) -> list[str]:
    """Every variant of every legal cell in plan order, then ``skip:X`` for each legal cell
    the pool does not protect while at least two cells are legal (the last legal cell
    cannot be skipped).

    ``next_only`` offers the first legal cell alone (its variants, then its skip): every
    cell is decided in plan order, so no evidence is gathered after the draft it should
    have informed, and each node weighs a handful of actions instead of the whole plan.

    Variants bound to a model in ``blocked_models`` (an open circuit breaker) are not
    offered; a cell left with none is not legal for now, neither run nor skipped, and
    becomes legal again when its model is offered again.

    The list depends on nothing else, so the pool memoises it under exactly these inputs:
    a router asks the same question for every trajectory at the same point of its plan."""
    handoff = state.handoff
    key = (
        tuple(state.plan),
        frozenset(state.invoked).union(state.skipped),
        handoff.draft_answer is not None,
        handoff.merged_answer is not None,
        blocked_models,
        allow_skip,
        next_only,
    )
    memo = pool.memo
    actions = memo.get(key)
    if actions is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        actions = memo[key] = _candidates(pool, *key)
    return list(actions)


def _candidates(
    pool: CellPool,
    plan: tuple[str, ...],
    used: frozenset[str],
    draft: bool,
    merged: bool,
    blocked_models: frozenset[str],
    allow_skip: bool,
    next_only: bool,
) -> tuple[str, ...]:
    variants = {
        name: [v.action for v in pool.cells[name].variants if v.model not in blocked_models]
        for name in _legal(plan, used, pool, draft, merged)
    }
    cells = [name for name, actions in variants.items() if actions]
    offered = cells[:1] if next_only else cells
    actions = [action for name in offered for action in variants[name]]
    if allow_skip and len(cells) >= 2:
        actions.extend(skip_action(name) for name in offered if name not in pool.protected)
    return tuple(actions)
