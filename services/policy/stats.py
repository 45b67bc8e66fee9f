"""Mergeable running statistics (count, mean, sum of squared deviations).

One formula serves every case: Chan's parallel combination. A single observation is a
sample of size one with M2 = 0, so Welford's update is ``merge`` with ``n_b = 1``; merging
shards and warm starts uses the same function, and the graph applies it to numpy columns.
"""

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

Num = TypeVar("Num", float, npt.NDArray[np.float64])


def chan_merge(
    n_a: Num, mean_a: Num, m2_a: Num, n_b: Num, mean_b: Num, m2_b: Num
) -> tuple[Num, Num, Num]:
    """Combine two samples' (n, mean, M2); works elementwise on numpy arrays.

    Where both counts are zero the result is (0, 0, 0).
    """
    n = n_a + n_b
    delta = mean_b - mean_a
    if isinstance(n, np.ndarray):
        safe = np.where(n > 0, n, 1.0)
        mean = mean_a + delta * (n_b / safe)
        m2 = m2_a + m2_b + delta * delta * (n_a * n_b / safe)
        return n, np.where(n > 0, mean, 0.0), np.where(n > 0, m2, 0.0)
    if n == 0:
        return n, 0.0 * n, 0.0 * n
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


@dataclass(slots=True)
class RunningStat:
    """Count, mean and M2 of a stream; ``variance`` is the sample variance."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        self.count, self.mean, self.m2 = chan_merge(
            self.count, self.mean, self.m2, 1.0, float(value), 0.0
        )

    def merge(self, other: "RunningStat") -> "RunningStat":
        return RunningStat(
            *chan_merge(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        )

    def scaled(self, weight: float) -> "RunningStat":
        """The stream counted ``weight`` times as much, its mean and variance kept."""
        return RunningStat(self.count * weight, self.mean, self.m2 * weight)

    @property
    def variance(self) -> float:
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0


@dataclass(slots=True)
class EdgeStats:
    """Statistics of one (signature, action) edge: reward and token streams plus failures.

    Reward and tokens are observed together on every completed visit, so one count serves
    both; failed visits carry no reward and are only counted.
    """

    visits: int = 0
    mean_reward: float = 0.0
    reward_m2: float = 0.0
    token_mean: float = 0.0
    token_m2: float = 0.0
    failures: int = 0

    def observe(self, reward: float, tokens: float) -> None:
        self._absorb(1, float(reward), 0.0, float(tokens), 0.0, 0)

    def fail(self) -> None:
        self.failures += 1

    def merge(self, other: "EdgeStats") -> "EdgeStats":
        merged = EdgeStats(
            self.visits,
            self.mean_reward,
            self.reward_m2,
            self.token_mean,
            self.token_m2,
            self.failures,
        )
        merged._absorb(
            other.visits,
            other.mean_reward,
            other.reward_m2,
            other.token_mean,
            other.token_m2,
            other.failures,
        )
        return merged

    def _absorb(
        self, n: int, mean: float, m2: float, tmean: float, tm2: float, failures: int
    ) -> None:
        n_a = float(self.visits)
        _, self.mean_reward, self.reward_m2 = chan_merge(
            n_a, self.mean_reward, self.reward_m2, float(n), mean, m2
        )
        _, self.token_mean, self.token_m2 = chan_merge(
            n_a, self.token_mean, self.token_m2, float(n), tmean, tm2
        )
        self.visits += n
        self.failures += failures
