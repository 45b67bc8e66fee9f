"""Output helpers shared by the commands: rich for people, plain JSON for machines."""

import json
from collections.abc import Sequence

import click
from rich.console import Console


def make_console() -> Console:
    # Built per call so it writes to whatever stdout is current (tests swap it).
    return Console(highlight=False)


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


def print_line(console: Console, label: str, text: str, *, width: int = 11) -> None:
    """``label`` padded to ``width``, then ``text``; soft-wrapped because a signature or a
    command line is worth more whole than folded at the terminal's width."""
    console.print(f"{label:<{width}}{text}", soft_wrap=True)


def listing(problems: Sequence[str], most: int = 20) -> str:
    """Problems one per indented line, at most ``most`` of them and a count of the rest."""
    shown = [f"  {p}" for p in problems[:most]]
    if len(problems) > most:
        shown.append(f"  (+{len(problems) - most} more)")
    return "\n".join(shown)
