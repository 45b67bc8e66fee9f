"""The learner's Prometheus metrics."""

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.records import Regime
from services.learner.core import Applied, LearnerCore, Verdict
from services.policy.pipeline import TaskClassInfo
from services.policy.shards import ShardId

# Paper-mode rewards lie in [-0.45 - 0.15*retries, 1]; the upper buckets resolve quality.
REWARD_BUCKETS = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SNAPSHOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
KINDS = ("trajectory", "reward")
#: The task_class label of a trajectory whose task named none.
UNCLASSED = "none"


class LearnerMetrics:
    def __init__(self, registry: CollectorRegistry, classes: Iterable[TaskClassInfo] = ()) -> None:
        """``classes``: the task classes whose reward series start at 0 (the pipeline's)."""

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"agensbus_learner_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"agensbus_learner_{name}", doc, labels, registry=registry)

        self.consumed = {
            "trajectory": counter(
                "trajectories_consumed_total", "Records read from the trajectories topic."
            ),
            "reward": counter("rewards_consumed_total", "Records read from the rewards topic."),
        }
        self.backups = counter("backups_total", "Trajectories backed up into the policy graph.")
        self.gate_decisions = counter(
            "gate_decisions_total",
            "Decisions read from the decisions topic for the off-policy gate (0: gate off).",
        )
        self.duplicates = counter(
            "duplicates_total",
            "Trajectories or rewards ignored because they were already backed up or waiting.",
            ("kind",),
        )
        self.foreign = counter(
            "foreign_events_total", "Events of another served tenant, left to its learner."
        )
        self.expired = counter(
            "joins_expired_total", "Trajectories or rewards dropped after waiting past the TTL."
        )
        self.reward = Histogram(
            "agensbus_learner_reward",
            "Hybrid reward of each backed-up trajectory.",
            ("task_class", "regime"),
            buckets=REWARD_BUCKETS,
            registry=registry,
        )
        self.snapshots = counter("snapshots_published_total", "Policy snapshots delivered.")
        self.snapshot_failures = counter(
            "snapshot_failures_total", "Policy snapshots that could not be delivered."
        )
        self.snapshot_bytes = gauge(
            "snapshot_bytes", "Size of the newest snapshot (of all its chunks)."
        )
        self.snapshot_seconds = Histogram(
            "agensbus_learner_snapshot_seconds",
            "Time to build and deliver a snapshot.",
            buckets=SNAPSHOT_BUCKETS,
            registry=registry,
        )
        self.policy_version = gauge(
            "policy_version", "Version of the newest snapshot (summed over the shards held)."
        )
        self.nodes = gauge(
            "policy_nodes", "Signatures in the policy graph (summed over the shards held)."
        )
        self.edges = gauge("policy_edges", "Visited (signature, action) edges in the graph.")
        self.waiting = gauge("waiting_joins", "Inputs waiting for their partner.", ("kind",))
        self.shards = gauge(
            "shards", "Shards this replica holds: its input partitions (1 when not sharded)."
        )
        self._expired_seen: dict[ShardId, int] = {}
        for kind in KINDS:
            self.duplicates.labels(kind=kind)
        # Known before any event: a task without a class, in any regime, and the classes
        # the pipeline lists (the simulator's classes are the scenario's, not the learner's).
        for regime in Regime:
            self.reward.labels(task_class=UNCLASSED, regime=regime.value)
        for task_class in classes:
            self.reward.labels(task_class=task_class.name, regime=task_class.regime.value)

    def applied(self, kind: str, applied: Applied) -> None:
        if applied.verdict is Verdict.DUPLICATE:
            self.duplicates.labels(kind=kind).inc()
        elif applied.verdict is Verdict.FOREIGN:
            self.foreign.inc()
        elif applied.backup is not None:
            self.backups.inc()
            self.reward.labels(
                task_class=applied.backup.task_class or UNCLASSED,
                regime=applied.backup.regime.value,
            ).observe(applied.backup.reward)

    def restored(self, shard: ShardId, core: LearnerCore) -> None:
        """Start following a restored shard: expiries before the restart were counted then."""
        self._expired_seen[shard] = core.expired

    def dropped(self, shard: ShardId) -> None:
        """Stop following a shard this replica no longer holds."""
        self._expired_seen.pop(shard, None)

    def state(self, cores: Mapping[ShardId, LearnerCore], *, graph: bool = False) -> None:
        """Follow the counters and sizes of the shards held, summed; the graphs' are
        costlier, so on request."""
        waiting = [0] * len(KINDS)
        for shard, core in cores.items():
            self.expired.inc(core.expired - self._expired_seen.get(shard, 0))
            self._expired_seen[shard] = core.expired
            waiting = [w + n for w, n in zip(waiting, core.waiting, strict=True)]
        for kind, count in zip(KINDS, waiting, strict=True):
            self.waiting.labels(kind=kind).set(count)
        if graph:
            self.nodes.set(sum(core.graph.node_count for core in cores.values()))
            self.edges.set(sum(core.graph.edge_count for core in cores.values()))
