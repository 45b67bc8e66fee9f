"""Finding the learner's checkpoints: the newest snapshot of its tenant (of each of its
tenant's shards, when the learning is sharded) on the policy topic."""

import logging
import re

from schemas.events import PolicySnapshot
from services.policy.chunks import Chunks
from services.policy.shards import WHOLE, ShardId
from services.runtime.codec import Rejected, decode
from services.runtime.reading import Record, read_to_end
from services.runtime.settings import Settings

log = logging.getLogger("agensbus.learner.restore")


def snapshot_key(tenant: str, shard: ShardId) -> bytes:
    """The policy topic's key of a snapshot: the tenant, and ``tenant/shard`` for a shard's,
    so that compaction keeps the newest snapshot of every shard."""
    return (tenant if shard is WHOLE else f"{tenant}/{shard}").encode()


async def newest_snapshots(
    settings: Settings, tenant: str, *, timeout_s: float = 120.0
) -> dict[ShardId, PolicySnapshot]:
    """Read the policy topic from its beginning to its current end and return ``tenant``'s
    snapshot with the highest version per shard (``WHOLE`` for a snapshot of the whole
    tenant), of the versions read whole (every chunk of a chunked one), leaving out shards
    whose newest record is a tombstone.

    The topic is compacted, so usually one snapshot per key is left; until the cleaner
    runs there are more, and the highest version wins (the later one on a tie).
    """
    best: dict[ShardId, PolicySnapshot] = {}
    chunks = Chunks()

    def keep_newer(record: Record) -> None:
        owner = key_tenant(record.key)
        if owner is not None and owner != tenant:
            return  # another tenant's: not worth decoding (snapshots are large)
        if record.value is None:  # a tombstone deletes its key's policy so far
            for shard in tombstoned(record.key, tenant):
                best.pop(shard, None)
            return
        snapshot = decode(record.value, PolicySnapshot)
        if isinstance(snapshot, Rejected):
            log.warning(
                "unreadable record on the policy topic",
                extra={"offset": record.offset, "reason": snapshot.reason},
            )
            return
        if snapshot.tenant != tenant:
            return
        whole = chunks.add(snapshot)
        held = best.get(snapshot.shard)
        if whole is not None and (held is None or whole.version >= held.version):
            best[snapshot.shard] = whole

    await read_to_end(settings, settings.topic("policy"), keep_newer, timeout_s=timeout_s)
    return best


async def newest_snapshot(
    settings: Settings, tenant: str, *, timeout_s: float = 120.0
) -> PolicySnapshot | None:
    """``tenant``'s newest snapshot of the whole tenant, or None when it has none."""
    return (await newest_snapshots(settings, tenant, timeout_s=timeout_s)).get(WHOLE)


def key_tenant(key: bytes | None) -> str | None:
    """The tenant a policy topic key names (None for a record without a key): its text up
    to the shard's ``/`` or the chunk's ``#``, which tenant names cannot hold."""
    if key is None:
        return None
    return re.split("[/#]", key.decode(errors="replace"), maxsplit=1)[0]


def tombstoned(key: bytes | None, tenant: str) -> list[ShardId]:
    """The shard of ``tenant`` whose policy a tombstone with ``key`` deletes, if any."""
    text = (key or b"").decode(errors="replace")
    if text == tenant:
        return [WHOLE]
    owner, _, shard = text.rpartition("/")
    return [int(shard)] if owner == tenant and shard.isdigit() else []
