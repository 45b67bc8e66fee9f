"""Decisions as the router publishes them, for tests of what consumes them (the worker, its
backends, the tool cells): built from the policy's own steps, so that their states are real."""

from schemas.events import ActionKind, Decision
from services.policy import PolicyGraph, Step, advance, start_state
from services.policy.arms import policy_setup
from services.router.core import decision_event
from services.sim import Scenario


def decision_of(step: Step, *, tenant: str = "default") -> Decision:
    """The Decision a router serving a cold policy publishes for ``step``."""
    return decision_event(step, tenant, 0)


def first_decision(
    scenario: Scenario, trajectory_id: str, task_class: str, *, tenant: str = "default"
) -> Decision:
    """The first invoke of a fresh trajectory of ``task_class``."""
    setup = policy_setup(scenario, "paper")
    state = start_state(
        task_id=trajectory_id,
        trajectory_id=trajectory_id,
        goal=scenario.classes[task_class].description,
        features=scenario.classes[task_class].features,
        setup=setup,
        task_class=task_class,
    )
    steps, ended = advance(state, PolicyGraph(), setup)
    assert ended is None
    return decision_of(steps[-1], tenant=tenant)


def as_skip(decision: Decision) -> Decision:
    """A skip of the decision's cell at the same step (its state is not consulted)."""
    return decision.model_copy(
        update={
            "action": f"skip:{decision.cell}",
            "action_kind": ActionKind.SKIP,
            "protocol": None,
            "model": None,
        }
    )
