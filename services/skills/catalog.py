"""The cards a worker uses: the shipped ones, extended and overridden by name by a user's.

A card instructs a role, or one skill protocol of a role (``role: solver`` with
``protocol: concise``). After merging, each (role, protocol) has exactly one card, and
every role has a card without a protocol, which every cell of that role starts from.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.records import Role
from services.policy import CellPool
from services.skills.card import SkillCard, SkillError


@dataclass(frozen=True)
class Skills:
    cards: tuple[SkillCard, ...]

    @classmethod
    def merged(cls, shipped: Sequence[SkillCard], user: Sequence[SkillCard] = ()) -> "Skills":
        """``user`` cards replace shipped cards of the same name and add the others;
        raises :class:`SkillError` on duplicate names or two cards for one protocol."""
        by_name = _unique(shipped)
        by_name.update(_unique(user))
        cards = tuple(sorted(by_name.values(), key=lambda c: (c.role.value, c.protocol or "")))
        by_key: dict[tuple[Role, str | None], SkillCard] = {}
        for card in cards:
            other = by_key.setdefault(card.key, card)
            if other is not card:
                raise SkillError(
                    card.source,
                    f"card {card.name!r} instructs {_describe(*card.key)}, as card "
                    f"{other.name!r} ({other.source}) does; give it the name {other.name!r} "
                    "to replace it",
                )
        for role in Role:
            if (role, None) not in by_key:
                # Shipped cards cover every role: a user card replaced one with another kind.
                replaced = [c.source for c in user if c.name == role.value]
                raise SkillError(
                    replaced[0] if replaced else None,
                    f"no card left for role {role.value} (a card with role: {role.value} "
                    "and no protocol)",
                )
        return cls(cards)

    def named(self, name: str) -> SkillCard | None:
        return next((c for c in self.cards if c.name == name), None)

    def card(self, role: Role, protocol: str | None = None) -> SkillCard:
        """The card of ``role`` (``protocol`` None) or of one of its protocols."""
        for card in self.cards:
            if card.key == (role, protocol):
                return card
        raise KeyError(f"no skill card for {_describe(role, protocol)}")

    def instructions(self, role: Role, protocol: str | None) -> list[str]:
        """The bodies a cell of ``role`` running ``protocol`` is instructed with."""
        bodies = [self.card(role).body]
        if protocol:
            bodies.append(self.card(role, protocol).body)
        return bodies

    def check(self, pool: CellPool) -> None:
        """Every protocol the pool's variants name has a card; raises :class:`SkillError`."""
        covered = {c.key for c in self.cards}
        missing = sorted(
            {
                _describe(cell.role, v.protocol)
                for cell in pool.cells.values()
                for v in cell.variants
                if v.protocol and (cell.role, v.protocol) not in covered
            }
        )
        if missing:
            raise SkillError(
                None,
                f"no card for {', '.join(missing)}, which the pool's variants use (add one "
                "with --skills-dir)",
            )


def _unique(cards: Iterable[SkillCard]) -> dict[str, SkillCard]:
    by_name: dict[str, SkillCard] = {}
    for card in cards:
        other = by_name.setdefault(card.name, card)
        if other is not card:
            raise SkillError(card.source, f"duplicate name {card.name!r}, also in {other.source}")
    return by_name


def _describe(role: Role, protocol: str | None) -> str:
    return f"protocol {protocol} of role {role.value}" if protocol else f"role {role.value}"
