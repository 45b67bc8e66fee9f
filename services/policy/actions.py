"""Legal actions in the linear-with-skip topology."""

from schemas.records import Handoff, Role, TrajectoryState
from services.policy.cells import CellPool, skip_action


def precondition_holds(role: Role, handoff: Handoff) -> bool:
    """Cells that judge, critique or finish an answer need a draft to work on."""
    if role in (Role.CRITIC, Role.VERIFIER, Role.SYNTHESIZER):
        return handoff.draft_answer is not None
    if role is Role.EVALUATOR:
        return handoff.draft_answer is not None or handoff.merged_answer is not None
    return True


def legal_cells(state: TrajectoryState, pool: CellPool) -> list[str]:
    """Cells of the plan not yet invoked or skipped whose preconditions hold, in plan order."""
    used = set(state.invoked) | set(state.skipped)
    return [
        name
        for name in state.plan
        if name not in used and precondition_holds(pool.cells[name].role, state.handoff)
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
    becomes legal again when its model is offered again."""
    variants = {
        name: [v.action for v in pool.cells[name].variants if v.model not in blocked_models]
        for name in legal_cells(state, pool)
    }
    cells = [name for name, actions in variants.items() if actions]
    offered = cells[:1] if next_only else cells
    actions = [action for name in offered for action in variants[name]]
    if allow_skip and len(cells) >= 2:
        actions.extend(skip_action(name) for name in offered if name not in pool.protected)
    return actions
