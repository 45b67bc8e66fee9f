"""``agensbus skills``: the skill cards a worker instructs its models with, the shipped
ones and those of a --skills-dir."""

from pathlib import Path
from typing import Any

import click
from rich.padding import Padding

from services.cli._errors import UserError
from services.cli._render import make_console
from services.cli._settings import settings_from
from services.runtime.settings import settings_options
from services.skills import SkillCard, SkillError, Skills, load_skills
from services.skills.load import SHIPPED_DIR

_with_dir = settings_options(("skills_dir",))


@click.group()
def skills() -> None:
    """Skill cards (SKILL.md): the instructions of each role and skill protocol.

    Cards ship with agensbus; a --skills-dir adds cards and replaces shipped ones of the
    same name. The format is in docs/models.md.
    """


def _load(flags: dict[str, Any]) -> Skills:
    settings = settings_from(flags)
    try:
        return load_skills(settings.skills_dir)
    except SkillError as error:
        raise UserError(str(error)) from None


def _origin(card: SkillCard) -> str:
    return "shipped" if Path(card.source).is_relative_to(SHIPPED_DIR) else card.source


@skills.command("list")
@_with_dir
def list_cards(**flags: Any) -> None:
    """List every card: its name, what it instructs (role or role.protocol), where it comes
    from, and its description."""
    console = make_console()
    for card in _load(flags).cards:
        what = card.role.value + (f".{card.protocol}" if card.protocol else "")
        console.print(f"{card.name:<24} {what:<28} {_origin(card)}", soft_wrap=True)
        console.print(Padding(card.description, (0, 0, 0, 4)))


@skills.command("show")
@click.argument("name")
@_with_dir
def show(name: str, **flags: Any) -> None:
    """Print the card NAME as a worker uses it (front matter fields, then instructions)."""
    loaded = _load(flags)
    card = loaded.named(name)
    if card is None:
        names = ", ".join(c.name for c in loaded.cards)
        raise UserError(f"no skill card named {name!r} (cards: {names})")
    fields = [
        ("name", card.name),
        ("description", card.description),
        ("role", card.role.value),
        ("protocol", card.protocol),
        ("output", card.output),
        ("from", _origin(card)),
    ]
    for key, value in fields:
        if value:
            click.echo(f"{key}: {value}")
    click.echo()
    click.echo(card.body)


@skills.command("validate")
@_with_dir
def validate(**flags: Any) -> None:
    """Check every card (exit 2 naming the file and the problem if one is bad)."""
    loaded = _load(flags)
    user = [c for c in loaded.cards if _origin(c) != "shipped"]
    where = f", {len(user)} from {flags.get('skills_dir')}" if flags.get("skills_dir") else ""
    click.echo(
        f"{len(loaded.cards)} skill cards valid ({len(loaded.cards) - len(user)} shipped{where})"
    )
