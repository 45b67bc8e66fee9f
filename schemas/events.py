"""The events on agensbus topics; schemas.topics says which goes where."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas._base import Record
from schemas._fields import (
    CellName,
    Constraints,
    DecisionRef,
    PolicyVersion,
    Propensity,
    Retries,
    StateSignature,
    StepIndex,
    TakenAction,
    TaskClass,
    TaskGoal,
    TaskRef,
    TenantName,
    TrajectoryRef,
)
from schemas._types import (
    ActionId,
    Identifier,
    Name,
    ShortText,
    SignatureText,
    Text,
    TopicName,
    Unit,
)
from schemas.policy_file import GateFigures, PolicyDocument
from schemas.records import (
    ActionScore,
    Budget,
    DetectedRegime,
    Features,
    HandoffDelta,
    JudgeScore,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
)

SCHEMA_VERSION: Final = 1
#: Revisions within SCHEMA_VERSION, which only add optional fields (docs/events.md).
SCHEMA_MINOR: Final = 1


_EVENT_TYPE = (
    "the event's name; lets a reader of a mixed stream (the dlq, an archive) tell events apart"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(Record):
    """Fields every event carries."""

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION,
        description="version of the event contract; a new version is a new value here",
    )
    schema_minor: int = Field(
        default=SCHEMA_MINOR,
        ge=0,
        le=1_000,
        description="revision within schema_version that wrote the event; a reader of an "
        "older revision drops the fields it does not know instead of rejecting them",
    )
    event_id: Identifier = Field(
        default_factory=_new_id,
        description="unique id of this event; a random hex UUID unless the producer sets one",
    )
    produced_at: AwareDatetime = Field(
        default_factory=_now,
        description="when the producer built the event; RFC 3339 with a UTC offset, naive times "
        "are rejected",
    )
    tenant: TenantName = "default"


class TaskSubmitted(Event):
    """A pipeline asks for a task to be solved."""

    event_type: Literal["TaskSubmitted"] = Field("TaskSubmitted", description=_EVENT_TYPE)

    task_id: TaskRef
    goal: TaskGoal = Field(min_length=1)
    features: Features = Field(default_factory=TaskFeatures)
    task_class: TaskClass = None
    constraints: Constraints = Field(default_factory=list)
    rollouts: int = Field(
        default=1,
        ge=1,
        le=16,
        description="how many trajectories to run for the task (judged as a group)",
    )
    budget: Budget | None = Field(
        default=None, description="limits per trajectory; null leaves the router's defaults"
    )
    metadata: dict[Name, ShortText] = Field(
        default_factory=dict,
        max_length=32,
        description="free labels from the pipeline, carried along",
    )


class ActionKind(StrEnum):
    INVOKE = "invoke"
    SKIP = "skip"


class DecisionReason(StrEnum):
    RULE_BASED_PRIOR = "rule_based_prior"
    GRAPH_RECOMMENDATION = "graph_recommendation"
    UNTRIED_ACTION = "untried_action"
    FIXED_PIPELINE = "fixed_pipeline"
    #: baseline-safe selection kept the fixed pipeline's action over a better score that
    #: the evidence does not yet support
    BASELINE_KEPT = "baseline_kept"
    #: epsilon exploration took a candidate at random instead of the rules' choice
    RANDOM_EXPLORATION = "random_exploration"


class Decision(Event):
    """The router's choice for one step, with everything needed to audit or replay it."""

    event_type: Literal["Decision"] = Field("Decision", description=_EVENT_TYPE)

    decision_id: DecisionRef
    trajectory_id: TrajectoryRef
    task_id: TaskRef
    step: StepIndex
    action: TakenAction
    action_kind: ActionKind = Field(
        description="`invoke` runs the cell variant, `skip` passes over the cell"
    )
    cell: CellName
    protocol: Name | None = Field(
        default=None, description="skill protocol of the invoked variant, if it names one"
    )
    model: Name | None = Field(
        default=None, description="model bound to the invoked variant, if it names one"
    )
    reason: DecisionReason = Field(description="why the selector chose this action")
    reason_detail: ShortText | None = Field(
        default=None,
        description="what governance changed about the choice, e.g. models withheld by an "
        "open circuit breaker ('breaker open: strong until 2026-01-01T12:00:30Z')",
    )
    signature: StateSignature
    scores: list[ActionScore] = Field(
        default_factory=list,
        max_length=256,
        description="the selector's view of every candidate action; empty where the rule-based "
        "prior chose, unless the arm is stochastic (temperature above 0)",
    )
    propensity: Propensity
    policy_version: PolicyVersion
    exploration_c: float = Field(
        ge=0.0, description="the exploration constant c in force for this signature"
    )
    state: TrajectoryState = Field(
        description="the state after this decision: a skip already applied, an invoke pending"
    )


class FailureKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    QUOTA = "quota"
    TIMEOUT = "timeout"
    NETWORK = "network"
    SCHEMA = "schema"
    SERVER = "server"
    UPSTREAM = "upstream"
    SIMULATED = "simulated"
    OVERSIZE = "oversize"


class StepOutcome(Event):
    """What executing one invoke decision produced; echoes the state it was given."""

    event_type: Literal["StepOutcome"] = Field("StepOutcome", description=_EVENT_TYPE)

    decision_id: DecisionRef
    trajectory_id: TrajectoryRef
    step: StepIndex
    action: TakenAction
    cell: CellName
    status: Literal[StepStatus.SUCCEEDED, StepStatus.FAILED] = Field(
        description="whether the invoke succeeded (skips never reach a worker)"
    )
    failure_kind: FailureKind | None = Field(
        default=None, description="why the invoke failed; null when it succeeded"
    )
    tokens_in: int = Field(default=0, ge=0, description="prompt tokens used, retries included")
    tokens_out: int = Field(default=0, ge=0, description="completion tokens used, retries included")
    latency_s: float = Field(
        default=0.0, ge=0.0, description="wall time of the step in seconds, retries included"
    )
    cost_usd: float = Field(default=0.0, ge=0.0, description="price of the step in US dollars")
    retries: Retries = Field(default=0, ge=0, le=100)
    delta: HandoffDelta = Field(
        default_factory=HandoffDelta, description="what the cell wrote into the handoff"
    )
    done: bool = Field(default=False, description="set by the evaluator when the answer is final")
    state: TrajectoryState = Field(
        description="the state of the decision, echoed unchanged so any router replica can resume "
        "the trajectory"
    )


class Termination(StrEnum):
    EVALUATOR_DONE = "evaluator_done"
    STEP_BUDGET = "step_budget"
    TOKEN_BUDGET = "token_budget"
    NO_LEGAL_ACTION = "no_legal_action"
    GOVERNANCE_HALT = "governance_halt"


class TrajectoryCompleted(Event):
    """A trajectory ended; judges score it, the learner backs it up."""

    event_type: Literal["TrajectoryCompleted"] = Field(
        "TrajectoryCompleted", description=_EVENT_TYPE
    )

    trajectory_id: TrajectoryRef
    task_id: TaskRef
    task_class: TaskClass = None
    regime: DetectedRegime
    termination: Termination = Field(description="why the trajectory ended")
    halt_reason: Name | None = Field(
        default=None,
        description="with termination governance_halt: the failure kind that stopped it "
        "(auth, quota) or repeated_failures",
    )
    steps: int = Field(ge=0, description="decisions taken, invokes and skips")
    tokens: int = Field(ge=0, description="tokens used by the whole trajectory")
    retries: Retries = Field(ge=0)
    answer: Text | None = Field(
        default=None, description="the trajectory's answer, if it produced one"
    )
    policy_version: PolicyVersion
    state: TrajectoryState = Field(description="the final state")


class RewardSource(StrEnum):
    JUDGE = "judge"
    EXPLICIT = "explicit"


class RewardObserved(Event):
    """A quality score for a trajectory, from the judge or from the pipeline itself."""

    event_type: Literal["RewardObserved"] = Field("RewardObserved", description=_EVENT_TYPE)

    trajectory_id: TrajectoryRef
    task_id: Identifier | None = Field(
        default=None, description="the submitter's id of the task, when the scorer gives it"
    )
    source: RewardSource = Field(
        default=RewardSource.JUDGE,
        description="`judge` for a judge's score, `explicit` for a pipeline's own feedback",
    )
    quality: Unit = Field(description="the quality score Q of the trajectory")
    confidence: Unit = Field(
        default=1.0, description="how far to trust `quality`; judges' agreement"
    )
    judges: list[JudgeScore] = Field(
        default_factory=list,
        max_length=16,
        description="each judge's rubric scores behind `quality`",
    )
    group_id: Identifier | None = Field(
        default=None, description="the group the trajectory was judged in side by side"
    )


class TopicOffset(Record):
    topic: TopicName = Field(description="an input topic, prefix included")
    partition: int = Field(ge=0, description="a partition of that topic")
    offset: int = Field(ge=0, description="the next offset to read")


class LearnerCheckpoint(Record):
    """What the learner holds between snapshots besides the graph: joins still waiting for
    their partner, and the ids it already backed up (to drop duplicates)."""

    waiting_trajectories: list[TrajectoryCompleted] = Field(
        default_factory=list,
        max_length=100_000,
        description="completed trajectories whose reward has not arrived yet",
    )
    waiting_rewards: list[RewardObserved] = Field(
        default_factory=list,
        max_length=100_000,
        description="rewards whose trajectory has not arrived yet",
    )
    recent_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=1_000_000,
        description="trajectory ids backed up most recently, oldest first (dedupe window)",
    )
    expired: int = Field(default=0, ge=0, description="joins dropped after the reward TTL so far")


class PolicySnapshot(Event):
    """A versioned policy and the input offsets it reflects (the learner's checkpoint)."""

    event_type: Literal["PolicySnapshot"] = Field("PolicySnapshot", description=_EVENT_TYPE)

    version: int = Field(
        ge=0, description="policy version; grows with every snapshot of a tenant (of a shard)"
    )
    shard: int | None = Field(
        default=None,
        ge=0,
        description="the input partition whose trajectories this snapshot learned, when the "
        "tenant's learning is sharded across learner replicas (null: the whole tenant)",
    )
    shards: int | None = Field(
        default=None,
        ge=1,
        description="how many shards the tenant's learning has: the input topics' partition "
        "count (null when shard is null)",
    )
    chunk: int | None = Field(
        default=None,
        ge=0,
        description="which part of the snapshot this record holds, when the policy is "
        "published in chunks by signature range: chunk 0 carries the class floors and the "
        "checkpoint, every chunk its range's nodes (null: the whole snapshot)",
    )
    chunks: int | None = Field(
        default=None,
        ge=1,
        description="how many chunks make the snapshot whole (null when chunk is null); a "
        "reader uses a version once it has every chunk of it",
    )
    policy: PolicyDocument = Field(description="the policy itself")
    input_offsets: list[TopicOffset] = Field(
        default_factory=list,
        max_length=4_096,
        description="where the learner's inputs stood when it took the snapshot: its checkpoint",
    )
    backed_up: int = Field(default=0, ge=0, description="trajectories backed up so far")
    checkpoint: LearnerCheckpoint = Field(
        default_factory=LearnerCheckpoint,
        description="the learner's join and dedupe state as of input_offsets",
    )
    gate: GateFigures | None = Field(
        default=None,
        description="the off-policy gate's figures for this policy, which routers check "
        "before adopting it (null: not evaluated)",
    )

    @model_validator(mode="after")
    def _parts_within_counts(self) -> "PolicySnapshot":
        for part, count in (("shard", "shards"), ("chunk", "chunks")):
            index, total = getattr(self, part), getattr(self, count)
            if (index is None) != (total is None):
                raise ValueError(f"{part} and {count} are given together or not at all")
            if index is not None and index >= total:
                raise ValueError(f"{part} {index} is not below {count} {total}")
        return self


class DeadLetter(Event):
    """An input a service could not use, kept byte for byte with the reason."""

    event_type: Literal["DeadLetter"] = Field("DeadLetter", description=_EVENT_TYPE)

    service: Name = Field(description="the service that gave up on the message")
    source_topic: TopicName = Field(description="the topic the message was read from")
    partition: int | None = Field(
        default=None, ge=0, description="partition of the original message, if known"
    )
    offset: int | None = Field(
        default=None, ge=0, description="offset of the original message, if known"
    )
    key_b64: str | None = Field(
        default=None,
        max_length=4_096,
        description="the original key bytes, standard base64; null if it had no key",
    )
    payload_b64: str = Field(
        max_length=8_000_000,
        description="the original bytes, base64; only their head when payload_truncated",
    )
    payload_bytes: int | None = Field(
        default=None, ge=0, description="size of the original value (null: not recorded)"
    )
    payload_truncated: bool = Field(
        default=False, description="the value was too large to keep whole in a dead letter"
    )
    reason: ShortText = Field(description="why the message was rejected")
    error_type: Name = Field(
        description="what was wrong, e.g. `schema_invalid`, `over_limit`, `record_too_large`"
    )


EVENT_TYPES: tuple[type[Event], ...] = (
    TaskSubmitted,
    Decision,
    StepOutcome,
    TrajectoryCompleted,
    RewardObserved,
    PolicySnapshot,
    DeadLetter,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "ActionId",
    "ActionKind",
    "DeadLetter",
    "Decision",
    "DecisionReason",
    "Event",
    "FailureKind",
    "LearnerCheckpoint",
    "PolicySnapshot",
    "RewardObserved",
    "RewardSource",
    "SignatureText",
    "StepOutcome",
    "TaskSubmitted",
    "Termination",
    "TopicOffset",
    "TrajectoryCompleted",
]
