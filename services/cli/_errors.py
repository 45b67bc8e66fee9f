"""User mistakes end with a one-line message and exit code 2, never a traceback."""

import sys

import click
from pydantic import ValidationError


class UserError(click.ClickException):
    """A problem with what the user gave us (a file, a flag value)."""

    exit_code = 2


def describe_validation(error: ValidationError, source: str) -> str:
    """One line per problem: where in the input, and what is wrong."""
    lines = [f"{source} is not valid:"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def run_cli(group: click.Group) -> None:
    try:
        group.main(prog_name="agensbus", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
