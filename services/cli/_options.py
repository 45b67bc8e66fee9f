"""Options several commands share, declared once so their meaning cannot drift apart."""

import click

from services.sim import shipped_scenarios

#: ``--scenario NAME|FILE`` into the parameter ``scenario_name``.
scenario_option = click.option(
    "--scenario",
    "scenario_name",
    default="security-advisories",
    show_default=True,
    metavar="NAME|FILE",
    help=f"A shipped scenario ({', '.join(shipped_scenarios())}) or the path of a scenario "
    "YAML file (format: docs/scenarios.md).",
)
