"""Skill cards: the instructions each cell (and each skill protocol) gives a model, as
SKILL.md files shipped in ``cards/`` and extendable from a user directory."""

from services.skills.card import SkillCard, SkillError, output_of, parse_card
from services.skills.catalog import Skills
from services.skills.load import load_skills, read_cards

__all__ = [
    "SkillCard",
    "SkillError",
    "Skills",
    "load_skills",
    "output_of",
    "parse_card",
    "read_cards",
]
