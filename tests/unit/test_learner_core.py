"""The learner's pure core: joins, reward, dedupe, TTL, tenants, snapshot and restore."""

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from schemas.events import PolicySnapshot, RewardObserved, TrajectoryCompleted
from schemas.records import FoldSpec, RewardConfig, StepStatus
from services.learner import core as learner_core
from services.learner.core import Applied, LearnerConfig, LearnerCore, Verdict, input_offsets
from services.policy import PolicyGraph
from services.policy.arms import arm_named, policy_setup
from services.runtime.codec import decode, encode
from services.runtime.settings import Settings
from tests.unit.support_learner import (
    SCENARIO,
    SETUP,
    backed_up_directly,
    real_pairs,
    reward_of,
)
from tests.unit.support_learner import learner_config as config


def verdicts(applied: Sequence[Applied]) -> list[Verdict]:
    return [a.verdict for a in applied]


def test_a_trajectory_and_its_reward_join_in_either_order() -> None:
    (t0, r0), (t1, r1) = pairs = real_pairs(2)
    core = LearnerCore(config())
    results = [core.on_trajectory(t0, 0.0), core.on_reward(r0, 1.0)]
    results += [core.on_reward(r1, 2.0), core.on_trajectory(t1, 3.0)]
    assert verdicts(results) == [Verdict.WAITING, Verdict.BACKED_UP] * 2
    assert core.backed_up == 2
    assert core.waiting == (0, 0)
    # r0 completed the first join, t1 the second: the same order as backing up directly
    assert core.graph.to_document() == backed_up_directly(pairs).to_document()
    first = results[1].backup
    assert first is not None
    assert first.trajectory_id == t0.trajectory_id
    assert first.edges == len(t0.state.visited)
    assert (first.task_class, first.regime) == (t0.task_class, t0.regime)


@pytest.mark.parametrize(
    ("quality", "tokens", "retries", "expected"),
    [
        (0.8, 4_000, 1, 0.8 - 0.3 * 0.5 - 0.15),  # 0.5
        (0.9, 12_000, 0, 0.9 - 0.3),  # the cost term saturates at 8,000 tokens: 0.6
        (0.2, 0, 3, 0.2 - 0.45),  # -0.25
    ],
)
def test_the_hybrid_reward_reaches_every_completed_edge(
    quality: float, tokens: int, retries: int, expected: float
) -> None:
    trajectory, reward = real_pairs(1)[0]
    state = trajectory.state.model_copy(update={"tokens_used": tokens, "retries": retries})
    trajectory = trajectory.model_copy(update={"state": state})
    core = LearnerCore(config())
    core.on_trajectory(trajectory, 0.0)
    applied = core.on_reward(reward.model_copy(update={"quality": quality}), 0.0)
    assert applied.backup is not None
    assert applied.backup.reward == pytest.approx(expected)
    for edge in state.visited:
        stats = core.graph.edge(edge.signature, edge.action)
        if edge.status is StepStatus.FAILED:
            assert (stats.visits, stats.failures) == (0, 1)
        else:
            assert (stats.visits, stats.failures) == (1, 0)
            assert stats.mean_reward == pytest.approx(expected)


def test_a_replayed_trajectory_or_a_second_reward_never_counts_twice() -> None:
    (t0, r0), (t1, r1), (t2, r2) = real_pairs(3)
    core = LearnerCore(config())
    core.on_trajectory(t0, 0.0)
    core.on_reward(r0, 0.0)
    before = core.graph.to_document()
    second = r0.model_copy(update={"event_id": "another", "quality": 0.01})
    assert verdicts([core.on_trajectory(t0, 1.0), core.on_reward(second, 1.0)]) == [
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
    ]
    assert core.graph.to_document() == before
    assert (core.backed_up, core.waiting) == (1, (0, 0))
    # A duplicate of a waiting trajectory is dropped too...
    assert verdicts([core.on_trajectory(t1, 2.0), core.on_trajectory(t1, 2.0)]) == [
        Verdict.WAITING,
        Verdict.DUPLICATE,
    ]
    assert core.on_reward(r1, 2.0).verdict is Verdict.BACKED_UP
    # ...and of two rewards that come before their trajectory, the first one counts.
    late = r2.model_copy(update={"quality": 0.0})
    assert verdicts([core.on_reward(r2, 3.0), core.on_reward(late, 3.0)]) == [
        Verdict.WAITING,
        Verdict.DUPLICATE,
    ]
    joined = core.on_trajectory(t2, 3.0).backup
    assert joined is not None
    assert joined.reward == pytest.approx(reward_of((t2, r2)))
    assert core.backed_up == 3


def test_joins_waiting_longer_than_the_ttl_expire_and_are_counted() -> None:
    (t0, r0), (_, r1) = real_pairs(2)
    core = LearnerCore(config(reward_ttl_s=10.0))
    core.on_trajectory(t0, 0.0)
    core.on_reward(r1, 5.0)
    assert core.expire(10.0) == 0  # waited exactly the TTL, not longer
    assert core.expire(10.5) == 1
    assert core.waiting == (0, 1)
    assert core.expire(15.5) == 1
    assert (core.waiting, core.expired) == ((0, 0), 2)
    # The reward of an expired trajectory has nothing to join any more.
    assert core.on_reward(r0, 20.0).verdict is Verdict.WAITING
    assert core.backed_up == 0
    assert core.graph.node_count == 0


def test_waiting_joins_are_bounded_by_what_a_checkpoint_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(learner_core, "MAX_WAITING", 2)
    (t0, r0), (t1, _), (t2, _) = real_pairs(3)
    core = LearnerCore(config())
    for at, trajectory in enumerate((t0, t1, t2)):
        core.on_trajectory(trajectory, float(at))
    assert (core.waiting, core.expired) == ((2, 0), 1)
    assert core.on_reward(r0, 3.0).verdict is Verdict.WAITING  # t0 gave way to t2


def test_the_dedupe_window_is_bounded() -> None:
    pairs = real_pairs(3)
    core = LearnerCore(config(dedupe_window=2))
    for trajectory, reward in pairs:
        core.on_trajectory(trajectory, 0.0)
        core.on_reward(reward, 0.0)
    ids = [t.trajectory_id for t, _ in pairs]
    assert core.snapshot(1, {}).checkpoint.recent_ids == ids[1:]
    assert core.on_trajectory(pairs[2][0], 1.0).verdict is Verdict.DUPLICATE
    assert core.on_trajectory(pairs[0][0], 1.0).verdict is Verdict.WAITING  # forgotten


def test_events_of_other_tenants_are_skipped_or_dead_lettered() -> None:
    (t0, r0), (t1, r1) = real_pairs(2)
    core = LearnerCore(config())
    foreign = [
        core.on_trajectory(t0.model_copy(update={"tenant": "other"}), 0.0),
        core.on_reward(r0.model_copy(update={"tenant": "other"}), 0.0),
    ]
    assert verdicts(foreign) == [Verdict.FOREIGN, Verdict.FOREIGN]
    unknown = [
        core.on_trajectory(t1.model_copy(update={"tenant": "stranger"}), 0.0),
        core.on_reward(r1.model_copy(update={"tenant": "stranger"}), 0.0),
    ]
    for applied in unknown:
        assert applied.verdict is Verdict.REJECTED
        assert applied.rejected is not None
        assert applied.rejected.error_type == "unknown_tenant"
        assert "stranger" in applied.rejected.reason
    assert (core.waiting, core.backed_up, core.graph.node_count) == ((0, 0), 0, 0)
    # The tenant's own copies still join.
    assert core.on_trajectory(t0, 1.0).verdict is Verdict.WAITING
    assert core.on_reward(r0, 1.0).verdict is Verdict.BACKED_UP


def test_a_trajectory_that_would_poison_the_graph_is_rejected() -> None:
    trajectory = real_pairs(1)[0][0]
    state = trajectory.state
    first = state.visited[0]

    def with_first_edge(**changes: object) -> TrajectoryCompleted:
        edge = first.model_copy(update=changes)
        bad = state.model_copy(update={"visited": [edge, *state.visited[1:]]})
        return trajectory.model_copy(update={"state": bad})

    cases = {
        "unknown_action": with_first_edge(action="solver.telepathy@fast"),
        # routers fold without task_class; a node keyed by it would fail their load
        "invalid_signature": with_first_edge(signature=first.signature + "|task_class=C1"),
        "inconsistent_trajectory": trajectory.model_copy(update={"trajectory_id": "elsewhere"}),
    }
    core = LearnerCore(config())
    for error_type, event in cases.items():
        applied = core.on_trajectory(event, 0.0)
        assert applied.verdict is Verdict.REJECTED
        assert applied.rejected is not None
        assert applied.rejected.error_type == error_type
    assert (core.waiting, core.graph.node_count) == ((0, 0), 0)


def test_a_snapshot_carries_the_routers_setup_and_the_offsets() -> None:
    trajectory, reward = real_pairs(1)[0]
    core = LearnerCore(config())
    core.on_trajectory(trajectory, 0.0)
    core.on_reward(reward, 0.0)
    offsets = {("p.rewards", 1): 4, ("p.trajectories", 0): 7, ("p.rewards", 0): 2}
    snapshot = core.snapshot(5, offsets)
    assert (snapshot.tenant, snapshot.version, snapshot.backed_up) == ("default", 5, 1)
    policy = snapshot.policy
    assert (policy.tenant, policy.version) == ("default", 5)
    assert (policy.fold, policy.selection, policy.reward) == (
        SETUP.fold,
        SETUP.selection,
        RewardConfig(),
    )
    assert PolicyGraph.from_document(policy).to_document() == core.graph.to_document()
    assert [(o.topic, o.partition, o.offset) for o in snapshot.input_offsets] == [
        ("p.rewards", 0, 2),
        ("p.rewards", 1, 4),
        ("p.trajectories", 0, 7),
    ]
    assert input_offsets(snapshot) == offsets


def test_restore_gives_back_the_same_learner() -> None:
    pairs = real_pairs(12)
    t, r = [p[0] for p in pairs], [p[1] for p in pairs]
    core = LearnerCore(config(reward_ttl_s=10.0))
    for i in range(6):
        core.on_trajectory(t[i], 0.0)
        core.on_reward(r[i], 0.0)
    core.on_trajectory(t[10], 0.0)  # expires below
    for i in (6, 7):
        core.on_trajectory(t[i], 20.0)
    for i in (8, 9):
        core.on_reward(r[i], 20.0)
    assert core.expire(15.0) == 1
    offsets = {("p.trajectories", 0): 9, ("p.rewards", 1): 8}
    snapshot = core.snapshot(3, offsets)

    wire = decode(encode(snapshot), PolicySnapshot)
    assert isinstance(wire, PolicySnapshot)
    restored = LearnerCore.restore(wire, config(reward_ttl_s=10.0), at=100.0)

    def state_of(learner: LearnerCore) -> PolicySnapshot:
        return learner.snapshot(3, offsets)

    exclude = {"event_id", "produced_at"}
    assert state_of(restored).model_dump(exclude=exclude) == snapshot.model_dump(exclude=exclude)
    assert restored.graph.to_document() == core.graph.to_document()
    assert (restored.backed_up, restored.expired, restored.waiting) == (6, 1, (2, 2))

    rest: list[TrajectoryCompleted | RewardObserved] = [
        t[8],
        r[6],
        r[0],  # a second reward for a backed-up trajectory
        t[3],  # a replayed trajectory
        t[9],
        r[7],
        t[11],
        r[11],
        r[10],  # its trajectory expired before the snapshot
    ]

    def feed(learner: LearnerCore) -> list[Verdict]:
        return [
            (
                learner.on_trajectory(event, 101.0)
                if isinstance(event, TrajectoryCompleted)
                else learner.on_reward(event, 101.0)
            ).verdict
            for event in rest
        ]

    expected = feed(core)
    assert expected.count(Verdict.BACKED_UP) == 5
    assert expected.count(Verdict.DUPLICATE) == 2
    assert feed(restored) == expected
    assert state_of(restored).model_dump(exclude=exclude) == state_of(core).model_dump(
        exclude=exclude
    )


def test_a_restored_join_waits_a_full_ttl_from_the_restore() -> None:
    (t0, _), (_, r1) = real_pairs(2)
    core = LearnerCore(config(reward_ttl_s=10.0))
    core.on_trajectory(t0, 0.0)
    core.on_reward(r1, 0.0)
    restored = LearnerCore.restore(core.snapshot(1, {}), config(reward_ttl_s=10.0), at=50.0)
    assert restored.expire(60.0) == 0
    assert restored.expire(60.5) == 2
    assert restored.expired == 2


def test_restore_refuses_another_tenants_or_another_folds_snapshot() -> None:
    core = LearnerCore(config())
    core.on_trajectory(real_pairs(1)[0][0], 0.0)
    snapshot = core.snapshot(1, {})
    with pytest.raises(ValueError, match="tenant 'default'"):
        LearnerCore.restore(snapshot, config(tenant="other"), 0.0)
    coarse = policy_setup(SCENARIO, "paper", fold=FoldSpec(granularity=0.25))
    with pytest.raises(ValueError, match="folds signatures"):
        LearnerCore.restore(snapshot, config(setup=coarse), 0.0)


def test_config_follows_the_settings() -> None:
    settings = Settings(tenant="acme", tenants="acme,beta", policy_arm="fixed")
    made = LearnerConfig.from_settings(settings, SCENARIO)
    assert (made.tenant, made.tenants) == ("acme", ("acme", "beta"))
    assert made.setup.selection.mode == "fixed"
    assert (made.dedupe_window, made.reward_ttl_s) == (
        settings.dedupe_window,
        settings.reward_ttl_s,
    )
    with pytest.raises(ValueError, match="not among the served tenants"):
        LearnerConfig.from_settings(Settings(tenant="acme", tenants="beta"), SCENARIO)


def test_an_arm_means_what_the_engine_means_by_it() -> None:
    settings = Settings(policy_arm="agensbus+linear_cost", seed=7)
    made = LearnerConfig.from_settings(settings, SCENARIO)
    arm = arm_named("agensbus+linear_cost")
    assert made.setup == arm.setup(SCENARIO, 7)
    assert made.reward == arm.reward
    assert made.reward.cost_shape == "linear" and made.setup.selection.untried_score == 0.9
    assert not LearnerConfig.from_settings(Settings(policy_arm="noskip"), SCENARIO).setup.allow_skip
    # An arm a deployment cannot run is refused with the settings, before any service.
    with pytest.raises(ValidationError, match="starts warm"):
        Settings(policy_arm="agensbus-warm")
    with pytest.raises(ValidationError, match="unknown arm"):
        Settings(policy_arm="clever")


def test_signatures_checked_while_their_trajectory_waits_keep_their_verdicts() -> None:
    pairs = real_pairs(2)
    trajectory, other = pairs[0][0], pairs[1][0]
    state = trajectory.state
    bad_edge = state.visited[0].model_copy(
        update={"signature": state.visited[0].signature + "|task_class=C1"}
    )
    bad = trajectory.model_copy(
        update={
            "trajectory_id": "bad",
            "state": state.model_copy(
                update={"trajectory_id": "bad", "visited": [bad_edge, *state.visited[1:]]}
            ),
        }
    )
    core = LearnerCore(config())

    assert core.on_trajectory(trajectory, 0.0).verdict is Verdict.WAITING  # no node yet
    for _ in range(2):  # a bad signature is never remembered as checked
        applied = core.on_trajectory(bad, 0.0)
        assert applied.rejected is not None
        assert applied.rejected.error_type == "invalid_signature"
    assert core.on_trajectory(other, 0.0).verdict is Verdict.WAITING
    assert core.graph.node_count == 0
