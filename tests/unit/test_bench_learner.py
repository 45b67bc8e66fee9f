"""The arithmetic of ``agensbus bench learner``: the drain read off counter samples, and the
backlog's trajectories repeated under fresh ids, and what a learner replica is told."""

import pytest

from services.bench.learner import Drain, LearnerBenchResult, backlog, drained, replica_env
from services.runtime.settings import Settings
from tests.unit.support_learner import real_pairs


def test_a_drain_runs_from_the_last_sample_before_a_backup_to_the_first_that_saw_all() -> None:
    samples = [(10.0, 0), (10.5, 0), (11.0, 40), (12.0, 90), (12.5, 100), (13.0, 100)]

    assert drained(samples) == (100, 2.0)
    # Backed up before the first sample: counted from that sample.
    assert drained([(1.0, 5), (2.0, 8)]) == (8, 1.0)
    assert drained([(1.0, 0), (2.0, 0)]) == (0, 0.0)
    assert drained([]) == (0, 0.0)


def test_the_result_reports_trajectories_per_second_and_the_sharded_ratio() -> None:
    one, sharded = Drain(1, 100, 0.5), Drain(2, 80, 0.2)
    result = LearnerBenchResult("127.0.0.1:9092", True, 100, one, sharded)

    assert (one.per_s, sharded.per_s, result.ratio) == (200.0, 400.0, 2.0)
    assert result.timed_out  # the sharded run backed up 80 of 100
    assert result.as_dict()["sharded"]["per_s"] == 400.0
    assert result.as_dict()["ratio"] == 2.0
    assert not LearnerBenchResult("b", True, 80, one, sharded).timed_out
    assert Drain(1, 0, 0.0).per_s == 0.0
    assert LearnerBenchResult("b", True, 1, Drain(1, 0, 0.0), sharded).ratio == 0.0


def test_a_replica_reads_the_run_and_whether_it_is_sharded_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="bench-x.", pipeline="paper")
    for sharded in (True, False):
        for name, value in replica_env(run, sharded=sharded).items():
            monkeypatch.setenv(name, value)

        replica = Settings()

        assert (replica.kafka_bootstrap, replica.topic_prefix) == ("127.0.0.1:9", "bench-x.")
        assert (replica.pipeline, replica.learner_sharded) == ("paper", sharded)


def test_the_backlog_repeats_trajectories_under_fresh_consistent_ids() -> None:
    distinct = real_pairs(2, prefix="bench")

    pairs = list(backlog(distinct, 5))

    ids = [trajectory.trajectory_id for trajectory, _ in pairs]
    assert len(set(ids)) == 5
    assert len({e.event_id for pair in pairs for e in pair}) == 10
    for (trajectory, reward), source in zip(pairs, distinct * 3, strict=False):
        assert trajectory.state.trajectory_id == trajectory.trajectory_id == reward.trajectory_id
        assert trajectory.task_id == trajectory.state.task_id == reward.task_id
        assert trajectory.state.visited == source[0].state.visited
        assert reward.quality == source[1].quality
