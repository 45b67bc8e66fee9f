"""The public testing helper: real finished trajectories, as the router reports them."""

from services.policy import trajectory_ids
from services.policy.arms import policy_setup
from services.sim import Engine, load_scenario
from services.sim.testing import completed_trajectory

SCENARIO = load_scenario("security-advisories")


def test_a_rollout_is_named_as_the_router_names_it_and_keeps_its_task() -> None:
    engine = Engine(SCENARIO, policy_setup(SCENARIO, "paper"), seed=3)
    event = completed_trajectory(engine, "C2", "t-1", 2)
    assert event.trajectory_id == trajectory_ids("t-1", 3)[2] == event.state.trajectory_id
    assert (event.task_id, event.task_class, event.state.task_id) == ("t-1", "C2", "t-1")
    assert event.steps == event.state.step > 0
    assert event.tokens == event.state.tokens_used > 0


def test_a_single_run_is_its_tasks_only_trajectory() -> None:
    engine = Engine(SCENARIO, policy_setup(SCENARIO, "paper"), seed=3)
    event = completed_trajectory(engine, "C5", "t-2")
    assert event.trajectory_id == event.task_id == "t-2"
    assert event.termination is not None and event.tenant == "default"
