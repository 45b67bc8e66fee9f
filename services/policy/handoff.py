"""Applying a cell's handoff delta and reading the handoff's presence mask."""

from schemas.records import PAYLOAD_MARKER, Handoff, HandoffDelta, PayloadRef

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
    updated = handoff.model_copy(update=changes)
    if handoff.payloads or delta.payloads:
        updated = updated.model_copy(update={"payloads": _still_held(updated, delta.payloads)})
    return updated


def _still_held(handoff: Handoff, added: list[PayloadRef]) -> list[PayloadRef]:
    """The references whose marker a field of ``handoff`` still holds (a replaced draft or
    evidence pushed out of the window lets go of its payload), each digest once."""
    values = [handoff.subproblem, handoff.draft_answer, handoff.critique, handoff.merged_answer]
    held = {v.removeprefix(PAYLOAD_MARKER) for v in (*values, *handoff.evidence) if v}
    kept: dict[str, PayloadRef] = {}
    for ref in (*handoff.payloads, *added):
        if ref.digest in held:
            kept.setdefault(ref.digest, ref)
    return list(kept.values())


def presence_mask(handoff: Handoff) -> str:
    """'1' per observed field that holds something, in MASK_FIELDS order."""
    return "".join("1" if getattr(handoff, name) else "0" for name in MASK_FIELDS)
