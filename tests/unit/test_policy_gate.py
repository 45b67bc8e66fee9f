"""The off-policy gate, pure: epsilon exploration draws each candidate with the propensity
it logs, the window joins a router's events per acting version, the acting policy judged on
its own log estimates exactly its own mean, the refusal reasons, and the learner and router
cores carrying and checking the figures."""

from collections import Counter

import pytest

from schemas.events import Decision, PolicySnapshot, RewardObserved, TrajectoryCompleted
from schemas.policy_file import GateFigures
from schemas.records import SelectionConfig
from services.learner.core import LearnerConfig, LearnerCore
from services.policy import PolicyGraph
from services.policy.arms import arm_named
from services.policy.gate import (
    BELOW_ACTING_POLICY,
    TOO_FEW_TRAJECTORIES,
    GateConfig,
    GateWindow,
    gate_figures,
    gate_refusal,
)
from services.policy.ope import TargetPolicy
from services.policy.selection import Guard, select, with_epsilon
from services.router.core import RouterCore, RouterEvent, SnapshotVerdict
from services.runtime.settings import Settings
from tests.unit.support_router import SCENARIO, logged

ARM = arm_named("agensbus+explore")
SETUP = ARM.setup(SCENARIO, 0)
CANDIDATES = ("solver:a", "solver:b", "skip:solver")


def test_epsilon_draws_each_candidate_with_the_propensity_it_logs() -> None:
    greedy = select(PolicyGraph(), "s", CANDIDATES, SelectionConfig())
    grid = 10_000
    drawn = [with_epsilon(greedy, CANDIDATES, 0.05, (i + 0.5) / grid) for i in range(grid)]
    share = Counter(s.index for s in drawn)
    for selection in drawn:
        assert share[selection.index] / grid == pytest.approx(selection.propensity, abs=1 / grid)
    assert {s.index: s.propensity for s in drawn} == pytest.approx(
        {0: 0.95 + 0.05 / 3, 1: 0.05 / 3, 2: 0.05 / 3}
    )
    assert {s.reason.value for s in drawn if s.index != 0} == {"random_exploration"}


def test_epsilon_never_leaves_a_kept_pipeline_nor_takes_a_temperature() -> None:
    config = SETUP.selection
    kept = {
        select(PolicyGraph(), "s", CANDIDATES, config, u=u / 100, guard=Guard.BASELINE)
        for u in range(100)
    }
    assert {(s.index, s.propensity) for s in kept} == {(0, 1.0)}
    with pytest.raises(ValueError, match="temperature"):
        SelectionConfig.model_validate({**config.model_dump(), "temperature": 0.1})


def window_of(events: list[RouterEvent | RewardObserved], capacity: int = 1_000) -> GateWindow:
    window = GateWindow(capacity, ARM.reward)
    for event in events:
        window.add(event)
    return window


def test_the_acting_policy_on_its_own_log_estimates_its_own_mean() -> None:
    window = window_of(logged(RouterCore(SETUP, ("default",)), 40))
    figures = gate_figures(TargetPolicy(PolicyGraph(), SETUP.selection, floors=True), window)
    assert (figures.acting_version, figures.trajectories) == (0, 40)
    assert figures.estimate == pytest.approx(figures.acting_estimate, abs=1e-12)
    assert figures.lower_bound is not None and figures.lower_bound < figures.acting_estimate  # type: ignore[operator]
    # Its own interval is the whole question: no tolerance refuses it, enough admits it.
    assert (
        gate_refusal(figures, GateConfig(tolerance=0.0, min_trajectories=40)) == BELOW_ACTING_POLICY
    )
    assert gate_refusal(figures, GateConfig(tolerance=0.2, min_trajectories=40)) is None
    assert (
        gate_refusal(figures, GateConfig(tolerance=0.2, min_trajectories=41))
        == TOO_FEW_TRAJECTORIES
    )


def test_the_window_keeps_the_acting_version_and_forgets_the_oldest() -> None:
    events = logged(RouterCore(SETUP, ("default",)), 6)
    later = [
        e.model_copy(update={"policy_version": 4}) if isinstance(e, TrajectoryCompleted) else e
        for e in logged(RouterCore(SETUP, ("default",)), 3, prefix="later")
    ]
    window = window_of([*events, *later])
    assert window.acting_version == 4
    assert sorted(t.trajectory_id for t in window.acting()) == ["later-0", "later-1", "later-2"]
    small = window_of(events, capacity=2)
    assert [t.trajectory_id for t in small.acting()] == ["t-4", "t-5"]
    # The three topics are read apart: decisions that come last still join.
    late = sorted(events, key=lambda e: isinstance(e, Decision))
    assert len(window_of(late).acting()) == 6
    # A trajectory whose decisions did not all arrive is not used.
    missing = [
        e
        for e in events
        if not (isinstance(e, Decision) and e.trajectory_id == "t-0" and e.step == 0)
    ]
    assert "t-0" not in {t.trajectory_id for t in window_of(missing).acting()}


def test_refusal_reasons() -> None:
    config = GateConfig(tolerance=0.02, min_trajectories=10)

    def figures(trajectories: int, lower: float | None, acting: float | None) -> GateFigures:
        return GateFigures(
            acting_version=1,
            trajectories=trajectories,
            estimate=lower,
            lower_bound=lower,
            acting_estimate=acting,
        )

    assert gate_refusal(None, config) == TOO_FEW_TRAJECTORIES
    assert gate_refusal(figures(9, 0.9, 0.5), config) == TOO_FEW_TRAJECTORIES
    assert gate_refusal(figures(10, None, 0.5), config) == TOO_FEW_TRAJECTORIES
    assert gate_refusal(figures(10, 0.479, 0.5), config) == BELOW_ACTING_POLICY
    assert gate_refusal(figures(10, 0.48, 0.5), config) is None


def test_the_learner_puts_the_figures_in_its_snapshot_and_the_router_checks_them() -> None:
    events = logged(RouterCore(SETUP, ("default",)), 12)
    config = LearnerConfig("default", ("default",), SETUP, ARM.reward, gate_window=100)
    learner = LearnerCore(config)
    for event in events:
        if isinstance(event, Decision):
            learner.on_decision(event)
        elif isinstance(event, TrajectoryCompleted):
            learner.on_trajectory(event, 0.0)
        else:
            learner.on_reward(event, 0.0)
    snapshot = learner.snapshot(1, {})
    assert snapshot.gate is not None and snapshot.gate.trajectories == 12
    ungated = LearnerCore(LearnerConfig("default", ("default",), SETUP, ARM.reward))
    assert ungated.snapshot(1, {}).gate is None

    router = RouterCore(SETUP, ("default",), gate=GateConfig(min_trajectories=12))
    assert snapshot.gate.lower_bound is not None and snapshot.gate.acting_estimate is not None
    below = snapshot.gate.model_copy(update={"acting_estimate": snapshot.gate.lower_bound + 0.03})
    refused = router.on_snapshot(snapshot.model_copy(update={"gate": below}))
    assert (refused.verdict, refused.gate_reason) == (SnapshotVerdict.GATED, BELOW_ACTING_POLICY)
    assert router.adopted_version("default") is None
    bare = PolicySnapshot(version=2, policy=snapshot.policy.model_copy(update={"version": 2}))
    assert router.on_snapshot(bare).gate_reason == TOO_FEW_TRAJECTORIES
    at_par = snapshot.gate.model_copy(update={"acting_estimate": snapshot.gate.lower_bound})
    adopted = router.on_snapshot(snapshot.model_copy(update={"version": 3, "gate": at_par}))
    assert adopted.adopted and router.adopted_version("default") == 3


def test_a_window_smaller_than_the_gate_needs_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="could never judge"):
        Settings(gate_min_trajectories=200, gate_window=100)
    assert Settings(gate_min_trajectories=200, gate_window=200).gate_window == 200
