"""The events on agensbus topics (DESIGN.md §2). Each names its topic in ``TOPIC``."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Final, Literal

from pydantic import AwareDatetime, Field

from schemas._base import Record
from schemas._types import (
    ActionId,
    DecisionId,
    Identifier,
    Name,
    ShortText,
    SignatureText,
    Text,
    TopicName,
    Unit,
)
from schemas.policy_file import PolicyDocument
from schemas.records import (
    ActionScore,
    Budget,
    HandoffDelta,
    JudgeScore,
    Regime,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
)

SCHEMA_VERSION: Final = 1


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(Record):
    """Fields every event carries."""

    TOPIC: ClassVar[str] = ""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Identifier = Field(default_factory=_new_id)
    produced_at: AwareDatetime = Field(default_factory=_now)
    tenant: Name = "default"


class TaskSubmitted(Event):
    """A pipeline asks for a task to be solved."""

    TOPIC: ClassVar[str] = "tasks"
    event_type: Literal["TaskSubmitted"] = "TaskSubmitted"

    task_id: Identifier
    goal: Text = Field(min_length=1)
    features: TaskFeatures = Field(default_factory=TaskFeatures)
    task_class: Name | None = None
    constraints: list[ShortText] = Field(default_factory=list, max_length=32)
    rollouts: int = Field(default=1, ge=1, le=16)
    budget: Budget | None = None
    metadata: dict[Name, ShortText] = Field(default_factory=dict, max_length=32)


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


class Decision(Event):
    """The router's choice for one step, with everything needed to audit or replay it."""

    TOPIC: ClassVar[str] = "decisions"
    event_type: Literal["Decision"] = "Decision"

    decision_id: DecisionId
    trajectory_id: Identifier
    task_id: Identifier
    step: int = Field(ge=0, le=1_000)
    action: ActionId
    action_kind: ActionKind
    cell: Name
    protocol: Name | None = None
    model: Name | None = None
    reason: DecisionReason
    reason_detail: ShortText | None = Field(
        default=None,
        description="what governance changed about the choice, e.g. models withheld by an "
        "open circuit breaker ('breaker open: strong until 2026-01-01T12:00:30Z')",
    )
    signature: SignatureText
    scores: list[ActionScore] = Field(default_factory=list, max_length=256)
    propensity: float = Field(gt=0.0, le=1.0)
    policy_version: int = Field(ge=0)
    exploration_c: float = Field(ge=0.0)
    state: TrajectoryState


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


class StepOutcome(Event):
    """What executing one invoke decision produced; echoes the state it was given."""

    TOPIC: ClassVar[str] = "outcomes"
    event_type: Literal["StepOutcome"] = "StepOutcome"

    decision_id: DecisionId
    trajectory_id: Identifier
    step: int = Field(ge=0, le=1_000)
    action: ActionId
    cell: Name
    status: Literal[StepStatus.SUCCEEDED, StepStatus.FAILED]
    failure_kind: FailureKind | None = None
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    latency_s: float = Field(default=0.0, ge=0.0)
    cost_usd: float = Field(default=0.0, ge=0.0)
    retries: int = Field(default=0, ge=0, le=100)
    delta: HandoffDelta = Field(default_factory=HandoffDelta)
    done: bool = Field(default=False, description="set by the evaluator when the answer is final")
    state: TrajectoryState


class Termination(StrEnum):
    EVALUATOR_DONE = "evaluator_done"
    STEP_BUDGET = "step_budget"
    TOKEN_BUDGET = "token_budget"
    NO_LEGAL_ACTION = "no_legal_action"
    GOVERNANCE_HALT = "governance_halt"


class TrajectoryCompleted(Event):
    """A trajectory ended; judges score it, the learner backs it up."""

    TOPIC: ClassVar[str] = "trajectories"
    event_type: Literal["TrajectoryCompleted"] = "TrajectoryCompleted"

    trajectory_id: Identifier
    task_id: Identifier
    task_class: Name | None = None
    regime: Regime
    termination: Termination
    halt_reason: Name | None = Field(
        default=None,
        description="with termination governance_halt: the failure kind that stopped it "
        "(auth, quota) or repeated_failures",
    )
    steps: int = Field(ge=0)
    tokens: int = Field(ge=0)
    retries: int = Field(ge=0)
    answer: Text | None = None
    policy_version: int = Field(ge=0)
    state: TrajectoryState


class RewardSource(StrEnum):
    JUDGE = "judge"
    EXPLICIT = "explicit"


class RewardObserved(Event):
    """A quality score for a trajectory, from the judge or from the pipeline itself."""

    TOPIC: ClassVar[str] = "rewards"
    event_type: Literal["RewardObserved"] = "RewardObserved"

    trajectory_id: Identifier
    task_id: Identifier | None = None
    source: RewardSource = RewardSource.JUDGE
    quality: Unit
    confidence: Unit = 1.0
    judges: list[JudgeScore] = Field(default_factory=list, max_length=16)
    group_id: Identifier | None = None


class TopicOffset(Record):
    topic: TopicName
    partition: int = Field(ge=0)
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

    TOPIC: ClassVar[str] = "policy"
    event_type: Literal["PolicySnapshot"] = "PolicySnapshot"

    version: int = Field(ge=0)
    policy: PolicyDocument
    input_offsets: list[TopicOffset] = Field(default_factory=list, max_length=4_096)
    backed_up: int = Field(default=0, ge=0, description="trajectories backed up so far")
    checkpoint: LearnerCheckpoint = Field(
        default_factory=LearnerCheckpoint,
        description="the learner's join and dedupe state as of input_offsets",
    )


class DeadLetter(Event):
    """An input a service could not use, kept byte for byte with the reason."""

    TOPIC: ClassVar[str] = "dlq"
    event_type: Literal["DeadLetter"] = "DeadLetter"

    service: Name
    source_topic: TopicName
    partition: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    key_b64: str | None = Field(default=None, max_length=4_096)
    payload_b64: str = Field(max_length=8_000_000, description="the original bytes, base64")
    reason: ShortText
    error_type: Name


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
