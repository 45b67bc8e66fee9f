"""When a router may take traffic: once it has replayed the policy topic up to where it
ended at start, so that its first decisions use the newest policy instead of a cold one."""

from collections.abc import Mapping

from services.router.core import RouterCore


class PolicyCatchUp:
    """Tracks the policy records read against the end offsets seen at start."""

    def __init__(self) -> None:
        self._targets: dict[int, int] | None = None
        self._read: dict[int, int] = {}

    def expect(self, beginnings: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """The offsets to reach, per partition; a partition with nothing in it needs none."""
        self._targets = {p: end for p, end in ends.items() if end > beginnings.get(p, 0)}

    def read(self, partition: int, offset: int) -> None:
        self._read[partition] = max(self._read.get(partition, 0), offset + 1)

    @property
    def measured(self) -> bool:
        return self._targets is not None

    @property
    def topic_was_empty(self) -> bool:
        return self._targets == {}

    def remaining(self) -> int:
        """Records (by offset) still to read before catching up."""
        targets = self._targets or {}
        return sum(max(0, end - self._read.get(p, 0)) for p, end in targets.items())

    def check(self, core: RouterCore) -> tuple[bool, str]:
        """Readiness and what it rests on: caught up with a snapshot, or deliberately cold."""
        if not self.measured:
            return False, "measuring the policy topic"
        remaining = self.remaining()
        if remaining:
            return False, f"replaying the policy topic: {remaining} offsets to go"
        if self.topic_was_empty:
            return True, "cold: the policy topic was empty at start"
        tenants = []
        for tenant in core.tenants:
            version = core.adopted_version(tenant)
            tenants.append(
                f"{tenant} cold (no snapshot)" if version is None else f"{tenant} v{version}"
            )
        return True, f"caught up with the policy topic: {', '.join(tenants)}"
