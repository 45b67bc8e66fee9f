"""Means with 95% confidence intervals over seeds (Student's t, no scipy needed)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Two-sided 95% quantiles of Student's t by degrees of freedom; beyond 30 the normal's.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z95 = 1.960


def t95(degrees: int) -> float:
    if degrees < 1:
        raise ValueError("a confidence interval needs at least two samples")
    return _T95[degrees - 1] if degrees <= len(_T95) else _Z95


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean over seeds with its 95% interval; one seed gives a zero-width interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Estimate":
        if not values:
            raise ValueError("no values to estimate from")
        n = len(values)
        mean = sum(values) / n
        if n == 1:
            return cls(mean, mean, mean, 1)
        variance = sum((v - mean) ** 2 for v in values) / (n - 1)
        half = t95(n - 1) * math.sqrt(variance / n)
        return cls(mean, mean - half, mean + half, n)

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}

    def text(self, digits: int = 3) -> str:
        half = (self.ci_high - self.ci_low) / 2
        return f"{self.mean:,.{digits}f} ± {half:,.{digits}f}"
