"""A snapshot too large for one record, published in chunks by signature range.

``split`` cuts a snapshot's nodes, in signature order, into chunks of at most a number of
nodes; every chunk is a valid snapshot of its own range with the version, shard, offsets
and gate figures of the whole, chunk 0 also the class floors and the learner's checkpoint.
``Chunks`` gathers the chunks a reader sees and hands a snapshot over once it holds every
chunk of its version: a reader never uses part of a version. Each chunk is keyed apart on
the policy topic (``chunk_key``) in one of two slots that versions alternate, so that the
previous version stays whole under compaction while the next one is being written.
"""

import uuid
from collections.abc import Sequence

from schemas.events import LearnerCheckpoint, PolicySnapshot
from services.policy.shards import ShardId

#: What identifies a snapshot's chunks: (tenant, shard, version).
ChunkSet = tuple[str, ShardId, int]


def split(snapshot: PolicySnapshot, max_nodes: int) -> list[PolicySnapshot]:
    """``snapshot`` as chunks of at most ``max_nodes`` nodes each, in signature order;
    itself alone when it is not larger."""
    if max_nodes < 1:
        raise ValueError("a chunk holds at least one node")
    nodes = sorted(snapshot.policy.nodes, key=lambda node: node.signature)
    if len(nodes) <= max_nodes:
        return [snapshot]
    ranges = [nodes[start : start + max_nodes] for start in range(0, len(nodes), max_nodes)]
    return [
        snapshot.model_copy(
            update={
                "event_id": uuid.uuid4().hex,
                "chunk": i,
                "chunks": len(ranges),
                "policy": snapshot.policy.model_copy(
                    update={"nodes": part, "classes": snapshot.policy.classes if i == 0 else {}}
                ),
                "checkpoint": snapshot.checkpoint if i == 0 else LearnerCheckpoint(),
            }
        )
        for i, part in enumerate(ranges)
    ]


def assemble(chunks: Sequence[PolicySnapshot]) -> PolicySnapshot:
    """The whole snapshot of one version's every chunk (in any order)."""
    ordered = sorted(chunks, key=lambda chunk: chunk.chunk or 0)
    first = ordered[0]
    if [c.chunk for c in ordered] != list(range(first.chunks or 1)):
        raise ValueError(
            f"version {first.version} is not whole: chunks {[c.chunk for c in ordered]}"
        )
    nodes = [node for chunk in ordered for node in chunk.policy.nodes]
    return first.model_copy(
        update={
            "chunk": None,
            "chunks": None,
            "policy": first.policy.model_copy(update={"nodes": nodes}),
        }
    )


def chunk_key(key: bytes, snapshot: PolicySnapshot) -> bytes:
    """The policy topic's key of a chunk: its snapshot's ``key``, the chunk and the slot
    of its version (a snapshot in one record keeps ``key``)."""
    if snapshot.chunk is None:
        return key
    return key + f"#{snapshot.chunk}.{snapshot.version % 2}".encode()


class Chunks:
    """The chunks read so far of versions not yet whole."""

    def __init__(self) -> None:
        self._pending: dict[ChunkSet, dict[int, PolicySnapshot]] = {}

    def add(self, snapshot: PolicySnapshot) -> PolicySnapshot | None:
        """Take one record; returns the whole snapshot once its version's last chunk is
        in (at once for a snapshot in one record), else None. A version made whole drops
        the parts of the older versions of its shard, which can no longer win."""
        if snapshot.chunk is None or snapshot.chunks is None:
            return snapshot
        held = self._pending.setdefault((snapshot.tenant, snapshot.shard, snapshot.version), {})
        held[snapshot.chunk] = snapshot
        if len(held) < snapshot.chunks:
            return None
        for tenant, shard, version in list(self._pending):
            if (tenant, shard) == (snapshot.tenant, snapshot.shard) and version <= snapshot.version:
                del self._pending[(tenant, shard, version)]
        return assemble(list(held.values()))
