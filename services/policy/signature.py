"""The signature fold: the observable state of a trajectory folded into a node key.

Canonical text (version 1)::

    v1|<regime>|<mask>|c<C>.u<U>.r<R>.e<E>[|<key>=<value>...]

``mask`` is seven bits over goal, subproblem, evidence, draft_answer, critique, verification,
merged_answer; C, U, R, E are the buckets of correctness, uncertainty, contradiction_risk and
evidence_sufficiency: ``floor(value / granularity)`` computed on integers, so 1.0 has a bucket
of its own (10 at granularity 0.1). Extra keys (e.g. ``task_class``) follow in the order the
fold lists them; a missing value is written ``-``.
"""

import re
from dataclasses import dataclass

from schemas.records import Beliefs, FoldSpec, Handoff, Regime
from services.policy.beliefs import SCALE, to_units
from services.policy.handoff import MASK_FIELDS, presence_mask

MISSING = "-"
_BUCKET_FIELDS = (
    ("c", "correctness"),
    ("u", "uncertainty"),
    ("r", "contradiction_risk"),
    ("e", "evidence_sufficiency"),
)
_TEXT = re.compile(
    r"^v(?P<version>\d+)\|(?P<regime>[a-z_]+)\|(?P<mask>[01]{7})\|"
    r"c(?P<c>\d+)\.u(?P<u>\d+)\.r(?P<r>\d+)\.e(?P<e>\d+)(?P<extra>(\|[^|=]+=[^|]*)*)$"
)


@dataclass(frozen=True, slots=True)
class Signature:
    version: int
    regime: Regime
    mask: str
    buckets: tuple[int, int, int, int]
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        c, u, r, e = self.buckets
        head = f"v{self.version}|{self.regime.value}|{self.mask}|c{c}.u{u}.r{r}.e{e}"
        return head + "".join(f"|{k}={v}" for k, v in self.extra)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> "Signature":
        """Parse canonical text; raises ValueError naming what is wrong."""
        match = _TEXT.match(text)
        if match is None:
            raise ValueError(
                f"not a signature: {text!r} (expected v1|<regime>|<7 mask bits>|"
                "c<n>.u<n>.r<n>.e<n>[|key=value...])"
            )
        try:
            regime = Regime(match["regime"])
        except ValueError:
            known = ", ".join(r.value for r in Regime)
            raise ValueError(
                f"unknown regime {match['regime']!r} in {text!r}; known: {known}"
            ) from None
        extra = tuple(
            (key, value)
            for key, value in (part.split("=", 1) for part in match["extra"].split("|") if part)
        )
        return cls(
            version=int(match["version"]),
            regime=regime,
            mask=match["mask"],
            buckets=(int(match["c"]), int(match["u"]), int(match["r"]), int(match["e"])),
            extra=extra,
        )

    def has(self, field: str) -> bool:
        """Whether the handoff field ``field`` was present when this node was reached."""
        return self.mask[MASK_FIELDS.index(field)] == "1"


def bucket(value: float, granularity: float) -> int:
    steps = round(1.0 / granularity)
    return to_units(value) * steps // SCALE


def fold(
    spec: FoldSpec,
    regime: Regime,
    handoff: Handoff,
    beliefs: Beliefs,
    keys: dict[str, str] | None = None,
) -> Signature:
    """Fold the observable state into a signature according to ``spec``."""
    values = tuple(bucket(getattr(beliefs, name), spec.granularity) for _, name in _BUCKET_FIELDS)
    source = keys or {}
    extra = tuple((key, source.get(key) or MISSING) for key in spec.extra_keys)
    return Signature(spec.version, regime, presence_mask(handoff), values, extra)  # type: ignore[arg-type]
