"""The claim check: handoff content too large to ride in events is stored once, under the
SHA-256 of its UTF-8 bytes, and the handoff carries ``agensbus-payload:<digest>`` in its
place with a :class:`PayloadRef`. Whoever needs the text fetches it and checks the digest.

The store is a directory (shared by every worker and judge: a volume across hosts): a
payload is a file named by its digest, written once (to a temporary name, then renamed, so
a reader never sees half of it) and touched on every later write of the same content.
Files untouched for ``payload_retention_s`` are swept, so a payload lives as long as the
topics keep the events that refer to it.
"""

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from schemas.records import PAYLOAD_MARKER, Handoff, HandoffDelta, PayloadRef
from services.runtime.limits import TEXT_FIELDS, utf8_bytes
from services.runtime.poison import Poison

MARKER = PAYLOAD_MARKER


def marker(digest: str) -> str:
    return MARKER + digest


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PayloadStore:
    def __init__(
        self,
        directory: Path,
        retention_s: float,
        service: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.directory = directory
        self.retention_s = retention_s
        self._service = service
        self._ops = (
            None
            if registry is None
            else Counter(
                "agensbus_payloads_total",
                "Handoff payloads written to the payload store (stored) and read (fetched).",
                ["service", "op"],
                registry=registry,
            )
        )
        if self._ops is not None:
            for op in ("stored", "fetched"):  # every series from the first scrape, at 0
                self._ops.labels(service=service, op=op)

    def _count(self, op: str) -> None:
        if self._ops is not None:
            self._ops.labels(service=self._service, op=op).inc()

    def _path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.directory / hexdigest[:2] / hexdigest

    def put(self, text: str, field: str) -> PayloadRef:
        """Store ``text``, the value of handoff field ``field`` (once: the same content
        again only renews its retention)."""
        data = text.encode()
        digest = digest_of(data)
        path = self._path(digest)
        if path.exists():
            os.utime(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
                partial.write(data)
            os.replace(partial.name, path)
            self._count("stored")
        return PayloadRef(digest=digest, bytes=len(data), field=field)

    def get(self, digest: str) -> str:
        """The content stored under ``digest``; a missing or altered payload is poison:
        reading it again would not make it appear."""
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise Poison(
                "payload_missing", f"payload {digest} is not in the store {self.directory}"
            ) from None
        if digest_of(data) != digest:
            raise Poison("payload_corrupt", f"payload {digest} does not match its digest")
        self._count("fetched")
        return data.decode()

    def sweep(self, now: float | None = None) -> int:
        """Delete payloads untouched for the retention period; returns how many."""
        deadline = (time.time() if now is None else now) - self.retention_s
        removed = 0
        for path in self.directory.glob("*/*"):
            if path.stat().st_mtime < deadline:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def check_out(delta: HandoffDelta, store: PayloadStore, inline_bytes: int) -> HandoffDelta:
    """``delta`` with every text over ``inline_bytes`` stored and replaced by its marker."""

    def claim(name: str, text: str) -> str:
        if utf8_bytes(text) <= inline_bytes:
            return text
        ref = store.put(text, name)
        refs.append(ref)
        return marker(ref.digest)

    refs: list[PayloadRef] = []
    changes: dict[str, object] = {
        name: claim(name, value) for name in TEXT_FIELDS if (value := getattr(delta, name))
    }
    changes["evidence"] = [claim("evidence", item) for item in delta.evidence]
    if not refs:
        return delta
    return delta.model_copy(update={**changes, "payloads": [*delta.payloads, *refs]})


def check_in(handoff: Handoff, store: PayloadStore) -> Handoff:
    """``handoff`` with every marker it holds replaced by the stored text."""
    if not handoff.payloads:
        return handoff
    changes: dict[str, object] = {
        name: fetched(getattr(handoff, name), store) for name in TEXT_FIELDS
    }
    changes["evidence"] = [fetched(item, store) for item in handoff.evidence]
    return handoff.model_copy(update=changes)


def fetched(text: str | None, store: PayloadStore) -> str | None:
    """``text``, or the content it refers to when it is a marker."""
    if text is None or not text.startswith(MARKER):
        return text
    return store.get(text.removeprefix(MARKER))


async def check_in_async(handoff: Handoff, store: PayloadStore) -> Handoff:
    """:func:`check_in` off the event loop (it reads files)."""
    if not handoff.payloads:
        return handoff
    return await asyncio.to_thread(check_in, handoff, store)


async def check_out_async(
    delta: HandoffDelta, store: PayloadStore, inline_bytes: int
) -> HandoffDelta:
    """:func:`check_out` off the event loop (it writes files)."""
    return await asyncio.to_thread(check_out, delta, store, inline_bytes)
