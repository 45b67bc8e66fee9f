"""The router's pure logic: start a trajectory, choose its next step, absorb an outcome.

Nothing here keeps state between calls: everything needed travels in ``TrajectoryState``,
so any router replica (or the in-process engine) can advance any trajectory.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from schemas.events import Termination, TrajectoryCompleted
from schemas.records import (
    Budget,
    FoldSpec,
    Handoff,
    HandoffDelta,
    PendingStep,
    Regime,
    SelectionConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
    VisitedEdge,
)
from services.policy.actions import candidate_actions
from services.policy.beliefs import update_beliefs
from services.policy.cells import CellPool, Variant, paper_pool, parse_action
from services.policy.floor import deviations, pipeline_noise, warned
from services.policy.graph import PolicyGraph
from services.policy.handoff import apply_delta
from services.policy.regime import detect_regime
from services.policy.selection import Guard, Selection, score_candidates, select
from services.policy.signature import fold


@dataclass(frozen=True)
class PolicySetup:
    """What a router needs besides the learned graph: cells, fold and selection rules.
    ``seed`` keys the draws of stochastic selection (unused at temperature 0)."""

    pool: CellPool = field(default_factory=paper_pool)
    fold: FoldSpec = field(default_factory=FoldSpec)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    allow_skip: bool = True
    seed: int = 0


def start_state(
    *,
    task_id: str,
    trajectory_id: str,
    goal: str,
    features: TaskFeatures,
    setup: PolicySetup,
    task_class: str | None = None,
    constraints: Sequence[str] = (),
    budget: Budget | None = None,
    keys: Mapping[str, str] | None = None,
    rollouts: int = 1,
) -> TrajectoryState:
    """The state before the first step. ``keys`` offers values for the fold's extra keys
    (``task_class`` is always offered); ``rollouts`` is how many trajectories the task runs."""
    regime = detect_regime(features)
    offered = dict(keys or {})
    if task_class is not None:
        offered.setdefault("task_class", task_class)
    return TrajectoryState(
        task_id=task_id,
        trajectory_id=trajectory_id,
        regime=regime,
        task_class=task_class,
        features=features,
        plan=list(setup.pool.plan_for(regime)),
        handoff=Handoff(goal=goal, constraints=list(constraints)),
        budget=budget or Budget(),
        fold_keys={k: v for k, v in offered.items() if k in setup.fold.extra_keys},
        rollouts=rollouts,
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One decision. ``state`` is the state after it: for a skip, already advanced; for an
    invoke, waiting on the outcome (``state.pending`` set)."""

    step: int
    signature: str
    selection: Selection
    cell: str
    variant: Variant | None
    state: TrajectoryState

    @property
    def action(self) -> str:
        return self.selection.action

    @property
    def is_skip(self) -> bool:
        return self.variant is None


def termination(state: TrajectoryState, candidates: Sequence[str]) -> Termination | None:
    if state.done:
        return Termination.EVALUATOR_DONE
    if state.halted:
        return Termination.GOVERNANCE_HALT
    if state.step >= state.budget.max_steps:
        return Termination.STEP_BUDGET
    if state.tokens_used >= state.budget.max_tokens:
        return Termination.TOKEN_BUDGET
    if not candidates:
        return Termination.NO_LEGAL_ACTION
    return None


def signature_of(state: TrajectoryState, setup: PolicySetup) -> str:
    return fold(setup.fold, state.regime, state.handoff, state.beliefs, state.fold_keys).text


def decision_uniform(seed: int, trajectory_id: str, step: int) -> float:
    """A uniform in [0, 1) fixed by (seed, trajectory, step): a redelivered decision, on any
    router replica, draws the same action, so stochastic selection stays replayable."""
    digest = hashlib.blake2b(f"{seed}|{trajectory_id}|{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def guard_for(state: TrajectoryState, graph: PolicyGraph, config: SelectionConfig) -> Guard | None:
    """How baseline-safe selection constrains the trajectory's next decision (None: it is
    off). A protected class or regime runs the pipeline: nodes are shared across the
    classes of a regime, so evidence that proves a move there may come from other classes
    (measured: the node rule on protected rare classes ran their fatal skip). The class
    floor (``baseline_floor`` class) leaves a class to its scores while its floor is open
    and holds it to the pipeline while it is closed. The node rule explores once per
    trajectory: the first decision that could explore logs a propensity below 1 whichever
    way it went (every other decision logs 1), so the visited edges tell, and the logged
    propensities multiply to the exact probability of the trajectory."""
    if config.baseline_tolerance is None:
        return None
    if config.baseline_floor == "class" or state.task_class in config.protected_classes:
        return class_guard(state.task_class, state.regime, graph, config)
    if state.regime in config.protected_regimes:
        return Guard.BASELINE
    if all(edge.propensity == 1.0 for edge in state.visited):
        return Guard.NODE
    return Guard.NODE_ONLY


def class_guard(
    task_class: str | None, regime: Regime | None, graph: PolicyGraph, config: SelectionConfig
) -> Guard:
    """The guard of a protected class or regime (the pipeline) or of the class floor (the
    pipeline while the class's floor is closed, else its scores), which holds for a whole
    trajectory of the class."""
    if task_class in config.protected_classes or regime in config.protected_regimes:
        return Guard.BASELINE
    floor = graph.classes.get(task_class or "")
    tolerance = config.baseline_tolerance or 0.0
    if floor is None or not floor.open(tolerance, config.baseline_z, config.explore_budget):
        return Guard.BASELINE
    return Guard.FREE


def class_withheld(
    task_class: str | None, graph: PolicyGraph, config: SelectionConfig
) -> tuple[frozenset[str], frozenset[str]]:
    """(withheld, retried) of the class floor's action veto for a class, whatever its
    trajectory has done: the actions vetoed for it (``ClassFloor.vetoes``) and those it has
    not tried that another class vetoes on evidence of their own (``warned``); and the
    confounded ones it can afford to retry. Nothing unless ``action_veto`` is on with the
    class floor."""
    if not config.action_veto or config.baseline_floor != "class" or task_class is None:
        return frozenset(), frozenset()
    floor = graph.classes.get(task_class)
    if floor is None:
        return frozenset(), frozenset()
    tolerance = config.baseline_tolerance or 0.0
    noise = pipeline_noise(graph.classes)
    every = {
        name: other.vetoes(tolerance, config.baseline_z, noise)
        for name, other in graph.classes.items()
    }
    vetoes = every[task_class]
    withheld = vetoes.vetoed | (warned(every, graph.classes) - floor.tried)
    return withheld, floor.retrials(vetoes, tolerance, config.baseline_z)


def offered(
    state: TrajectoryState, graph: PolicyGraph, setup: PolicySetup, candidates: Sequence[str]
) -> list[str]:
    """The candidates the class floor's action veto offers the trajectory's next decision:
    all but those withheld from its class (``class_withheld``), except one retrial of a
    confounded action per trajectory, which then takes no other deviation its class has not
    tried, so that the retrial's evidence is its own. If nothing would be left (the
    pipeline's own action never is withheld, but a blocked model may have taken it away),
    all stay."""
    withheld, retried = class_withheld(state.task_class, graph, setup.selection)
    if not withheld:
        return list(candidates)
    floor = graph.classes[state.task_class or ""]
    taken = deviations(state, setup.pool)
    tried = floor.tried
    if taken & retried:
        untried = {a for a in candidates if a not in tried and setup.pool.deviates(a)}
        withheld = withheld | untried
    elif not taken - tried:
        withheld = withheld - retried
    kept = [action for action in candidates if action not in withheld]
    return kept or list(candidates)


def decide(
    state: TrajectoryState,
    graph: PolicyGraph,
    setup: PolicySetup,
    blocked_models: frozenset[str] = frozenset(),
) -> Step | Termination:
    """Choose the next action, or say why the trajectory is over; variants bound to
    ``blocked_models`` are not offered (see ``candidate_actions``)."""
    if state.pending is not None:
        raise ValueError(
            f"trajectory {state.trajectory_id} still waits on step {state.pending.step}"
        )
    candidates = candidate_actions(
        state,
        setup.pool,
        allow_skip=setup.allow_skip,
        next_only=setup.selection.candidates == "next_in_plan",
        blocked_models=blocked_models,
    )
    candidates = offered(state, graph, setup, candidates)
    ended = termination(state, candidates)
    if ended is not None:
        return ended
    signature = signature_of(state, setup)
    config = setup.selection
    # Where every candidate may be drawn, the log lists them all (below).
    stochastic = config.temperature > 0.0 or config.explore_epsilon > 0.0
    explores = config.baseline_tolerance is not None and config.explore_share > 0.0
    drawn = stochastic or explores
    u = decision_uniform(setup.seed, state.trajectory_id, state.step) if drawn else None
    selection = select(
        graph, signature, candidates, config, u=u, guard=guard_for(state, graph, config)
    )
    if stochastic and not selection.scores:
        # Where the rule-based prior acted, a stochastic arm's log still lists every
        # candidate, so that off-policy evaluation can ask any target policy about it. A
        # deterministic router skips this: its log speaks only for policies that act as it
        # does, and scoring every cold decision would halve a paper-mode router's rate.
        scores = score_candidates(graph, signature, candidates, setup.selection)
        selection = replace(selection, scores=scores)
    is_skip, cell = parse_action(selection.action)
    if is_skip:
        edge = VisitedEdge(
            step=state.step,
            signature=signature,
            action=selection.action,
            propensity=selection.propensity,
            status=StepStatus.SKIPPED,
        )
        after = state.model_copy(
            update={
                "skipped": [*state.skipped, cell],
                "visited": [*state.visited, edge],
                "step": state.step + 1,
            }
        )
        return Step(state.step, signature, selection, cell, None, after)
    pending = PendingStep(
        step=state.step,
        signature=signature,
        action=selection.action,
        cell=cell,
        propensity=selection.propensity,
    )
    after = state.model_copy(update={"pending": pending})
    return Step(state.step, signature, selection, cell, setup.pool.variant(selection.action), after)


def advance(
    state: TrajectoryState,
    graph: PolicyGraph,
    setup: PolicySetup,
    blocked_models: frozenset[str] = frozenset(),
) -> tuple[list[Step], Termination | None]:
    """Decide until an invoke is pending or the trajectory ends; skips apply in place.

    Returns every decision taken (each is published for the audit trail) and the
    termination, if the trajectory ended.
    """
    steps: list[Step] = []
    while True:
        outcome = decide(state, graph, setup, blocked_models)
        if isinstance(outcome, Termination):
            return steps, outcome
        steps.append(outcome)
        if not outcome.is_skip:
            return steps, None
        state = outcome.state


@dataclass(frozen=True, slots=True)
class StepResult:
    """What executing an invoke produced, as the router needs it."""

    succeeded: bool
    delta: HandoffDelta = field(default_factory=HandoffDelta)
    tokens: int = 0
    retries: int = 0
    done: bool = False
    #: Why governance halts the trajectory after this step (services.policy.governance).
    halt: str | None = None


def absorb(state: TrajectoryState, result: StepResult, setup: PolicySetup) -> TrajectoryState:
    """Resolve the pending invoke with its result."""
    pending = state.pending
    if pending is None:
        raise ValueError(f"trajectory {state.trajectory_id} has no pending step")
    role = setup.pool.cells[pending.cell].role
    edge = VisitedEdge(
        step=pending.step,
        signature=pending.signature,
        action=pending.action,
        propensity=pending.propensity,
        status=StepStatus.SUCCEEDED if result.succeeded else StepStatus.FAILED,
        tokens=result.tokens,
        retries=result.retries,
    )
    update: dict[str, object] = {
        "pending": None,
        "invoked": [*state.invoked, pending.cell],
        "visited": [*state.visited, edge],
        "step": pending.step + 1,
        "tokens_used": state.tokens_used + result.tokens,
        "retries": state.retries + result.retries,
        "failures": state.failures + (0 if result.succeeded else 1),
        "done": state.done or (result.succeeded and result.done),
        "halted": state.halted or result.halt is not None,
        "halt_reason": state.halt_reason or result.halt,
    }
    if result.succeeded:
        update["handoff"] = apply_delta(state.handoff, result.delta)
        update["beliefs"] = update_beliefs(state.beliefs, role, result.delta)
    return state.model_copy(update=update)


def trajectory_ids(task_id: str, rollouts: int) -> list[str]:
    """The task id itself for a single rollout, else ``<task_id>~<r>`` for each rollout."""
    if rollouts == 1:
        return [task_id]
    return [rollout_id(task_id, r) for r in range(rollouts)]


def rollout_id(task_id: str, rollout: int) -> str:
    """The trajectory id of rollout ``rollout`` of a task run several times."""
    return f"{task_id}~{rollout}"


def trajectory_completed(
    state: TrajectoryState, ended: Termination, tenant: str, version: int
) -> TrajectoryCompleted:
    """The event the router publishes when ``state``'s trajectory ends."""
    handoff = state.handoff
    return TrajectoryCompleted(
        tenant=tenant,
        trajectory_id=state.trajectory_id,
        task_id=state.task_id,
        task_class=state.task_class,
        regime=state.regime,
        termination=ended,
        halt_reason=state.halt_reason if ended is Termination.GOVERNANCE_HALT else None,
        steps=state.step,
        tokens=state.tokens_used,
        retries=state.retries,
        answer=handoff.merged_answer or handoff.draft_answer,
        policy_version=version,
        state=state,
    )
