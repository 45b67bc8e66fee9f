"""A tenant's policy learned in shards: the newest graph of each shard and their merge.

Learner replicas split a tenant's input partitions between them, and each partition's
trajectories are backed up into a graph of its own (a shard). The statistics are sums and
Chan-mergeable moments, so the union of the shards' graphs is the graph one learner would
have learned from all of them: counts exactly, means and M2 up to float rounding (Chan's
formula adds in another order than one stream of Welford updates).

The merge is exact only for rewards that read nothing from the graph while backing up: an
arm whose backup looks at the graph (expected retries or tokens, greedy continuation, the
recency floor) learns, in a shard, from that shard's statistics alone.
"""

from collections.abc import Iterable, Sequence

from schemas.events import PolicySnapshot
from schemas.policy_file import PolicyDocument
from services.policy.graph import PolicyGraph

#: The shard of a policy that is not sharded: one graph for the whole tenant.
WHOLE = None

ShardId = int | None


def merged(graphs: Iterable[PolicyGraph]) -> PolicyGraph:
    """The exact union of ``graphs`` (a new graph; the inputs are left as they are)."""
    out = PolicyGraph()
    for graph in graphs:
        out.merge(graph)
    return out


class ShardedPolicy:
    """The newest version and graph of each shard of one tenant's policy.

    A whole-tenant policy (shard ``WHOLE``) and shards never mix: taking one drops the
    other kind, since they hold the same trajectories counted two ways. The version the
    tenant's policy has is the sum of its shards' versions, which grows whenever any shard
    moves on and equals the version itself for a policy that is not sharded."""

    def __init__(self) -> None:
        self._shards: dict[ShardId, tuple[int, PolicyGraph]] = {}
        self._graph = PolicyGraph()

    @property
    def graph(self) -> PolicyGraph:
        """The policy to act with: the merge of every shard's newest graph."""
        return self._graph

    @property
    def version(self) -> int | None:
        """The sum of the shards' versions; None before the first one is taken."""
        if not self._shards:
            return None
        return sum(version for version, _ in self._shards.values())

    @property
    def shards(self) -> tuple[ShardId, ...]:
        return tuple(self._shards)

    def version_of(self, shard: ShardId) -> int | None:
        """The version taken for ``shard``; None when it has none."""
        held = self._shards.get(shard)
        return None if held is None else held[0]

    def take(self, shard: ShardId, version: int, graph: PolicyGraph) -> None:
        """Hold ``graph`` as ``shard``'s newest policy and merge the shards again."""
        if shard is WHOLE:
            self._shards = {}
        else:
            self._shards.pop(WHOLE, None)
        self._shards[shard] = (version, graph)
        graphs = [g for _, (_, g) in sorted(self._shards.items(), key=_shard_order)]
        self._graph = graphs[0] if len(graphs) == 1 else merged(graphs)


def merged_document(snapshots: Sequence[PolicySnapshot]) -> PolicyDocument:
    """One policy document of a tenant's newest snapshots (one per shard, or the whole
    tenant's alone): the shards' merged graph under their common rules, its version the
    sum of theirs. Raises ValueError when the shards fold or select differently."""
    first = snapshots[0].policy
    rules = (first.fold, first.selection, first.reward)
    policy = ShardedPolicy()
    for snapshot in snapshots:
        document = snapshot.policy
        if (document.fold, document.selection, document.reward) != rules:
            raise ValueError(
                f"shard {snapshot.shard} learns by other rules than shard "
                f"{snapshots[0].shard}: their policies do not merge"
            )
        policy.take(snapshot.shard, snapshot.version, PolicyGraph.from_document(document))
    if len(snapshots) == 1:
        return first
    fold, selection, reward = rules
    return policy.graph.to_document(
        tenant=first.tenant,
        version=policy.version or 0,
        fold=fold,
        selection=selection,
        reward=reward,
    )


def _shard_order(item: tuple[ShardId, tuple[int, PolicyGraph]]) -> int:
    return -1 if item[0] is None else item[0]
