"""The judge's pure logic: which trajectories are scored side by side, and their rewards.

Rollouts of one task (trajectory id differs from the task id: ``task~r``) are
grouped together, all N of them (the state says how many the task runs); a task run once
joins peers of its task class, at most ``size`` at a time. A group is scored when it is
full or when its window, from its first arrival, ends, whichever is first: rollouts get a
window of their own, as they run in parallel but may end far apart.
"""

import asyncio
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.events import RewardObserved, TrajectoryCompleted
from services.policy.outcomes import Judgement
from services.runtime.codec import Rejected, decode
from services.runtime.payloads import PayloadStore, check_in, fetched
from services.worker.ids import derived_id

T = TypeVar("T")


def accept(
    raw: bytes | None, classes: Collection[str] | None, tenants: Collection[str]
) -> TrajectoryCompleted | Rejected:
    """The completed trajectory in ``raw``, or why the judge cannot score it. ``classes``:
    the task classes the judge can score (``None``: any, as model judges do)."""
    trajectory = decode(raw, TrajectoryCompleted)
    if isinstance(trajectory, Rejected):
        return trajectory
    if trajectory.tenant not in tenants:
        return Rejected("unknown_tenant", f"tenant {trajectory.tenant!r} is not served here")
    state = trajectory.state
    if state.trajectory_id != trajectory.trajectory_id:
        return Rejected(
            "unknown_trajectory",
            f"trajectory {trajectory.trajectory_id} carries the state of {state.trajectory_id}",
        )
    if classes is not None and state.task_class not in classes:
        return Rejected(
            "unknown_task_class",
            f"this judge scores the task classes {', '.join(classes)}, not {state.task_class!r}",
        )
    return trajectory


async def readable(trajectory: TrajectoryCompleted, store: PayloadStore) -> TrajectoryCompleted:
    """``trajectory`` with the content its state and answer stored by reference in place;
    raises Poison when a payload is missing."""
    if not trajectory.state.handoff.payloads:
        return trajectory
    return await asyncio.to_thread(_readable, trajectory, store)


def _readable(trajectory: TrajectoryCompleted, store: PayloadStore) -> TrajectoryCompleted:
    handoff = check_in(trajectory.state.handoff, store)
    if handoff is trajectory.state.handoff:
        return trajectory
    state = trajectory.state.model_copy(update={"handoff": handoff})
    answer = fetched(trajectory.answer, store)
    return trajectory.model_copy(update={"state": state, "answer": answer})


def group_key(trajectory: TrajectoryCompleted) -> str:
    """Rollouts of a task share a key; otherwise the task class does. Tenants never mix."""
    if trajectory.trajectory_id != trajectory.task_id:
        return f"{trajectory.tenant}/task/{trajectory.task_id}"
    return f"{trajectory.tenant}/class/{trajectory.task_class or '-'}"


@dataclass(frozen=True, slots=True)
class Group(Generic[T]):
    key: str
    members: tuple[T, ...]
    """One item per trajectory, in arrival order."""
    copies: tuple[T, ...] = ()
    """Redelivered duplicates that arrived while the group was open; scored once, with the
    group, and finished with it."""

    @property
    def items(self) -> tuple[T, ...]:
        return self.members + self.copies


def shape(
    trajectory: TrajectoryCompleted, size: int, window_s: float, rollout_window_s: float
) -> tuple[int, float]:
    """How many trajectories the group of ``trajectory`` waits for, and for how long: every
    rollout of its task, or ``size`` peers of its class."""
    if trajectory.trajectory_id != trajectory.task_id and trajectory.state.rollouts > 1:
        return trajectory.state.rollouts, rollout_window_s
    return size, window_s


@dataclass
class _Open(Generic[T]):
    opened: float
    size: int
    window_s: float
    members: dict[str, T] = field(default_factory=dict)
    copies: list[T] = field(default_factory=list)


class Grouper(Generic[T]):
    """Collects items under their group key until the group is full or its window ends."""

    def __init__(self, size: int, window_s: float) -> None:
        if size < 1:
            raise ValueError("a group holds at least one trajectory")
        self.size = size
        self.window_s = window_s
        self._open: dict[str, _Open[T]] = {}

    def __len__(self) -> int:
        return sum(len(g.members) + len(g.copies) for g in self._open.values())

    def add(
        self,
        key: str,
        member_id: str,
        item: T,
        now: float,
        size: int | None = None,
        window_s: float | None = None,
    ) -> list[Group[T]]:
        """Add ``item`` (trajectory ``member_id``); returns the groups ready to score: its
        own if now full, and any whose window has ended. A group opened by this item holds
        ``size`` and waits ``window_s`` (default: the grouper's)."""
        # Windows that ended before this arrival close first: a late item opens a new group.
        expired = self.due(now)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Open(
                now,
                self.size if size is None else size,
                self.window_s if window_s is None else window_s,
            )
        if member_id in group.members:
            group.copies.append(item)
        else:
            group.members[member_id] = item
        full = [self._close(key)] if len(group.members) >= group.size else []
        # Again after: a group with a window of zero is due at once.
        return expired + full + self.due(now)

    def due(self, now: float) -> list[Group[T]]:
        """The groups whose window has ended by ``now``."""
        expired = [k for k, g in self._open.items() if now - g.opened >= g.window_s]
        return [self._close(k) for k in expired]

    def drain(self) -> list[Group[T]]:
        """Every open group, full or not (on shutdown)."""
        return [self._close(k) for k in list(self._open)]

    def _close(self, key: str) -> Group[T]:
        group = self._open.pop(key)
        return Group(key, tuple(group.members.values()), tuple(group.copies))


def group_id(trajectory_ids: Iterable[str]) -> str:
    """Deterministic in the members, so a group re-formed after a redelivery keeps its id."""
    digest = hashlib.blake2b(",".join(sorted(trajectory_ids)).encode(), digest_size=12)
    return f"group-{digest.hexdigest()}"


def rewards(
    members: Sequence[TrajectoryCompleted], judgements: Iterable[Judgement]
) -> list[RewardObserved]:
    """The rewards of a group's judgements, in group order, sharing the group's id (of all
    its members: an unscored one still belongs to the group, it just gets no reward)."""
    gid = group_id(t.trajectory_id for t in members)
    by_id = {j.trajectory_id: j for j in judgements}
    return [
        by_id[t.trajectory_id]
        .to_event(task_id=t.task_id, group_id=gid, tenant=t.tenant)
        .model_copy(update={"event_id": derived_id("reward", t.trajectory_id)})
        for t in members
        if t.trajectory_id in by_id
    ]
