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
from services.demo.delivery import Delivery, per_epoch
from services.demo.replay import EpochRun, Observed
from services.policy import PAPER_REWARD, hybrid_reward
from services.policy.outcomes import Judgement
from services.sim.engine import EpochReport, TrajectoryRecord
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
class ArmResult(Delivery):
    """One arm's run: the per-epoch reports, and the delivery counts."""

    arm: str
    epochs: list[EpochReport]
    records: list[TrajectoryRecord]
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
    epochs = per_epoch(
        runs,
        lambda epoch, t: trajectory_record(
            epoch, observed.completed[t], observed.rewards[t], world, oracle, reward
        ),
    )
    return ArmResult.counted(
        runs,
        observed,
        wall_s,
        arm=arm,
        epochs=[EpochReport.of(run.epoch, rs) for run, rs in zip(runs, epochs, strict=True)],
        records=[r for rs in epochs for r in rs],
        repeated_completions=observed.repeated_completions,
        repeated_rewards=observed.repeated_rewards,
    )
