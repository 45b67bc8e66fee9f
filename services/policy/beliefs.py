"""The paper's per-role belief updates, in integer arithmetic so buckets never drift.

Beliefs travel as floats; here they are scaled to integers (1.0 == SCALE) before a delta is
added, so 0.1 + 0.2 is exactly 0.3 and the signature bucket of a value is stable.
"""

from schemas.records import Beliefs, HandoffDelta, Role, Verdict

SCALE = 10_000
_FIELDS = (
    "correctness",
    "uncertainty",
    "handoff_quality",
    "contradiction_risk",
    "evidence_sufficiency",
)


def to_units(value: float) -> int:
    """A belief in [0, 1] as an integer count of 1/SCALE."""
    return round(value * SCALE)


def _delta(
    c: float = 0.0, u: float = 0.0, hq: float = 0.0, cr: float = 0.0, es: float = 0.0
) -> tuple[int, int, int, int, int]:
    return (to_units(c), to_units(u), to_units(hq), to_units(cr), to_units(es))


# The paper's fixed deltas, keyed by role, or by verdict for the verifier.
ROLE_DELTAS: dict[Role, tuple[int, int, int, int, int]] = {
    Role.PLANNER: _delta(u=-0.05, hq=0.10),
    Role.SOLVER: _delta(c=0.20, u=-0.10, hq=0.10),
    Role.CRITIC: _delta(u=0.05, cr=0.20),
    Role.SYNTHESIZER: _delta(c=0.08, u=-0.05, hq=0.12),
}
VERDICT_DELTAS: dict[Verdict, tuple[int, int, int, int, int]] = {
    Verdict.SUPPORTED: _delta(c=0.25, u=-0.20, cr=-0.15, es=0.10),
    Verdict.PARTIALLY_SUPPORTED: _delta(c=0.10, u=-0.05, cr=-0.05),
    Verdict.UNSUPPORTED: _delta(c=-0.20, u=0.10, cr=0.20),
}
MEMORY_BASE = _delta(u=-0.10, hq=0.05)
EVIDENCE_STEP = to_units(0.10)
EVIDENCE_CAP = to_units(0.30)


def _role_delta(role: Role, delta: HandoffDelta) -> tuple[int, int, int, int, int] | None:
    """The delta a successful step applies, or None when the step wrote nothing that counts."""
    if role is Role.PLANNER:
        return ROLE_DELTAS[role] if delta.subproblem is not None else None
    if role is Role.MEMORY:
        es = min(EVIDENCE_CAP, EVIDENCE_STEP * len(delta.evidence))
        c, u, hq, cr, _ = MEMORY_BASE
        return (c, u, hq, cr, es)
    if role is Role.SOLVER:
        return ROLE_DELTAS[role] if delta.draft_answer is not None else None
    if role is Role.CRITIC:
        return ROLE_DELTAS[role] if delta.critique is not None else None
    if role is Role.VERIFIER:
        return VERDICT_DELTAS[delta.verification.verdict] if delta.verification else None
    if role is Role.SYNTHESIZER:
        return ROLE_DELTAS[role] if delta.merged_answer is not None else None
    # web_search and evaluator move no belief in the paper.
    return None


def update_beliefs(beliefs: Beliefs, role: Role, delta: HandoffDelta) -> Beliefs:
    """Apply the paper's update for ``role`` given what the step wrote; clip to [0, 1]."""
    change = _role_delta(role, delta)
    if change is None:
        return beliefs
    values = {
        name: min(SCALE, max(0, to_units(getattr(beliefs, name)) + d)) / SCALE
        for name, d in zip(_FIELDS, change, strict=True)
    }
    return Beliefs(**values)
