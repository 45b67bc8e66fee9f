"""The paper's rule-based regime detector."""

from schemas.records import Regime, TaskFeatures


def detect_regime(features: TaskFeatures) -> Regime:
    """First matching rule wins; every comparison is strict, so 0.7 itself does not trigger."""
    if features.contradiction_risk > 0.7:
        return Regime.CONTRADICTORY
    if features.ambiguity_level > 0.7:
        return Regime.AMBIGUOUS
    if features.evidence_availability > 0.7 and features.verification_need > 0.6:
        return Regime.EVIDENCE_HEAVY
    if features.verification_need > 0.8:
        return Regime.HIGH_RISK
    return Regime.STRAIGHTFORWARD
