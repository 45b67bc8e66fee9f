"""The paper's rule-based regime detector, as a table of rules so it can be shown too."""

from dataclasses import dataclass

from schemas.records import Regime, TaskFeatures


@dataclass(frozen=True, slots=True)
class RegimeRule:
    """One rule of the detector: every listed feature strictly above its threshold."""

    regime: Regime
    thresholds: tuple[tuple[str, float], ...]

    def matches(self, features: TaskFeatures) -> bool:
        return all(getattr(features, name) > limit for name, limit in self.thresholds)

    @property
    def condition(self) -> str:
        return " and ".join(f"{name} > {limit:g}" for name, limit in self.thresholds)

    def evaluated(self, features: TaskFeatures) -> str:
        # repr, not :g, so 0.7000001 is not shown as a 0.7 that passed "> 0.7".
        return " and ".join(
            f"{name} {getattr(features, name)!r} > {limit:g}" for name, limit in self.thresholds
        )


#: First match wins; no match means straightforward.
REGIME_RULES: tuple[RegimeRule, ...] = (
    RegimeRule(Regime.CONTRADICTORY, (("contradiction_risk", 0.7),)),
    RegimeRule(Regime.AMBIGUOUS, (("ambiguity_level", 0.7),)),
    RegimeRule(Regime.EVIDENCE_HEAVY, (("evidence_availability", 0.7), ("verification_need", 0.6))),
    RegimeRule(Regime.HIGH_RISK, (("verification_need", 0.8),)),
)


def matching_rule(features: TaskFeatures) -> RegimeRule | None:
    return next((rule for rule in REGIME_RULES if rule.matches(features)), None)


def detect_regime(features: TaskFeatures) -> Regime:
    rule = matching_rule(features)
    return Regime.STRAIGHTFORWARD if rule is None else rule.regime
