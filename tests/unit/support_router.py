"""The router's core in unit tests: the shipped scenario's paper setup and world, a task to
submit, a core serving two tenants, and driving it as a worker would (executing each invoke
in the simulated world until the trajectory completes), a router's events for tasks judged
by the simulated judge, plus policy snapshots of a graph."""

from schemas.events import (
    ActionKind,
    Decision,
    PolicySnapshot,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)
from schemas.records import Budget, FoldSpec, TrajectoryState
from services.policy import PolicyGraph, PolicySetup, signature_of, start_state
from services.policy.arms import policy_setup
from services.router.core import RouterCore, RouterEvent
from services.sim import World, load_scenario
from services.sim.engine import epoch_tasks
from services.sim.judge import SimulatedJudge
from services.worker.invoke import outcome_of

SCENARIO = load_scenario("security-advisories")
SETUP = policy_setup(SCENARIO, "paper")
WORLD = World(SCENARIO, seed=0)


def task(task_id: str = "t1", **kw: object) -> TaskSubmitted:
    c1 = SCENARIO.classes["C1"]
    args: dict[str, object] = {
        "task_id": task_id,
        "goal": c1.description,
        "features": c1.features,
        "task_class": c1.name,
    }
    args.update(kw)
    return TaskSubmitted.model_validate(args)


def core(setup: PolicySetup = SETUP, budget: Budget | None = None) -> RouterCore:
    return RouterCore(setup, ("default", "acme"), budget=budget)


def routed(result: object) -> list[RouterEvent]:
    assert isinstance(result, list), result
    return result


def decisions(events: list[RouterEvent]) -> list[Decision]:
    return [e for e in events if isinstance(e, Decision)]


def execute(decision: Decision, world: World = WORLD) -> StepOutcome:
    """What a worker publishes for an invoke decision, run in the simulated world."""
    return outcome_of(
        decision, world.execute(decision.state, SCENARIO.pool.variant(decision.action))
    )


def snapshot(
    graph: PolicyGraph, version: int, *, tenant: str = "default", fold: FoldSpec | None = None
) -> PolicySnapshot:
    document = graph.to_document(tenant=tenant, version=version, fold=fold)
    return PolicySnapshot(tenant=tenant, version=version, policy=document)


def start_state_of() -> TrajectoryState:
    t = task()
    return start_state(
        task_id=t.task_id,
        trajectory_id=t.task_id,
        goal=t.goal,
        features=t.features,
        setup=SETUP,
        task_class=t.task_class,
    )


def confident_graph(means: dict[str, float]) -> PolicyGraph:
    """A graph past the confidence threshold at the start node, with one visit per listed
    action at the given mean reward (unlisted actions stay untried)."""
    graph = PolicyGraph()
    signature = signature_of(start_state_of(), SETUP)
    actions = list(means)
    graph.backup(
        graph.batch(
            [(signature, a, False) for a in actions], list(means.values()), [0.0] * len(actions)
        )
    )
    graph.node_visits[graph.node_row(signature)] = 10
    return graph


def run_to_end(router: RouterCore, submitted: TaskSubmitted) -> list[RouterEvent]:
    """Route a task and execute every invoke until each trajectory completes."""
    events = routed(router.on_task(submitted))
    log = list(events)
    while events:
        invokes = [d for d in decisions(events) if d.action_kind is ActionKind.INVOKE]
        events = [e for d in invokes for e in routed(router.on_outcome(execute(d)))]
        log += events
    return log


def logged(core: RouterCore, tasks: int, prefix: str = "t") -> list[RouterEvent | RewardObserved]:
    """A router's events for ``tasks`` tasks run to their end in the simulated world, each
    completion followed by the simulated judge's reward."""
    world, judge = World(SCENARIO, 0), SimulatedJudge(SCENARIO.judges, 0)
    events: list[RouterEvent | RewardObserved] = []
    for i, (_, task_class) in enumerate(epoch_tasks(SCENARIO, 0, 1)[:tasks]):
        submitted = task(
            f"{prefix}-{i}",
            goal=task_class.description,
            features=task_class.features,
            task_class=task_class.name,
        )
        for event in run_to_end(core, submitted):
            events.append(event)
            if isinstance(event, TrajectoryCompleted):
                judged = judge.score(event.trajectory_id, world.true_quality(event.state))
                events.append(judged.to_event(task_id=event.task_id))
    return events
