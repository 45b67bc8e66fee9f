"""The simulated RelativeJudge: noisy, biased observers of the latent quality.

Each judge scores every rubric axis as ``clip(q + bias + noise_sd * z, 0, 1)`` with its own
standard normal draw per axis, keyed by (seed, trajectory, judge); the overall score is the
rubric's weighted sum, the quality the mean over judges, the confidence their agreement.
The simulated judge has no peer effects: a trajectory scores the same in any group.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.records import JudgeScore
from services.policy.outcomes import Judgement
from services.policy.rubric import RUBRIC_WEIGHTS, overall_score
from services.sim.rng import stream
from services.sim.spec import JudgeSpec


@dataclass(frozen=True)
class SimulatedJudge:
    judges: Sequence[JudgeSpec]
    seed: int

    def score(self, trajectory_id: str, true_quality: float) -> Judgement:
        return Judgement.of(
            trajectory_id, [self._observe(j, trajectory_id, true_quality) for j in self.judges]
        )

    def score_group(self, group: Iterable[tuple[str, float]]) -> list[Judgement]:
        """Score (trajectory_id, true quality) pairs side by side."""
        return [self.score(trajectory_id, quality) for trajectory_id, quality in group]

    def _observe(self, judge: JudgeSpec, trajectory_id: str, quality: float) -> JudgeScore:
        rng = stream(self.seed, "judge", trajectory_id, judge.name)
        axes = {
            axis: min(1.0, max(0.0, quality + judge.bias + judge.noise_sd * rng.gauss()))
            for axis in RUBRIC_WEIGHTS
        }
        return JudgeScore(judge=judge.name, axes=axes, overall=overall_score(axes))
