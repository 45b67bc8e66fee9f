"""The learner's pure logic for one tenant: join completed trajectories with their rewards,
back the hybrid reward up into the policy graph, drop duplicates, expire joins that wait
too long, and turn all of it into a snapshot and back.

Nothing here does I/O or reads a clock: the caller says when each event arrived (``at``)
and what time it is (``expire(now)``), in any clock of its choice as long as it is one
clock. Waiting joins do not carry their arrival time in a snapshot (the checkpoint has no
field for it), so a restored join starts waiting again at the time of the restore: the
TTL measures time the learner spent waiting, never time it was down while the partner may
have been sitting unread in Kafka.
"""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from schemas.events import (
    Decision,
    LearnerCheckpoint,
    PolicySnapshot,
    RewardObserved,
    TopicOffset,
    TrajectoryCompleted,
)
from schemas.policy_file import NodeRecord, PolicyDocument
from schemas.records import FoldSpec, Regime, RewardConfig
from services.policy import PAPER_REWARD, PolicyGraph, PolicySetup, backup, hybrid_reward
from services.policy.arms import PoolSource, deployed_arm
from services.policy.gate import GateWindow, LoggedEvent, gate_figures
from services.policy.ope import TargetPolicy
from services.runtime.codec import Rejected
from services.runtime.settings import Settings

#: LearnerCheckpoint's bounds: a snapshot holding more would not validate.
MAX_WAITING = 100_000
MAX_RECENT = 1_000_000
#: Valid signatures without a node the learner remembers having checked.
MAX_VALID_SIGNATURES = 100_000

#: (topic, partition) -> the next offset to read.
Offsets = Mapping[tuple[str, int], int]

E = TypeVar("E", TrajectoryCompleted, RewardObserved)


@dataclass(frozen=True)
class LearnerConfig:
    tenant: str
    tenants: tuple[str, ...]
    setup: PolicySetup
    reward: RewardConfig = PAPER_REWARD
    dedupe_window: int = 200_000
    reward_ttl_s: float = 900.0
    #: Trajectories the off-policy gate estimates on (None: the gate is off, no figures).
    gate_window: int | None = None

    def __post_init__(self) -> None:
        if self.tenant not in self.tenants:
            raise ValueError(
                f"the learner's tenant {self.tenant!r} is not among the served tenants "
                f"{list(self.tenants)}: every event of its own would be dead-lettered"
            )

    @classmethod
    def from_settings(cls, settings: Settings, pipeline: PoolSource) -> "LearnerConfig":
        """The router's fold and selection, so routers accept the snapshots as their own,
        and the arm's reward."""
        arm = deployed_arm(settings.policy_arm)
        return cls(
            tenant=settings.tenant,
            tenants=settings.tenant_list,
            setup=arm.setup(pipeline, settings.seed),
            reward=arm.reward,
            dedupe_window=settings.dedupe_window,
            reward_ttl_s=settings.reward_ttl_s,
            gate_window=settings.gate_window if settings.gate_enabled else None,
        )


class Verdict(StrEnum):
    WAITING = "waiting"  # kept until its partner arrives
    BACKED_UP = "backed_up"  # joined with its partner and backed up into the graph
    DUPLICATE = "duplicate"  # already backed up, or its kind already waits: ignored
    FOREIGN = "foreign"  # another served tenant's event: that tenant's learner takes it
    REJECTED = "rejected"  # unusable: the caller dead-letters it


@dataclass(frozen=True, slots=True)
class Backup:
    trajectory_id: str
    reward: float
    task_class: str | None
    regime: Regime
    edges: int


@dataclass(frozen=True, slots=True)
class Applied:
    verdict: Verdict
    backup: Backup | None = None
    rejected: Rejected | None = None


_WAITING = Applied(Verdict.WAITING)
_DUPLICATE = Applied(Verdict.DUPLICATE)
_FOREIGN = Applied(Verdict.FOREIGN)


class LearnerCore:
    """The graph, the joins waiting for a partner and the recently backed-up ids."""

    def __init__(self, config: LearnerConfig, graph: PolicyGraph | None = None) -> None:
        self.config = config
        self.graph = graph if graph is not None else PolicyGraph()
        self.backed_up = 0
        self.expired = 0
        # Insertion order is arrival order: the checkpoint lists them oldest first.
        self._trajectories: dict[str, tuple[TrajectoryCompleted, float]] = {}
        self._rewards: dict[str, tuple[RewardObserved, float]] = {}
        self._window = min(config.dedupe_window, MAX_RECENT)
        self._recent: deque[str] = deque()
        self._recent_ids: set[str] = set()
        # Signatures found valid that have no node yet (their trajectory still waits for its
        # reward): checking one builds a probe document, and trajectories share signatures.
        self._valid: set[str] = set()
        window = config.gate_window
        self.gate = None if window is None else GateWindow(window, config.reward)

    # --- input -----------------------------------------------------------------------------

    def on_decision(self, event: Decision) -> None:
        """A decision the routers logged: the off-policy gate's evidence, nothing else."""
        self._log(event)

    def on_trajectory(self, event: TrajectoryCompleted, at: float) -> Applied:
        tid = event.trajectory_id
        if (other := self._not_ours(event.tenant)) is not None:
            return other
        self._log(event)
        if tid in self._recent_ids or tid in self._trajectories:
            return _DUPLICATE
        if (rejected := self._check(event)) is not None:
            return Applied(Verdict.REJECTED, rejected=rejected)
        waiting = self._rewards.pop(tid, None)
        if waiting is None:
            return self._wait(self._trajectories, event, at)
        return self._join(event, waiting[0])

    def on_reward(self, event: RewardObserved, at: float) -> Applied:
        tid = event.trajectory_id
        if (other := self._not_ours(event.tenant)) is not None:
            return other
        self._log(event)
        if tid in self._recent_ids or tid in self._rewards:
            return _DUPLICATE
        waiting = self._trajectories.pop(tid, None)
        if waiting is None:
            return self._wait(self._rewards, event, at)
        return self._join(waiting[0], event)

    def expire(self, now: float) -> int:
        """Drop joins that have waited longer than the reward TTL; returns how many."""
        deadline = now - self.config.reward_ttl_s
        dropped = _drop_before(self._trajectories, deadline) + _drop_before(self._rewards, deadline)
        self.expired += dropped
        return dropped

    @property
    def waiting(self) -> tuple[int, int]:
        """(trajectories waiting for a reward, rewards waiting for a trajectory)."""
        return len(self._trajectories), len(self._rewards)

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self, version: int, offsets: Offsets) -> PolicySnapshot:
        """The policy as of ``offsets`` and everything needed to resume from them."""
        config = self.config
        document = self.graph.to_document(
            tenant=config.tenant,
            version=version,
            fold=config.setup.fold,
            selection=config.setup.selection,
            reward=config.reward,
        )
        return PolicySnapshot(
            tenant=config.tenant,
            version=version,
            policy=document,
            input_offsets=[
                TopicOffset(topic=topic, partition=partition, offset=offset)
                for (topic, partition), offset in sorted(offsets.items())
            ],
            backed_up=self.backed_up,
            gate=None
            if self.gate is None
            else gate_figures(
                TargetPolicy(self.graph, config.setup.selection, floors=True), self.gate
            ),
            checkpoint=LearnerCheckpoint(
                waiting_trajectories=[event for event, _ in self._trajectories.values()],
                waiting_rewards=[event for event, _ in self._rewards.values()],
                recent_ids=list(self._recent),
                expired=self.expired,
            ),
        )

    @classmethod
    def restore(cls, snapshot: PolicySnapshot, config: LearnerConfig, at: float) -> "LearnerCore":
        """The learner exactly as it was when it took ``snapshot``; joins still waiting
        start waiting again at ``at``."""
        if snapshot.tenant != config.tenant:
            raise ValueError(
                f"the snapshot is tenant {snapshot.tenant!r}'s, this learner's is {config.tenant!r}"
            )
        if snapshot.policy.fold != config.setup.fold:
            raise ValueError(
                f"snapshot version {snapshot.version} folds signatures by "
                f"{snapshot.policy.fold.model_dump()}, this learner by "
                f"{config.setup.fold.model_dump()}: its nodes cannot take new backups"
            )
        core = cls(config, PolicyGraph.from_document(snapshot.policy))
        checkpoint = snapshot.checkpoint
        core.backed_up = snapshot.backed_up
        core.expired = checkpoint.expired
        for trajectory in checkpoint.waiting_trajectories:
            core._trajectories[trajectory.trajectory_id] = (trajectory, at)
        for reward in checkpoint.waiting_rewards:
            core._rewards[reward.trajectory_id] = (reward, at)
        for tid in checkpoint.recent_ids[-core._window :]:
            core._remember(tid)
        return core

    # --- internals -------------------------------------------------------------------------

    def _log(self, event: LoggedEvent) -> None:
        if self.gate is not None and event.tenant == self.config.tenant:
            self.gate.add(event)

    def _not_ours(self, tenant: str) -> Applied | None:
        if tenant == self.config.tenant:
            return None
        if tenant in self.config.tenants:
            return _FOREIGN
        served = ", ".join(self.config.tenants)
        return Applied(
            Verdict.REJECTED,
            rejected=Rejected("unknown_tenant", f"tenant {tenant!r} is not served ({served})"),
        )

    def _check(self, event: TrajectoryCompleted) -> Rejected | None:
        """What would make this trajectory poison the graph, if anything."""
        state = event.state
        if state.trajectory_id != event.trajectory_id:
            return Rejected(
                "inconsistent_trajectory",
                f"the event names trajectory {event.trajectory_id!r}, its state "
                f"{state.trajectory_id!r}",
            )
        pool = self.config.setup.pool
        for edge in state.visited:
            if not pool.knows(edge.action):
                return Rejected(
                    "unknown_action", f"step {edge.step} took unknown action {edge.action!r}"
                )
            signature = edge.signature
            if self.graph.find_row(signature) is None and signature not in self._valid:
                problem = _signature_problem(signature, self.config.setup.fold)
                if problem is not None:
                    return Rejected("invalid_signature", f"step {edge.step}: {problem}")
                self._remember_valid(signature)
        return None

    def _join(self, trajectory: TrajectoryCompleted, reward: RewardObserved) -> Applied:
        state = trajectory.state
        value = hybrid_reward(reward.quality, state.tokens_used, state.retries, self.config.reward)
        edges = backup(
            self.graph,
            [(state, value)],
            self.config.reward,
            [reward.confidence],
            floor=(self.config.setup.pool, [reward.quality]),
        )
        self._remember(trajectory.trajectory_id)
        self.backed_up += 1
        return Applied(
            Verdict.BACKED_UP,
            backup=Backup(
                trajectory.trajectory_id, value, trajectory.task_class, trajectory.regime, edges
            ),
        )

    def _wait(self, waiting: dict[str, tuple[E, float]], event: E, at: float) -> Applied:
        """Keep ``event`` until its partner comes; past the checkpoint's bound the oldest
        waiting entry gives way and counts as expired."""
        if len(waiting) >= MAX_WAITING:
            del waiting[next(iter(waiting))]
            self.expired += 1
        waiting[event.trajectory_id] = (event, at)
        return _WAITING

    def _remember_valid(self, signature: str) -> None:
        if len(self._valid) >= MAX_VALID_SIGNATURES:
            self._valid.clear()  # a bound on memory; a forgotten one is checked again
        self._valid.add(signature)

    def _remember(self, tid: str) -> None:
        if len(self._recent) >= self._window:
            self._recent_ids.discard(self._recent.popleft())
        self._recent.append(tid)
        self._recent_ids.add(tid)


def _drop_before(waiting: dict[str, tuple[E, float]], deadline: float) -> int:
    stale = [tid for tid, (_, at) in waiting.items() if at < deadline]
    for tid in stale:
        del waiting[tid]
    return len(stale)


def _signature_problem(signature: str, fold: FoldSpec) -> str | None:
    """Why a router would refuse a snapshot holding this node (None: it would not), by the
    very check routers run on every snapshot they load."""
    try:
        probe = PolicyDocument(fold=fold, nodes=[NodeRecord(signature=signature, visits=0)])
        PolicyGraph.from_document(probe)
    except ValueError as error:
        return str(error)
    return None


def input_offsets(snapshot: PolicySnapshot) -> dict[tuple[str, int], int]:
    return {(o.topic, o.partition): o.offset for o in snapshot.input_offsets}
