"""Which offsets may be committed when records finish out of order.

A worker runs many records of a partition at once; a record that finishes early must not
let the commit pass one still running, or a crash would lose it. The tracker keeps, per
partition, the records started and not finished; the committable offset is the smallest of
those (or one past the last started when none is left).
"""

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    running: set[int] = field(default_factory=set)
    next_offset: int = 0  # one past the highest offset started
    committed: int = -1


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        state = self._partitions.setdefault(partition, _Partition(next_offset=offset))
        state.running.add(offset)
        state.next_offset = max(state.next_offset, offset + 1)

    def finish(self, partition: Hashable, offset: int) -> None:
        state = self._partitions.get(partition)
        if state is not None:
            state.running.discard(offset)

    def running(self) -> int:
        return sum(len(p.running) for p in self._partitions.values())

    def committable(self) -> dict[Hashable, int]:
        """Offsets (next to read) that advanced past the last commit, per partition."""
        ready: dict[Hashable, int] = {}
        for key, state in self._partitions.items():
            offset = min(state.running) if state.running else state.next_offset
            if offset > state.committed:
                ready[key] = offset
        return ready

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Record a commit that went through."""
        for key, offset in offsets.items():
            state = self._partitions.get(key)
            if state is not None:
                state.committed = max(state.committed, offset)

    def forget(self, partitions: list[Hashable]) -> None:
        """Drop partitions this consumer no longer owns (after a rebalance)."""
        for key in partitions:
            self._partitions.pop(key, None)
