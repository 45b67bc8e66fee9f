"""What one arm of a demo produced, turned into the engine's per-epoch numbers.

The services report each trajectory twice: the router's TrajectoryCompleted (the final
state) and the judge's RewardObserved (the score). Joined by trajectory id they make the
same ``TrajectoryRecord`` the in-process engine builds, so ``EpochReport.of`` computes every
column exactly as ``agensbus simulate`` does and the two can be compared number for number.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.events import RewardObserved, TrajectoryCompleted
from schemas.records import RewardConfig, StepStatus
from services.demo.replay import EpochRun, Observed
from services.policy import PAPER_REWARD, hybrid_reward
from services.sim.engine import EpochReport, TrajectoryRecord
from services.sim.judge import Judgement
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario
from services.sim.world import World


def trajectory_record(
    epoch: int,
    completed: TrajectoryCompleted,
    reward: RewardObserved,
    world: World,
    oracle: Oracle,
    reward_config: RewardConfig = PAPER_REWARD,
) -> TrajectoryRecord:
    """The engine's record of one trajectory, from the events the services published.

    Every decision of a finished trajectory is one visited edge (skips included: the router
    ends a trajectory only with no invoke pending), so the edges count decisions and skips
    exactly as the engine counts the steps ``advance`` returned."""
    state = completed.state
    judgement = Judgement(
        trajectory_id=completed.trajectory_id,
        quality=reward.quality,
        confidence=reward.confidence,
        scores=tuple(reward.judges),
    )
    return TrajectoryRecord(
        epoch=epoch,
        task_class=completed.task_class or "",
        state=state,
        termination=completed.termination,
        decisions=len(state.visited),
        skips=sum(e.status is StepStatus.SKIPPED for e in state.visited),
        true_quality=world.true_quality(state),
        judgement=judgement,
        reward=hybrid_reward(reward.quality, state.tokens_used, state.retries, reward_config),
        regret=oracle.regret(state),
    )


@dataclass(frozen=True)
class ArmResult:
    """One arm's run: the per-epoch reports and the counts that show nothing was lost or
    counted twice (``backed_up`` is the learner's count in its final snapshot)."""

    arm: str
    epochs: list[EpochReport]
    records: list[TrajectoryRecord]
    submitted: int
    completed: int
    rewarded: int
    backed_up: int
    policy_version: int
    wall_s: float
    epoch_wall_s: list[float]
    repeated_completions: int
    repeated_rewards: int

    @property
    def plateau(self) -> list[EpochReport]:
        """The last three epochs (fewer when the run was shorter)."""
        return self.epochs[-3:]


def arm_result(
    arm: str,
    scenario: Scenario,
    seed: int,
    runs: Sequence[EpochRun],
    observed: Observed,
    oracle: Oracle,
    wall_s: float,
    reward: RewardConfig = PAPER_REWARD,
) -> ArmResult:
    """Join what the services published into per-epoch reports; records are taken in
    submission order, not arrival order, so the means add up in the engine's order and
    equal runs give bit-equal numbers."""
    world = World(scenario, seed)
    reports, records = [], []
    for run in runs:
        epoch_records = [
            trajectory_record(
                run.epoch, observed.completed[t], observed.rewards[t], world, oracle, reward
            )
            for t in run.task_ids
        ]
        reports.append(EpochReport.of(run.epoch, epoch_records))
        records += epoch_records
    submitted = [t for run in runs for t in run.task_ids]
    return ArmResult(
        arm=arm,
        epochs=reports,
        records=records,
        submitted=len(submitted),
        completed=sum(t in observed.completed for t in submitted),
        rewarded=sum(t in observed.rewards for t in submitted),
        backed_up=0 if observed.snapshot is None else observed.snapshot.backed_up,
        policy_version=observed.version,
        wall_s=wall_s,
        epoch_wall_s=[run.wall_s for run in runs],
        repeated_completions=observed.repeated_completions,
        repeated_rewards=observed.repeated_rewards,
    )
