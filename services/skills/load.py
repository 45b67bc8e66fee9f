"""Reading skill cards: the shipped ones and, optionally, a user directory. Every card is a
file named SKILL.md, usually one directory per card (``cards/solver/SKILL.md``)."""

from functools import cache
from pathlib import Path

from services.skills.card import SkillCard, SkillError, parse_card
from services.skills.catalog import Skills

CARD_FILE = "SKILL.md"
SHIPPED_DIR = Path(__file__).with_name("cards")


def read_cards(directory: Path) -> list[SkillCard]:
    """Every SKILL.md under ``directory``, in path order; raises :class:`SkillError`."""
    if not directory.is_dir():
        raise SkillError(None, f"directory {directory} does not exist")
    paths = sorted(directory.rglob(CARD_FILE))
    if not paths:
        raise SkillError(None, f"directory {directory} holds no {CARD_FILE} file")
    return [parse_card(_text(path), str(path)) for path in paths]


def load_skills(user_dir: Path | None = None) -> Skills:
    """The shipped cards, extended and overridden by those in ``user_dir``."""
    user = read_cards(user_dir) if user_dir is not None else []
    return Skills.merged(_shipped(), user)


@cache
def _shipped() -> tuple[SkillCard, ...]:
    return tuple(read_cards(SHIPPED_DIR))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SkillError(str(path), "not UTF-8 text") from None
    except OSError as error:
        raise SkillError(str(path), f"cannot read it ({error.strerror})") from None
