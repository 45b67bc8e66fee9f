"""The judge role's pure logic: what it accepts, how trajectories are grouped (rollouts by
task, single runs by class, never across tenants, at most ``size``, closed by a window),
and that scores are the simulated judge's own."""

import pytest

from schemas.events import TrajectoryCompleted
from services.judge.core import Grouper, accept, group_id, group_key, shape
from services.policy.rubric import judge_confidence
from services.runtime.codec import Rejected, encode
from services.sim import SimulatedJudge, World
from services.sim.scoring import score_group
from tests.unit.support_judge import SCENARIO, completed
from tests.unit.support_router import core, run_to_end, task


def test_rollouts_group_by_task_single_runs_by_class_and_tenants_apart() -> None:
    rollouts = [completed("t-1", "C1", r) for r in range(2)]
    assert group_key(rollouts[0]) == group_key(rollouts[1])
    # A rollout of another task of the same class is not a peer of these.
    assert group_key(completed("t-2", "C1", 0)) != group_key(rollouts[0])
    singles = [completed("t-3", "C1"), completed("t-4", "C1"), completed("t-5", "C2")]
    assert group_key(singles[0]) == group_key(singles[1]) != group_key(singles[2])
    assert group_key(singles[0]) != group_key(rollouts[0])
    other_tenant = singles[1].model_copy(update={"tenant": "acme"})
    assert group_key(other_tenant) != group_key(singles[1])


def test_a_group_closes_when_full_and_the_rest_waits() -> None:
    grouper: Grouper[str] = Grouper(size=3, window_s=10.0)
    assert grouper.add("k", "a", "A", now=0.0) == []
    assert grouper.add("other", "x", "X", now=0.0) == []
    assert grouper.add("k", "b", "B", now=1.0) == []
    (full,) = grouper.add("k", "c", "C", now=2.0)
    assert (full.key, full.members) == ("k", ("A", "B", "C"))
    # The next member of the key opens a new group.
    assert grouper.add("k", "d", "D", now=3.0) == []
    assert len(grouper) == 2


def test_a_group_that_does_not_fill_closes_when_its_window_ends() -> None:
    grouper: Grouper[str] = Grouper(size=4, window_s=0.5)
    grouper.add("k", "a", "A", now=10.0)
    grouper.add("j", "x", "X", now=10.3)
    assert grouper.due(10.49) == []
    (expired,) = grouper.due(10.5)
    assert expired.members == ("A",)
    # Adding elsewhere also returns what has expired meanwhile.
    (late,) = grouper.add("k", "b", "B", now=10.9)
    assert late.members == ("X",)
    assert [g.members for g in grouper.drain()] == [("B",)]
    assert len(grouper) == 0


def test_a_redelivered_trajectory_is_scored_once_but_kept_with_its_group() -> None:
    grouper: Grouper[str] = Grouper(size=2, window_s=10.0)
    grouper.add("k", "a", "A@1", now=0.0)
    grouper.add("k", "a", "A@7", now=0.1)
    (group,) = grouper.add("k", "b", "B", now=0.2)
    assert group.members == ("A@1", "B")
    assert group.items == ("A@1", "B", "A@7")


def test_a_window_of_zero_scores_each_trajectory_at_once() -> None:
    grouper: Grouper[str] = Grouper(size=4, window_s=0.0)
    (alone,) = grouper.add("k", "a", "A", now=0.0)
    assert alone.members == ("A",)


def test_group_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Grouper(size=0, window_s=1.0)


def test_scores_are_the_simulated_judges_and_share_the_group_id() -> None:
    group = [completed("t-9", "C4", r) for r in range(3)]
    rewards = score_group(group, World(SCENARIO, 5), SimulatedJudge(SCENARIO.judges, 5))
    judge, world = SimulatedJudge(SCENARIO.judges, 5), World(SCENARIO, 5)
    assert [r.trajectory_id for r in rewards] == [t.trajectory_id for t in group]
    for trajectory, reward in zip(group, rewards, strict=True):
        direct = judge.score(trajectory.trajectory_id, world.true_quality(trajectory.state))
        assert reward.quality == direct.quality
        assert reward.confidence == judge_confidence([j.overall for j in reward.judges])
        assert reward.judges == list(direct.scores)
        assert reward.task_id == "t-9"
    assert {r.group_id for r in rewards} == {group_id(t.trajectory_id for t in group)}
    # The id depends on the members, not on their order; event ids on the trajectory.
    assert group_id(["b", "a"]) == group_id(["a", "b"]) != group_id(["a", "c"])
    again = score_group(group[::-1], world, judge)
    assert {r.event_id for r in again} == {r.event_id for r in rewards}
    assert len({r.event_id for r in rewards}) == 3


def test_what_the_judge_accepts() -> None:
    good = completed("t-20", "C2")
    assert accept(encode(good), tuple(SCENARIO.classes), ("default",)) == good
    foreign_class = good.model_copy(
        update={"state": good.state.model_copy(update={"task_class": "C99"})}
    )
    cases = {
        b"[]": "schema_invalid",
        encode(good.model_copy(update={"tenant": "acme"})): "unknown_tenant",
        encode(good.model_copy(update={"trajectory_id": "t-21"})): "unknown_trajectory",
        encode(foreign_class): "unknown_task_class",
    }
    for raw, error_type in cases.items():
        rejected = accept(raw, tuple(SCENARIO.classes), ("default",))
        assert isinstance(rejected, Rejected) and rejected.error_type == error_type


def test_a_group_can_hold_its_own_size_and_window() -> None:
    grouper: Grouper[str] = Grouper(size=2, window_s=1.0)
    # A rollout group of 3 with a long window does not close at the grouper's size...
    assert grouper.add("r", "a", "A", now=0.0, size=3, window_s=60.0) == []
    assert grouper.add("r", "b", "B", now=0.1) == []
    # ...nor when the grouper's window has passed, while a class group does.
    assert grouper.add("c", "x", "X", now=0.2) == []
    (peers,) = grouper.due(1.5)
    assert peers.members == ("X",)
    (rollouts,) = grouper.add("r", "c", "C", now=2.0)
    assert rollouts.members == ("A", "B", "C")
    grouper.add("r2", "a", "A", now=3.0, size=5, window_s=10.0)
    assert grouper.due(12.9) == [] and [g.members for g in grouper.due(13.0)] == [("A",)]


def test_a_group_waits_for_every_rollout_or_for_size_peers() -> None:
    rollout = completed("t-s", "C2", 0)
    six = rollout.model_copy(update={"state": rollout.state.model_copy(update={"rollouts": 6})})
    assert shape(six, 4, 0.5, 120.0) == (6, 120.0)
    assert shape(completed("t-s", "C2"), 4, 0.5, 120.0) == (4, 0.5)
    # A rollout id without the count (an event from before the count existed) groups as
    # before: by size and window.
    assert shape(rollout, 4, 0.5, 120.0) == (4, 0.5)


def test_a_task_with_n_rollouts_is_judged_as_one_group_and_single_runs_by_class() -> None:
    """The chain as it runs: the router runs the task's rollouts to their end, the judge
    groups what it reports. Six rollouts form one group though groups of peers hold four."""
    router = core()
    ended = [
        e
        for submitted in (
            task("multi", rollouts=6),
            task("single-1"),
            task("single-2"),
            task("single-3", task_class="C2", features=SCENARIO.classes["C2"].features),
        )
        for e in run_to_end(router, submitted)
        if isinstance(e, TrajectoryCompleted)
    ]
    assert len(ended) == 9
    grouper: Grouper[str] = Grouper(size=4, window_s=0.5)
    closed = []
    for now, trajectory in enumerate(ended):
        size, window = shape(trajectory, 4, 0.5, 120.0)
        name = trajectory.trajectory_id
        # Trajectories arrive a second apart: far more than the peers' window.
        closed += grouper.add(group_key(trajectory), name, name, float(now), size, window)
    closed += grouper.drain()
    groups = sorted(sorted(g.members) for g in closed)
    assert [f"multi~{r}" for r in range(6)] in groups
    assert ["single-1"] in groups and ["single-2"] in groups and ["single-3"] in groups
    assert len(groups) == 4


def test_single_runs_of_a_class_are_judged_together_within_the_window() -> None:
    router = core()
    ended = [
        e
        for i in range(5)
        for e in run_to_end(router, task(f"peer-{i}"))
        if isinstance(e, TrajectoryCompleted)
    ]
    grouper: Grouper[str] = Grouper(size=4, window_s=0.5)
    closed = []
    for trajectory in ended:
        size, window = shape(trajectory, 4, 0.5, 120.0)
        name = trajectory.trajectory_id
        closed += grouper.add(group_key(trajectory), name, name, 0.1, size, window)
    assert [g.members for g in closed] == [("peer-0", "peer-1", "peer-2", "peer-3")]
    assert [g.members for g in grouper.due(0.6)] == [("peer-4",)]


def test_a_judge_of_any_class_takes_classes_no_scenario_knows() -> None:
    good = completed("t-22", "C2")
    for task_class in ("C99", None):
        state = good.state.model_copy(update={"task_class": task_class})
        unknown = good.model_copy(update={"task_class": task_class, "state": state})
        assert accept(encode(unknown), None, ("default",)) == unknown
        assert isinstance(accept(encode(unknown), tuple(SCENARIO.classes), ("default",)), Rejected)
    # Tenants still count.
    foreign = good.model_copy(update={"tenant": "acme"})
    assert isinstance(accept(encode(foreign), None, ("default",)), Rejected)
