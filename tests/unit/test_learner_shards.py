"""Learning in shards: the merge of the shards' graphs is the graph one learner learns from
all the events, a shard moves from replica to replica in its snapshot, a router acts with
the merge of the shards' newest snapshots, and the policy topic's keys tell shards apart."""

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from schemas.events import PolicySnapshot
from schemas.records import SelectionConfig
from services.learner.core import LearnerCore
from services.learner.restore import key_tenant, snapshot_key, tombstoned
from services.learner.shard import Shard, shard_of_key
from services.policy import PolicyGraph
from services.policy.shards import WHOLE, ShardedPolicy, merged, merged_document
from services.router.core import SnapshotVerdict
from services.runtime.codec import decode, encode
from tests.unit.support_learner import (
    Pair,
    assert_same_graph,
    backed_up_directly,
    learner_config,
    real_pairs,
)
from tests.unit.support_router import core as router_core
from tests.unit.support_router import decisions, routed, task

SHARDS = 4


def by_shard(pairs: list[Pair]) -> dict[int, list[Pair]]:
    """The pairs each input partition holds: both events are keyed by the trajectory id."""
    split: dict[int, list[Pair]] = {}
    for pair in pairs:
        split.setdefault(shard_of_key(pair[0].trajectory_id.encode(), SHARDS), []).append(pair)
    return split


def fed(pairs: list[Pair], core: LearnerCore | None = None) -> LearnerCore:
    """A core (a new one unless given) fed each trajectory, then its reward."""
    core = core or LearnerCore(learner_config())
    for trajectory, reward in pairs:
        core.on_trajectory(trajectory, 0.0)
        core.on_reward(reward, 0.0)
    return core


def shard_snapshot(shard: int, version: int, graph: PolicyGraph) -> PolicySnapshot:
    document = graph.to_document(version=version)
    return PolicySnapshot(version=version, shard=shard, shards=SHARDS, policy=document)


def test_the_shard_of_a_key_is_the_partition_kafka_writes_it_to() -> None:
    partitioner = DefaultPartitioner()
    partitions = list(range(SHARDS))
    for trajectory, _ in real_pairs(40):
        key = trajectory.trajectory_id.encode()
        assert shard_of_key(key, SHARDS) == partitioner(key, partitions, partitions)


def test_the_merged_shards_equal_one_graph_fed_every_trajectory() -> None:
    pairs = real_pairs(40)
    shards = by_shard(pairs)
    assert len(shards) == SHARDS  # every shard learns something, signatures are shared
    graphs = [fed(part).graph for _, part in sorted(shards.items())]
    whole = merged(graphs)
    assert_same_graph(whole, backed_up_directly(pairs))
    assert whole.total_node_visits == sum(len(t.state.visited) for t, _ in pairs)


def weighted_graph(seed: int, nodes: int) -> PolicyGraph:
    """Edges with weighed rewards, retries and failures, some of them failures only."""
    rng = np.random.default_rng(seed)
    graph = PolicyGraph()
    signatures = [sig for t, _ in real_pairs(20) for sig in (e.signature for e in t.state.visited)]
    picked = rng.choice(sorted(set(signatures)), size=nodes)
    actions = ["planner", "planner.react", "skip:planner"]
    edges = [(str(s), actions[int(rng.integers(3))], bool(rng.random() < 0.2)) for s in picked]
    size = len(edges)
    graph.backup(
        graph.batch(
            edges,
            rng.random(size),
            rng.random(size) * 1000,
            weights=rng.random(size),
            retries=rng.integers(0, 3, size).astype(float),
        )
    )
    return graph


def test_the_merge_is_the_graphs_merge_of_each_shard_in_turn() -> None:
    graphs = [weighted_graph(seed, nodes) for seed, nodes in ((0, 60), (1, 5), (2, 90))]
    graphs[1].classes = fed(real_pairs(3)).graph.classes
    one_by_one = PolicyGraph()
    for graph in graphs:
        one_by_one.merge(graph)
    assert merged(graphs).to_document() == one_by_one.to_document()
    assert merged([]).node_count == 0


def test_the_comparison_tells_a_trajectory_counted_twice() -> None:
    pairs = real_pairs(40)
    with pytest.raises(AssertionError):
        assert_same_graph(backed_up_directly([*pairs, pairs[0]]), backed_up_directly(pairs))


def test_a_shard_moves_to_another_replica_in_its_snapshot() -> None:
    pairs = real_pairs(30)
    first, rest = pairs[:17], pairs[17:]
    trajectory, reward = rest[0]
    given_up = Shard(2, fed(first))
    given_up.core.on_trajectory(trajectory, 0.0)  # its reward comes after the move
    given_up.offsets = {("in.trajectories", 2): 18, ("in.rewards", 2): 17}
    sent = decode(encode(given_up.snapshot(SHARDS)), PolicySnapshot)
    assert isinstance(sent, PolicySnapshot)
    assert (sent.shard, sent.shards, sent.version) == (2, SHARDS, 1)

    taken = Shard.restored(2, sent, learner_config(), at=5.0)
    assert taken.offsets == given_up.offsets
    assert taken.core.waiting == (1, 0)
    taken.core.on_reward(reward, 5.0)
    fed(rest[1:], taken.core)
    assert taken.core.backed_up == len(pairs)
    assert_same_graph(taken.core.graph, backed_up_directly(pairs))
    assert taken.snapshot(SHARDS).version == 2  # versions go on from the restored one


def test_a_whole_tenant_snapshot_is_not_stamped_with_a_shard() -> None:
    snapshot = Shard(WHOLE, fed(real_pairs(3))).snapshot(None)
    assert (snapshot.shard, snapshot.shards, snapshot.version) == (None, None, 1)


def test_a_sharded_policy_merges_the_newest_graph_of_every_shard() -> None:
    split = by_shard(real_pairs(40))
    policy = ShardedPolicy()
    assert policy.version is None
    for shard, part in split.items():
        policy.take(shard, 1, fed(part[:1]).graph)
    for shard, part in split.items():  # the newer snapshot of a shard replaces its older one
        policy.take(shard, 3, fed(part).graph)
    assert policy.version == 3 * SHARDS
    assert policy.version_of(0) == 3
    assert_same_graph(policy.graph, backed_up_directly(real_pairs(40)))


def test_a_whole_tenant_policy_and_shards_replace_each_other() -> None:
    pairs = real_pairs(10)
    policy = ShardedPolicy()
    policy.take(0, 4, fed(pairs[:5]).graph)
    policy.take(1, 2, fed(pairs[5:]).graph)
    whole = fed(pairs).graph
    policy.take(WHOLE, 9, whole)
    assert (policy.shards, policy.version, policy.graph) == ((WHOLE,), 9, whole)
    policy.take(3, 1, fed(pairs[:2]).graph)
    assert (policy.shards, policy.version) == ((3,), 1)


def test_a_router_acts_with_the_merge_of_the_shards_it_adopted() -> None:
    pairs = real_pairs(40)
    split = by_shard(pairs)
    router = router_core()
    for shard, part in sorted(split.items()):
        result = router.on_snapshot(shard_snapshot(shard, 2, fed(part).graph))
        assert result.adopted, result
        assert f"in shard {shard} of {SHARDS}" in result.detail
    stale = router.on_snapshot(shard_snapshot(0, 2, PolicyGraph()))
    assert stale.verdict is SnapshotVerdict.STALE
    assert "of shard 0" in stale.detail
    assert router.adopted_version("default") == 2 * SHARDS
    assert_same_graph(router.policy_of("default"), backed_up_directly(pairs))
    (decision,) = decisions(routed(router.on_task(task())))
    assert decision.policy_version == 2 * SHARDS

    # one shard moves on: the merge holds its new graph and the others' as they were
    moved = router.on_snapshot(shard_snapshot(1, 3, PolicyGraph()))
    assert moved.adopted
    assert router.adopted_version("default") == 2 * SHARDS + 1
    rest = [pair for shard, part in split.items() if shard != 1 for pair in part]
    assert_same_graph(router.policy_of("default"), backed_up_directly(rest))


def test_a_shard_needs_its_shard_count_and_lies_below_it() -> None:
    document = PolicyGraph().to_document()
    with pytest.raises(ValidationError, match="together"):
        PolicySnapshot(version=1, shard=0, policy=document)
    with pytest.raises(ValidationError, match="not below"):
        PolicySnapshot(version=1, shard=4, shards=4, policy=document)


def test_the_policy_topic_keys_a_shard_apart_from_the_tenant() -> None:
    assert snapshot_key("acme", WHOLE) == b"acme"
    assert snapshot_key("acme", 3) == b"acme/3"
    assert tombstoned(b"acme", "acme") == [WHOLE]
    assert tombstoned(b"acme/3", "acme") == [3]
    assert tombstoned(b"acme-eu/3", "acme") == []
    assert tombstoned(b"other", "acme") == []
    assert tombstoned(None, "acme") == []
    keys = (b"acme", b"acme/3", b"acme/3#1.0", b"acme#0.1", b"acme-eu/3")
    assert [key_tenant(key) for key in keys] == ["acme"] * 4 + ["acme-eu"]
    assert key_tenant(None) is None


def test_shards_learning_by_other_rules_do_not_merge_into_one_document() -> None:
    graph = fed(real_pairs(4)).graph
    same = [shard_snapshot(0, 1, graph), shard_snapshot(1, 2, graph)]
    merged_doc = merged_document(same)
    assert merged_doc.version == 3
    assert_same_graph(PolicyGraph.from_document(merged_doc), merged([graph, graph]))
    document = graph.to_document(version=2, selection=SelectionConfig(c_min=0.25))
    other = PolicySnapshot(version=2, shard=1, shards=SHARDS, policy=document)
    with pytest.raises(ValueError, match="other rules"):
        merged_document([same[0], other])


def test_a_count_of_backups_calls_for_a_snapshot_only_past_the_minimum_interval() -> None:
    shard = Shard(0, fed(real_pairs(3)), snapshot_at=10.0)
    assert shard.pending == 3
    assert not shard.count_due(every=3, min_interval_s=1.0, now=10.5)
    assert shard.count_due(every=3, min_interval_s=1.0, now=11.0)
    assert not shard.count_due(every=4, min_interval_s=1.0, now=60.0)
    assert shard.count_due(every=3, min_interval_s=0.0, now=10.0)
