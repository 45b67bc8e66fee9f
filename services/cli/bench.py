"""``agensbus bench``: measured speed, printed as numbers and ratios."""

import json

import click
from rich.console import Console
from rich.table import Table

from services.bench.policy import (
    REFERENCE_DECISIONS_PER_S,
    REFERENCE_EDGE_UPDATES_PER_S,
    run_policy_bench,
)


@click.group()
def bench() -> None:
    """Benchmarks. Each prints what it measured on this machine; nothing is asserted."""


@bench.command("policy")
@click.option(
    "--candidates",
    default=16,
    show_default=True,
    type=click.IntRange(2, 256),
    help="Candidate actions per decision.",
)
@click.option(
    "--nodes",
    default=1_000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Signatures in the benchmark graph.",
)
@click.option(
    "--decisions",
    default=100_000,
    show_default=True,
    type=click.IntRange(1_000, 10_000_000),
    help="Decisions timed per selection path.",
)
@click.option(
    "--batch",
    default=4_096,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Decisions per call of the vectorised selector.",
)
@click.option(
    "--edge-updates",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(10_000, 100_000_000),
    help="Edge updates in the vectorised backup (a multiple of 10,000).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random graph.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")
def bench_policy(
    candidates: int,
    nodes: int,
    decisions: int,
    batch: int,
    edge_updates: int,
    seed: int,
    as_json: bool,
) -> None:
    """Speed of paper-mode selection and of backup, against the reference figures.

    Selection runs the full UCB path (every node past the confidence threshold): one
    decision at a time (the router's path), vectorised over batches, and the router's whole
    decide() step. Backup is timed vectorised over resolved edges and from trajectory states
    (the learner's path, including signature lookups).
    """
    err = Console(stderr=True)
    with err.status("benchmarking") as status:
        result = run_policy_bench(
            candidates=candidates,
            nodes=nodes,
            decisions=decisions,
            batch=batch,
            edge_updates=edge_updates,
            seed=seed,
            progress=lambda stage: status.update(f"benchmarking: {stage}"),
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    table = Table(title=f"policy core: {candidates} candidates, {nodes} nodes")
    table.add_column("path")
    table.add_column("rate", justify="right")
    table.add_column("vs reference", justify="right")
    rows = [
        (
            "select, one decision at a time",
            result.select_decisions_per_s,
            REFERENCE_DECISIONS_PER_S,
            "decisions/s",
        ),
        (
            "select_batch, vectorised",
            result.batch_select_decisions_per_s,
            REFERENCE_DECISIONS_PER_S,
            "decisions/s",
        ),
        (
            "router decide() incl. fold + legal actions",
            result.router_decide_per_s,
            REFERENCE_DECISIONS_PER_S,
            "decisions/s",
        ),
        (
            "backup, vectorised edges",
            result.backup_edge_updates_per_s,
            REFERENCE_EDGE_UPDATES_PER_S,
            "edge updates/s",
        ),
        (
            "backup from trajectory states",
            result.trajectory_backup_edge_updates_per_s,
            REFERENCE_EDGE_UPDATES_PER_S,
            "edge updates/s",
        ),
    ]
    for name, rate, reference, unit in rows:
        table.add_row(name, f"{rate:,.0f} {unit}", f"{rate / reference:.2f}x")
    Console().print(table)
    click.echo(
        f"reference (quoted, not measured here): {REFERENCE_DECISIONS_PER_S:,.0f} "
        f"decisions/s, {REFERENCE_EDGE_UPDATES_PER_S:,.0f} edge updates/s"
    )
