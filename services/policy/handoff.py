"""Applying a cell's handoff delta and reading the handoff's presence mask."""

from schemas.records import Handoff, HandoffDelta

#: The seven handoff fields the signature observes, in mask bit order.
MASK_FIELDS: tuple[str, ...] = (
    "goal",
    "subproblem",
    "evidence",
    "draft_answer",
    "critique",
    "verification",
    "merged_answer",
)


def apply_delta(handoff: Handoff, delta: HandoffDelta) -> Handoff:
    """Fields the delta sets replace the old ones; evidence accumulates (bounded)."""
    changes: dict[str, object] = {
        name: value
        for name in ("subproblem", "draft_answer", "critique", "verification", "merged_answer")
        if (value := getattr(delta, name)) is not None
    }
    if delta.evidence:
        changes["evidence"] = [*handoff.evidence, *delta.evidence][-64:]
    if not changes:
        return handoff
    return handoff.model_copy(update=changes)


def presence_mask(handoff: Handoff) -> str:
    """'1' per observed field that holds something, in MASK_FIELDS order."""
    return "".join("1" if getattr(handoff, name) else "0" for name in MASK_FIELDS)
