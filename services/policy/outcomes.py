"""What executing a step and judging a trajectory produce, whoever does it: the simulator, a
real model backend or a judge of one's own. Workers turn these into StepOutcome and
RewardObserved events."""

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.events import FailureKind, RewardObserved
from schemas.records import JudgeScore, StepStatus
from services.policy.rubric import judge_confidence
from services.policy.trajectory import StepResult


@dataclass(frozen=True, slots=True)
class Execution:
    """One executed step: what the router needs (``result``) and what a StepOutcome adds."""

    result: StepResult
    tokens_in: int
    tokens_out: int
    latency_s: float
    attempts: int
    failure_kind: FailureKind | None
    #: What the provider charges for the step; the simulator charges nothing.
    cost_usd: float = 0.0

    @property
    def status(self) -> StepStatus:
        return StepStatus.SUCCEEDED if self.result.succeeded else StepStatus.FAILED


@dataclass(frozen=True, slots=True)
class Judgement:
    """The judges' view of one trajectory, shaped like ``RewardObserved``."""

    trajectory_id: str
    quality: float
    confidence: float
    scores: tuple[JudgeScore, ...]

    @classmethod
    def of(cls, trajectory_id: str, scores: Sequence[JudgeScore]) -> "Judgement":
        """The judges' mean overall score, and their agreement as the confidence."""
        overall = [s.overall for s in scores]
        return cls(
            trajectory_id, sum(overall) / len(overall), judge_confidence(overall), tuple(scores)
        )

    def to_event(
        self, *, task_id: str | None = None, group_id: str | None = None, tenant: str = "default"
    ) -> RewardObserved:
        return RewardObserved(
            trajectory_id=self.trajectory_id,
            task_id=task_id,
            quality=self.quality,
            confidence=self.confidence,
            judges=list(self.scores),
            group_id=group_id,
            tenant=tenant,
        )
