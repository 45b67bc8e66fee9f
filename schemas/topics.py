"""The topic table: every topic of agensbus, the event it carries, its key, who writes and
reads it, and how Kafka keeps it. It is written here once; the services create their topics
from it, the CLI names them from it, and ``schemas.generate`` writes the AsyncAPI document
and the topic tables of docs/events.md from it."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import (
    DeadLetter,
    Decision,
    Event,
    PolicySnapshot,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)

#: The largest policy snapshot the policy topic takes (the learner compresses them).
POLICY_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic: its short name (the deployment's prefix goes before it) and its use."""

    name: str
    event: type[Event]
    key_field: str | None
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    key_note: str = ""  # what the key is when it is not a single field of the event
    configs: Mapping[str, str] = field(default_factory=dict)  # Kafka topic configs
    partitions: int | None = None  # None: the settings' topic_partitions

    @property
    def compacted(self) -> bool:
        return self.configs.get("cleanup.policy") == "compact"

    @property
    def key(self) -> str:
        return f"`{self.key_field}`" if self.key_field else self.key_note


TOPICS: tuple[Topic, ...] = (
    Topic("tasks", TaskSubmitted, "task_id", ("pipelines", "CLI"), ("router",)),
    Topic(
        "decisions",
        Decision,
        "trajectory_id",
        ("router",),
        ("worker (invokes)", "auditors", "off-policy evaluation"),
    ),
    Topic("outcomes", StepOutcome, "trajectory_id", ("worker",), ("router",)),
    Topic("trajectories", TrajectoryCompleted, "trajectory_id", ("router",), ("judge", "learner")),
    Topic(
        "rewards",
        RewardObserved,
        "trajectory_id",
        ("judge", "pipelines (explicit feedback)"),
        ("learner",),
    ),
    # Compacted: the newest snapshot per tenant (and shard) key survives; every router
    # replays it.
    Topic(
        "policy",
        PolicySnapshot,
        None,
        ("learner", "CLI import"),
        ("router", "CLI"),
        key_note="the tenant; `tenant/shard` for a shard's snapshot (a sharded learner); "
        "then `#chunk.slot` for a chunk of a snapshot in chunks",
        configs={
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.1",
            "segment.ms": "600000",
            "max.message.bytes": str(POLICY_MAX_BYTES),
        },
        partitions=1,
    ),
    Topic(
        "dlq",
        DeadLetter,
        None,
        ("every service",),
        ("operators",),
        key_note="the original message's key, unchanged",
        configs={"retention.ms": str(14 * 24 * 3600 * 1000)},
    ),
)

_BY_NAME = {topic.name: topic for topic in TOPICS}
_BY_EVENT = {topic.event: topic for topic in TOPICS}
TOPIC_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def topic_of(event: type[Event]) -> str:
    """The short name of the topic ``event`` travels on."""
    return _BY_EVENT[event].name


def event_of(name: str) -> type[Event] | None:
    """The event a topic carries, by short name; None for a name not in the table."""
    topic = _BY_NAME.get(name)
    return None if topic is None else topic.event
