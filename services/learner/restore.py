"""Finding the learner's checkpoint: the newest snapshot of its tenant on the policy topic."""

import logging

from schemas.events import PolicySnapshot
from services.runtime.codec import Rejected, decode
from services.runtime.reading import Record, read_to_end
from services.runtime.settings import Settings

log = logging.getLogger("agensbus.learner.restore")


async def newest_snapshot(
    settings: Settings, tenant: str, *, timeout_s: float = 120.0
) -> PolicySnapshot | None:
    """Read the policy topic from its beginning to its current end and return ``tenant``'s
    snapshot with the highest version, or None when it has none.

    The topic is compacted, so usually one snapshot per key is left; until the cleaner
    runs there are more, and the highest version wins (the later one on a tie).
    """
    best: PolicySnapshot | None = None

    def keep_newer(record: Record) -> None:
        nonlocal best
        best = _newer(best, record, tenant)

    await read_to_end(settings, settings.topic("policy"), keep_newer, timeout_s=timeout_s)
    return best


def _newer(best: PolicySnapshot | None, record: Record, tenant: str) -> PolicySnapshot | None:
    if record.value is None:  # a tombstone deletes its key's policy so far
        return None if record.key == tenant.encode() else best
    snapshot = decode(record.value, PolicySnapshot)
    if isinstance(snapshot, Rejected):
        log.warning(
            "unreadable record on the policy topic",
            extra={"offset": record.offset, "reason": snapshot.reason},
        )
        return best
    if snapshot.tenant == tenant and (best is None or snapshot.version >= best.version):
        return snapshot
    return best
