"""OffsetTracker: what may be committed when records of a partition finish out of order."""

from services.runtime.offsets import OffsetTracker


def test_in_order_completion_commits_past_everything() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.start("p", offset)
        tracker.finish("p", offset)
    assert tracker.committable() == {"p": 5}


def test_a_running_record_holds_back_every_later_one() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start("p", offset)
    tracker.finish("p", 12)
    tracker.finish("p", 11)
    # Nothing before 10 was ours to run; 10 itself is still running.
    assert tracker.committable() == {"p": 10}
    assert tracker.running() == 1
    tracker.finish("p", 10)
    assert tracker.committable() == {"p": 13}
    assert tracker.running() == 0


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.start("a", 0)
    tracker.start("b", 0)
    tracker.start("b", 1)
    tracker.finish("b", 0)
    assert tracker.committable() == {"a": 0, "b": 1}
    tracker.finish("a", 0)
    assert tracker.committable() == {"a": 1, "b": 1}


def test_only_progress_since_the_last_commit_is_offered() -> None:
    tracker = OffsetTracker()
    tracker.start("p", 0)
    tracker.finish("p", 0)
    tracker.committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.start("p", 1)
    # While offset 1 runs the commit point stays at 1, which is committed already.
    assert tracker.committable() == {}
    tracker.finish("p", 1)
    assert tracker.committable() == {"p": 2}


def test_a_commit_never_moves_backwards() -> None:
    tracker = OffsetTracker()
    tracker.start("p", 0)
    tracker.finish("p", 0)
    tracker.committed({"p": 1})
    tracker.committed({"p": 0})
    assert tracker.committable() == {}


def test_forgotten_partitions_are_neither_offered_nor_finished() -> None:
    tracker = OffsetTracker()
    tracker.start("p", 4)
    tracker.start("q", 9)
    tracker.forget(["p"])
    tracker.finish("p", 4)  # work of a revoked partition finishing late
    tracker.committed({"p": 5})
    assert tracker.committable() == {"q": 9}
    assert tracker.running() == 1
    # Assigned again later, the partition starts afresh from wherever it resumes.
    tracker.start("p", 4)
    assert tracker.committable() == {"p": 4, "q": 9}
