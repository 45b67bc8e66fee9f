"""What one arm of a demo on real models produced, per epoch.

With the openai backend there is no simulated world behind the answers, so no true quality
and no oracle: regret is undefined. What the services did publish is reported instead —
the judge's score and confidence, the hybrid reward the learner backed up, tokens, cost,
skips, failed steps and how trajectories ended.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.events import RewardObserved, Termination, TrajectoryCompleted
from schemas.records import RewardConfig, StepStatus
from services.demo.delivery import Delivery, per_epoch
from services.demo.replay import EpochRun, Observed
from services.policy import PAPER_REWARD, hybrid_reward


@dataclass(frozen=True, slots=True)
class LiveTrajectory:
    epoch: int
    task_id: str
    task_class: str
    question: str
    termination: Termination
    judge_score: float
    judge_confidence: float
    reward: float
    tokens: int
    cost_usd: float
    decisions: int
    skips: int
    failed_steps: int
    answer: str | None


def live_trajectory(
    epoch: int,
    completed: TrajectoryCompleted,
    reward: RewardObserved,
    cost_usd: float,
    reward_config: RewardConfig = PAPER_REWARD,
) -> LiveTrajectory:
    state = completed.state
    statuses = [edge.status for edge in state.visited]
    return LiveTrajectory(
        epoch=epoch,
        task_id=completed.task_id,
        task_class=completed.task_class or "",
        question=state.handoff.goal,
        termination=completed.termination,
        judge_score=reward.quality,
        judge_confidence=reward.confidence,
        reward=hybrid_reward(reward.quality, state.tokens_used, state.retries, reward_config),
        tokens=state.tokens_used,
        cost_usd=cost_usd,
        decisions=len(statuses),
        skips=statuses.count(StepStatus.SKIPPED),
        failed_steps=statuses.count(StepStatus.FAILED),
        answer=completed.answer,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class LiveEpoch:
    epoch: int
    trajectories: int
    judge_score: float
    judge_confidence: float
    reward: float
    tokens_per_trajectory: float
    cost_per_trajectory_usd: float
    skip_share: float
    failed_steps: int
    terminations: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, epoch: int, records: Sequence[LiveTrajectory]) -> "LiveEpoch":
        decisions = sum(r.decisions for r in records)
        return cls(
            epoch=epoch,
            trajectories=len(records),
            judge_score=_mean([r.judge_score for r in records]),
            judge_confidence=_mean([r.judge_confidence for r in records]),
            reward=_mean([r.reward for r in records]),
            tokens_per_trajectory=_mean([float(r.tokens) for r in records]),
            cost_per_trajectory_usd=_mean([r.cost_usd for r in records]),
            skip_share=sum(r.skips for r in records) / decisions if decisions else 0.0,
            failed_steps=sum(r.failed_steps for r in records),
            terminations=dict(sorted(Counter(r.termination.value for r in records).items())),
        )


@dataclass(frozen=True)
class LiveArm(Delivery):
    arm: str
    epochs: list[LiveEpoch]
    records: list[LiveTrajectory]

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.records)


def live_arm(
    arm: str,
    runs: Sequence[EpochRun],
    observed: Observed,
    wall_s: float,
    reward: RewardConfig = PAPER_REWARD,
) -> LiveArm:
    """Join what the services published, in submission order (as ``arm_result`` does)."""
    epochs = per_epoch(
        runs,
        lambda epoch, t: live_trajectory(
            epoch, observed.completed[t], observed.rewards[t], observed.cost_usd(t), reward
        ),
    )
    return LiveArm.counted(
        runs,
        observed,
        wall_s,
        arm=arm,
        epochs=[LiveEpoch.of(run.epoch, rs) for run, rs in zip(runs, epochs, strict=True)],
        records=[r for rs in epochs for r in rs],
    )
