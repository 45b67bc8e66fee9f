"""One shard of a learner's work: a core, the input offsets it reflects and its snapshot
bookkeeping. A learner that is not sharded holds one shard, ``WHOLE``, fed by every input
partition; a sharded learner holds one per input partition it owns, the partition's number
being the shard's (a trajectory and its reward share their key, so they land on the same
partition number of their two topics, and the join never spans shards)."""

from collections import deque
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from schemas.events import PolicySnapshot
from services.learner.core import LearnerConfig, LearnerCore, input_offsets
from services.policy.shards import WHOLE, ShardId

#: Backups a snapshot's span links to at most (the newest ones).
TRACED_BACKUPS = 64


@dataclass
class Shard:
    number: ShardId
    core: LearnerCore
    version: int = 0
    #: (topic, partition) -> the next offset to read, as far as ``core`` has applied.
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    snapshot_backed_up: int = 0
    snapshot_at: float = 0.0
    dirty: bool = False  # something was applied or expired since the last snapshot
    #: Trace contexts of the backups since the last snapshot, for its span's links.
    traced: deque[list[tuple[str, bytes]]] = field(
        default_factory=lambda: deque(maxlen=TRACED_BACKUPS)
    )

    @classmethod
    def restored(
        cls, number: ShardId, snapshot: PolicySnapshot | None, config: LearnerConfig, at: float
    ) -> "Shard":
        """The shard as ``snapshot`` left it (a new one when None); ``at``: now."""
        if snapshot is None:
            return cls(number, LearnerCore(config), snapshot_at=at)
        return cls(
            number,
            LearnerCore.restore(snapshot, config, at),
            version=snapshot.version,
            offsets=input_offsets(snapshot),
            snapshot_backed_up=snapshot.backed_up,
            snapshot_at=at,
        )

    @property
    def pending(self) -> int:
        """Backups since the last delivered snapshot."""
        return self.core.backed_up - self.snapshot_backed_up

    def count_due(self, every: int, min_interval_s: float, now: float) -> bool:
        """Whether ``every`` backups since the last snapshot call for the next, that one
        being at least ``min_interval_s`` old."""
        return self.pending >= every and now - self.snapshot_at >= min_interval_s

    def snapshot(self, shards: int | None) -> PolicySnapshot:
        """The next version's snapshot; ``shards``: how many the tenant has (None: WHOLE)."""
        self.version += 1  # never reused, even when this one is not delivered
        taken = self.core.snapshot(self.version, self.offsets)
        self.dirty = False
        if self.number is WHOLE:
            return taken
        return taken.model_copy(update={"shard": self.number, "shards": shards})

    def delivered(self, snapshot: PolicySnapshot, at: float) -> None:
        self.snapshot_backed_up = snapshot.backed_up
        self.snapshot_at = at


def shard_of_key(key: bytes, shards: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``shards``: the shard
    of every event keyed by that trajectory id."""
    return int(murmur2(key) & 0x7FFFFFFF) % shards
