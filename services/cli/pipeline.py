"""``agensbus pipeline``: check and show pipeline files before a deployment reads them."""

import click
from rich import box
from rich.table import Table

from services.cli._errors import UserError
from services.cli._render import echo_json, make_console, print_line
from services.pipeline import PipelineError, load_pipeline
from services.policy.pipeline import Pipeline


@click.group()
def pipeline() -> None:
    """Check pipeline files (the cells a deployment routes; docs/pipeline.md)."""


def pipeline_or_exit(name_or_path: str) -> Pipeline:
    try:
        return load_pipeline(name_or_path)
    except PipelineError as error:
        raise UserError(str(error)) from None


def describe(found: Pipeline) -> dict[str, object]:
    pool, defaults = found.pool, found.baseline
    return {
        "name": found.name,
        "source": found.source,
        "cells": [
            {
                "cell": name,
                "role": cell.role.value,
                "variants": [v.action for v in cell.variants],
                "default": defaults[name],
                "protected": name in pool.protected,
            }
            for name, cell in pool.cells.items()
        ],
        "plans": {regime.value: list(plan) for regime, plan in pool.plans.items()},
        "budget": found.budget.model_dump(),
        "classes": sorted(found.classes),
    }


@pipeline.command("validate")
@click.argument("name_or_file", metavar="NAME|FILE")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def validate(name_or_file: str, as_json: bool) -> None:
    """Check a pipeline file and show what it routes.

    NAME|FILE is a shipped pipeline or a YAML file. Every problem is one line,
    FILE: LOCATION: MESSAGE, and the exit code is 2; a valid file prints its cells
    (the default variant first), plans, protected cells, budget and task classes.
    """
    found = pipeline_or_exit(name_or_file)
    if as_json:
        echo_json(describe(found))
        return
    console = make_console()
    pool = found.pool
    cells = Table(title=f"pipeline {found.name}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("cell", "role", "variants (first = default)", "protected"):
        cells.add_column(column, overflow="fold")
    for name, cell in pool.cells.items():
        actions = ", ".join(v.action for v in cell.variants)
        cells.add_row(name, cell.role.value, actions, "yes" if name in pool.protected else "")
    console.print(cells)
    plans = {regime.value: plan for regime, plan in pool.plans.items()}
    if len(set(plans.values())) == 1:
        plans = {"every regime": next(iter(plans.values()))}
    for regime, plan in plans.items():
        print_line(console, f"plan ({regime})", " → ".join(plan), width=26)
    budget = found.budget
    print_line(
        console,
        "budget",
        f"{budget.max_steps} steps, {budget.max_tokens} tokens per trajectory",
        width=26,
    )
    print_line(console, "task classes", ", ".join(found.classes) or "none", width=26)
