"""Snapshots in chunks by signature range: a split snapshot is whole again from its chunks
in any order, a reader hands a version over only once every chunk of it is in, and the
chunks of successive versions take alternate keys."""

import pytest

from schemas.events import PolicySnapshot
from services.learner.core import LearnerCore
from services.policy import PolicyGraph
from services.policy.chunks import Chunks, assemble, chunk_key, split
from services.runtime.codec import decode, encode
from tests.unit.support_learner import assert_same_graph, learner_config, real_pairs


def learned(version: int = 4, shard: int | None = None, pairs: int = 12) -> PolicySnapshot:
    """A learner's snapshot: a graph of many nodes, class floors, and a waiting join."""
    core = LearnerCore(learner_config())
    for trajectory, reward in real_pairs(pairs):
        core.on_trajectory(trajectory, 0.0)
        core.on_reward(reward, 0.0)
    core.on_trajectory(real_pairs(pairs + 1)[-1][0], 0.0)
    offsets = {("in.trajectories", 0): pairs + 1, ("in.rewards", 0): pairs}
    snapshot = core.snapshot(version, offsets)
    if shard is None:
        return snapshot
    return snapshot.model_copy(update={"shard": shard, "shards": 4})


def test_a_snapshot_splits_by_signature_range_into_valid_chunks() -> None:
    whole = learned()
    parts = split(whole, max_nodes=4)

    assert len(parts) == -(-len(whole.policy.nodes) // 4) > 2
    assert [(p.chunk, p.chunks) for p in parts] == [(i, len(parts)) for i in range(len(parts))]
    signatures = [n.signature for p in parts for n in p.policy.nodes]
    assert signatures == sorted(n.signature for n in whole.policy.nodes)
    assert all(len(p.policy.nodes) <= 4 for p in parts)
    assert parts[0].checkpoint == whole.checkpoint and parts[0].policy.classes
    assert all(not p.checkpoint.waiting_trajectories and not p.policy.classes for p in parts[1:])
    assert {p.version for p in parts} == {whole.version}
    assert all(p.input_offsets == whole.input_offsets for p in parts)
    assert len({p.event_id for p in parts}) == len(parts)
    for part in parts:  # each chunk is a snapshot readers accept
        assert decode(encode(part), PolicySnapshot) == part


def test_a_snapshot_no_larger_than_a_chunk_stays_one_record() -> None:
    whole = learned()
    assert split(whole, max_nodes=len(whole.policy.nodes)) == [whole]
    with pytest.raises(ValueError, match="at least one node"):
        split(whole, max_nodes=0)


def test_the_chunks_in_any_order_make_the_snapshot_whole_again() -> None:
    whole = learned()
    again = assemble(list(reversed(split(whole, max_nodes=5))))

    assert (again.chunk, again.chunks, again.version) == (None, None, whole.version)
    assert again.checkpoint == whole.checkpoint
    assert again.input_offsets == whole.input_offsets
    assert_same_graph(
        PolicyGraph.from_document(again.policy), PolicyGraph.from_document(whole.policy)
    )
    restored = LearnerCore.restore(again, learner_config(), 0.0)
    assert (restored.backed_up, restored.waiting) == (12, (1, 0))
    with pytest.raises(ValueError, match="not whole"):
        assemble(split(whole, max_nodes=5)[1:])


def test_a_reader_hands_a_version_over_once_all_its_chunks_are_in() -> None:
    older, newer = split(learned(4, shard=1), 5), split(learned(5, shard=1, pairs=14), 5)
    other_shard = split(learned(4, shard=2), 5)
    reader = Chunks()

    assert [reader.add(p) for p in newer[:-1]] == [None] * (len(newer) - 1)
    assert [reader.add(p) for p in other_shard[:-1]] == [None] * (len(other_shard) - 1)
    # the older version, whole, is handed over while the newer one is being written
    *parts, last = older
    assert [reader.add(p) for p in parts] == [None] * len(parts)
    whole = reader.add(last)
    assert whole is not None and (whole.version, whole.shard) == (4, 1)
    whole = reader.add(newer[-1])
    assert whole is not None and whole.version == 5
    assert whole.backed_up == 14
    # another shard's chunks were kept apart
    whole = reader.add(other_shard[-1])
    assert whole is not None and whole.shard == 2
    single = learned(6)
    assert reader.add(single) is single


def test_a_reader_forgets_the_chunks_of_versions_a_newer_whole_one_outdated() -> None:
    older, newer = split(learned(4), 5), split(learned(5), 5)
    reader = Chunks()
    for part in older[:-1]:
        reader.add(part)
    for part in newer:
        reader.add(part)
    assert reader.add(older[-1]) is None  # its other chunks were dropped with version 5


def test_successive_versions_key_their_chunks_in_alternate_slots() -> None:
    four, five = split(learned(4), 5), split(learned(5), 5)
    assert chunk_key(b"acme/1", four[2]) == b"acme/1#2.0"
    assert chunk_key(b"acme/1", five[2]) == b"acme/1#2.1"
    assert chunk_key(b"acme/1", learned(5)) == b"acme/1"  # a snapshot in one record
