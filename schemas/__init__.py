"""Event contracts of agensbus: the pydantic models are the source of truth.

Every event on a topic is one of the classes in :mod:`schemas.events`; the records they carry
(task features, handoff, beliefs, trajectory state) live in :mod:`schemas.records`.
JSON Schema files generated from these models are checked in under ``schemas/json``.
"""

from schemas.events import (
    EVENT_TYPES,
    DeadLetter,
    Decision,
    Event,
    PolicySnapshot,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)
from schemas.policy_file import POLICY_FORMAT, EdgeRecord, NodeRecord, PolicyDocument
from schemas.records import (
    ActionScore,
    Beliefs,
    Handoff,
    JudgeScore,
    TaskFeatures,
    TrajectoryState,
    VisitedEdge,
)

__all__ = [
    "EVENT_TYPES",
    "POLICY_FORMAT",
    "ActionScore",
    "Beliefs",
    "DeadLetter",
    "Decision",
    "EdgeRecord",
    "Event",
    "Handoff",
    "JudgeScore",
    "NodeRecord",
    "PolicyDocument",
    "PolicySnapshot",
    "RewardObserved",
    "StepOutcome",
    "TaskFeatures",
    "TaskSubmitted",
    "TrajectoryCompleted",
    "TrajectoryState",
    "VisitedEdge",
]
