"""The router's pure logic: a task or an outcome in, the events it causes out. No I/O.

Between steps the router keeps nothing per trajectory: the state rides in the Decision and
comes back in the StepOutcome (docs/architecture.md), so any replica can advance any trajectory.
What a RouterCore holds is the policy of each tenant it serves and a bounded memory of the
(trajectory, step) outcomes it absorbed, so that a redelivered outcome cannot fork a
trajectory (§3.2).
"""

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from schemas.events import (
    ActionKind,
    Decision,
    PolicySnapshot,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)
from schemas.records import ActionScore, Budget, StepStatus, TrajectoryState
from services.policy import (
    PolicyGraph,
    PolicySetup,
    Step,
    StepResult,
    absorb,
    advance,
    parse_action,
    start_state,
    trajectory_completed,
    trajectory_ids,
)
from services.policy.gate import GateConfig, gate_refusal
from services.policy.governance import GovernanceConfig, halt_reason
from services.policy.selection import CandidateScore
from services.policy.shards import ShardedPolicy
from services.router.breaker import Breakers
from services.runtime.codec import Rejected

RouterEvent = Decision | TrajectoryCompleted


def decision_id(trajectory_id: str, step: int) -> str:
    return f"{trajectory_id}:{step}"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An outcome for a (trajectory, step) already absorbed: dropped, nothing published."""

    trajectory_id: str
    step: int


class SnapshotVerdict(StrEnum):
    ADOPTED = "adopted"
    STALE = "stale"
    NOT_SERVED = "not_served"
    FOLD_MISMATCH = "fold_mismatch"
    INVALID = "invalid"
    #: usable, but the off-policy gate keeps the acting policy (``gate_reason`` says why)
    GATED = "gated"


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    verdict: SnapshotVerdict
    tenant: str
    version: int
    detail: str
    gate_reason: str | None = None

    @property
    def adopted(self) -> bool:
        return self.verdict is SnapshotVerdict.ADOPTED


class RecentSteps:
    """A bounded set of (trajectory_id, step) that forgets the oldest entry first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._keys: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._keys

    def add(self, key: tuple[str, int]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def discard(self, key: tuple[str, int]) -> None:
        self._keys.pop(key, None)


def action_score(candidate: CandidateScore) -> ActionScore:
    """The wire form of a selector score: JSON has no infinity, so +inf travels as null."""
    return ActionScore(
        action=candidate.action,
        score=_finite(candidate.score),
        mean=candidate.mean,
        bonus=_finite(candidate.bonus),
        penalty=candidate.penalty,
        visits=candidate.visits,
        failures=candidate.failures,
    )


def decision_event(step: Step, tenant: str, version: int, note: str | None = None) -> Decision:
    """The Decision the router publishes for ``step`` of a policy at ``version``; ``note``
    says why candidates were withheld (an open circuit breaker)."""
    state, selection, variant = step.state, step.selection, step.variant
    return Decision(
        tenant=tenant,
        decision_id=decision_id(state.trajectory_id, step.step),
        trajectory_id=state.trajectory_id,
        task_id=state.task_id,
        step=step.step,
        action=step.action,
        action_kind=ActionKind.SKIP if variant is None else ActionKind.INVOKE,
        cell=step.cell,
        protocol=None if variant is None else variant.protocol,
        model=None if variant is None else variant.model,
        reason=selection.reason,
        reason_detail=note,
        signature=step.signature,
        scores=[action_score(c) for c in selection.scores],
        propensity=selection.propensity,
        policy_version=version,
        exploration_c=selection.exploration_c,
        state=state,
    )


def _finite(value: float) -> float | None:
    return None if value == math.inf else value


def step_result(outcome: StepOutcome, governance: GovernanceConfig | None = None) -> StepResult:
    """The outcome as the policy absorbs it; ``governance`` decides whether a failure halts
    the trajectory (None: never)."""
    succeeded = outcome.status is StepStatus.SUCCEEDED
    halt = None
    if not succeeded and governance is not None:
        halt = halt_reason(outcome.state.failures + 1, outcome.failure_kind, governance)
    return StepResult(
        succeeded=succeeded,
        delta=outcome.delta,
        tokens=outcome.tokens_in + outcome.tokens_out,
        retries=outcome.retries,
        done=outcome.done,
        halt=halt,
    )


class RouterCore:
    """The policy per served tenant, the outcome dedupe window and, when given, the
    circuit breakers of the models; everything else travels in the events.

    ``governance`` halts trajectories on fatal or repeated failures (None: never);
    ``breakers`` withholds the variants of failing models (None: every model is offered);
    ``gate`` adopts only snapshots whose off-policy figures pass it (None: every newer one)."""

    def __init__(
        self,
        setup: PolicySetup,
        tenants: Sequence[str],
        *,
        budget: Budget | None = None,
        dedupe_window: int = 200_000,
        governance: GovernanceConfig | None = None,
        breakers: Breakers | None = None,
        gate: GateConfig | None = None,
    ) -> None:
        if not tenants:
            raise ValueError("a router must serve at least one tenant")
        self.setup = setup
        self.budget = budget or Budget()
        self.governance = governance
        self.breakers = breakers
        self.gate = gate
        self._policies: dict[str, ShardedPolicy] = {t: ShardedPolicy() for t in tenants}
        self._absorbed = RecentSteps(dedupe_window)

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(self._policies)

    def adopted_version(self, tenant: str) -> int | None:
        """The snapshot version in use for ``tenant`` (of a sharded policy, the sum of its
        shards' versions); None while cold (no snapshot yet)."""
        return self._policies[tenant].version

    def policy_version(self, tenant: str) -> int:
        """The version decisions carry: 0 for the empty policy of a cold start."""
        return self._policies[tenant].version or 0

    def policy_of(self, tenant: str) -> PolicyGraph:
        """The graph ``tenant``'s decisions are taken with (the merge of its shards)."""
        return self._policies[tenant].graph

    # --- inputs --------------------------------------------------------------------------

    def on_task(self, task: TaskSubmitted) -> list[RouterEvent] | Rejected:
        """Start the task's trajectories and take each to its first invoke or its end."""
        if task.tenant not in self._policies:
            return _unknown_tenant(task.tenant)
        try:
            states = [
                start_state(
                    task_id=task.task_id,
                    trajectory_id=trajectory_id,
                    goal=task.goal,
                    features=task.features,
                    setup=self.setup,
                    task_class=task.task_class,
                    constraints=task.constraints,
                    budget=task.budget or self.budget,
                    keys={"tenant": task.tenant},
                    rollouts=task.rollouts,
                )
                for trajectory_id in trajectory_ids(task.task_id, task.rollouts)
            ]
        except ValidationError as error:
            return Rejected("invalid_task", f"task {task.task_id}: {_first_error(error)}")
        return [event for state in states for event in self._advance(state, task.tenant)]

    def on_outcome(self, outcome: StepOutcome) -> list[RouterEvent] | Duplicate | Rejected:
        """Absorb an executed step and advance its trajectory to the next invoke or its end."""
        if outcome.tenant not in self._policies:
            return _unknown_tenant(outcome.tenant)
        key = (outcome.trajectory_id, outcome.step)
        if key in self._absorbed:
            return Duplicate(outcome.trajectory_id, outcome.step)
        rejected = self._check(outcome)
        if rejected is not None:
            return rejected
        try:
            state = absorb(outcome.state, step_result(outcome, self.governance), self.setup)
            if self.breakers is not None:
                model = self.setup.pool.variant(outcome.action).model
                self.breakers.record(model, key, outcome.status is StepStatus.FAILED)
            events = self._advance(state, outcome.tenant)
        except (KeyError, ValueError) as error:
            # The state came off the wire; one that does not fit this router's pool (a plan
            # naming a cell it does not know, say) is bad input, not a router failure.
            return Rejected("invalid_state", f"trajectory {outcome.trajectory_id}: {error}")
        self._absorbed.add(key)
        return events

    def forget(self, trajectory_id: str, step: int) -> None:
        """Undo the dedupe entry of an outcome whose events could not be published, so that
        its redelivery is absorbed again instead of dropped."""
        self._absorbed.discard((trajectory_id, step))

    def on_snapshot(self, snapshot: PolicySnapshot) -> SnapshotResult:
        """Hot-swap to ``snapshot`` when it is a newer policy of a served tenant that folds
        states the way this router does. A shard's snapshot replaces that shard's previous
        one, and decisions are taken with the merge of the newest snapshot of every shard;
        the off-policy gate judges each shard on its own figures."""
        tenant, version, shard = snapshot.tenant, snapshot.version, snapshot.shard

        def result(verdict: SnapshotVerdict, detail: str) -> SnapshotResult:
            return SnapshotResult(verdict, tenant, version, detail)

        policy = self._policies.get(tenant)
        if policy is None:
            return result(SnapshotVerdict.NOT_SERVED, f"tenant {tenant!r} is not served here")
        current = policy.version_of(shard)
        if current is not None and version <= current:
            of = "" if shard is None else f" of shard {shard}"
            return result(
                SnapshotVerdict.STALE, f"version {version}{of} is not newer than {current}"
            )
        if snapshot.policy.fold != self.setup.fold:
            return result(
                SnapshotVerdict.FOLD_MISMATCH,
                f"the snapshot folds states with {snapshot.policy.fold.model_dump()}, this "
                f"router with {self.setup.fold.model_dump()}: its signatures would not match",
            )
        try:
            graph = PolicyGraph.from_document(snapshot.policy)
        except ValueError as error:
            return result(SnapshotVerdict.INVALID, str(error))
        refusal = None if self.gate is None else gate_refusal(snapshot.gate, self.gate)
        if refusal is not None:
            detail = f"the off-policy gate keeps version {current or 0}: {refusal}"
            return SnapshotResult(SnapshotVerdict.GATED, tenant, version, detail, refusal)
        policy.take(shard, version, graph)
        detail = f"{graph.node_count} nodes, {snapshot.backed_up} backed up"
        if shard is not None:
            detail += (
                f" in shard {shard} of {snapshot.shards}; {policy.graph.node_count} nodes "
                f"merged from {len(policy.shards)} shards, version {policy.version}"
            )
        return result(SnapshotVerdict.ADOPTED, detail)

    # --- helpers -------------------------------------------------------------------------

    def _check(self, outcome: StepOutcome) -> Rejected | None:
        is_skip, cell = parse_action(outcome.action)
        if is_skip or not self.setup.pool.knows(outcome.action) or cell != outcome.cell:
            return Rejected(
                "unknown_action",
                f"action {outcome.action!r} of cell {outcome.cell!r} is not an invoke of "
                "this router's pool",
            )
        state = outcome.state
        if state.trajectory_id != outcome.trajectory_id:
            return Rejected(
                "unknown_trajectory",
                f"outcome for {outcome.trajectory_id} carries the state of {state.trajectory_id}",
            )
        pending = state.pending
        if pending is None:
            return Rejected(
                "unknown_step",
                f"trajectory {outcome.trajectory_id} waits on no step, the outcome is for "
                f"step {outcome.step} ({outcome.action})",
            )
        if (pending.step, pending.action) != (outcome.step, outcome.action):
            return Rejected(
                "unknown_step",
                f"trajectory {outcome.trajectory_id} waits on step {pending.step} "
                f"({pending.action}), the outcome is for step {outcome.step} ({outcome.action})",
            )
        return None

    def _advance(self, state: TrajectoryState, tenant: str) -> list[RouterEvent]:
        version = self.policy_version(tenant)
        graph = self._policies[tenant].graph
        breakers = self.breakers
        if breakers is None:
            steps, ended = advance(state, graph, self.setup)
            notes: list[str | None] = [None] * len(steps)
        else:
            steps, ended = advance(state, graph, self.setup, breakers.blocked())
            notes = []
            for step in steps:
                model = None if step.variant is None else step.variant.model
                breakers.dispatched(model, (step.state.trajectory_id, step.step))
                notes.append(breakers.note(model))
        events: list[RouterEvent] = [
            decision_event(s, tenant, version, note) for s, note in zip(steps, notes, strict=True)
        ]
        if ended is not None:
            final = steps[-1].state if steps else state
            events.append(trajectory_completed(final, ended, tenant, version))
        return events


def _unknown_tenant(tenant: str) -> Rejected:
    return Rejected("unknown_tenant", f"tenant {tenant!r} is not served by this router")


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"
