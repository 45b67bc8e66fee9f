"""What the worker does with one decision, minus the I/O: accept or reject it, and turn an
execution into the StepOutcome the router waits for."""

from collections.abc import Collection

from schemas.events import ActionKind, Decision, StepOutcome
from schemas.records import StepStatus
from services.policy import CellPool, parse_action
from services.policy.outcomes import Execution
from services.runtime.codec import Rejected, decode
from services.worker.ids import derived_id


def accept(raw: bytes | None, pool: CellPool, tenants: Collection[str]) -> Decision | Rejected:
    """The decision in ``raw``, or why the worker must not act on it."""
    decision = decode(raw, Decision)
    if isinstance(decision, Rejected):
        return decision
    return _problem(decision, pool, tenants) or decision


def _problem(decision: Decision, pool: CellPool, tenants: Collection[str]) -> Rejected | None:
    """A skip needs no more than a served tenant (there is nothing to run); an invoke must
    name a variant of the pool that is the pending step of the state it carries."""
    if decision.tenant not in tenants:
        return Rejected("unknown_tenant", f"tenant {decision.tenant!r} is not served here")
    if decision.action_kind is ActionKind.SKIP:
        return None
    is_skip, cell = parse_action(decision.action)
    if is_skip or not pool.knows(decision.action) or cell != decision.cell:
        return Rejected(
            "unknown_action",
            f"action {decision.action!r} is not a variant of cell {decision.cell!r} in the pool",
        )
    state = decision.state
    if state.trajectory_id != decision.trajectory_id:
        return Rejected(
            "unknown_trajectory",
            f"decision for {decision.trajectory_id} carries the state of {state.trajectory_id}",
        )
    pending = state.pending
    if pending is None or (pending.step, pending.action) != (decision.step, decision.action):
        return Rejected(
            "unknown_step",
            f"step {decision.step} ({decision.action}) is not the pending step of its state",
        )
    return None


def outcome_of(decision: Decision, execution: Execution) -> StepOutcome:
    """The StepOutcome of an executed invoke, echoing the decision's state."""
    result = execution.result
    return StepOutcome(
        event_id=derived_id("outcome", decision.decision_id),
        tenant=decision.tenant,
        decision_id=decision.decision_id,
        trajectory_id=decision.trajectory_id,
        step=decision.step,
        action=decision.action,
        cell=decision.cell,
        status=StepStatus.SUCCEEDED if result.succeeded else StepStatus.FAILED,
        failure_kind=execution.failure_kind,
        tokens_in=execution.tokens_in,
        tokens_out=execution.tokens_out,
        latency_s=execution.latency_s,
        cost_usd=execution.cost_usd,
        retries=result.retries,
        delta=result.delta,
        done=result.done,
        state=decision.state,
    )
