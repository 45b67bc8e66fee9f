"""``agensbus bench``: measured speed, printed as numbers and ratios."""

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from services.bench.policy import (
    REFERENCE_DECISIONS_PER_S,
    REFERENCE_EDGE_UPDATES_PER_S,
    run_policy_bench,
)
from services.cli._settings import KAFKA_FIELDS, settings_from
from services.runtime.settings import settings_options


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


@bench.command("router")
@click.option(
    "--tasks",
    default=500,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Trajectories routed in the measured run; echo moves 8 records per task.",
)
@click.option(
    "--in-flight",
    default=32,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Trajectories (records, for echo) kept in flight at once.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1.0, 86_400.0),
    help="Seconds for the whole run; what finished by then is reported.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")
@settings_options((*KAFKA_FIELDS, "scenario", "seed"))
def bench_router(tasks: int, in_flight: int, timeout_s: float, as_json: bool, **flags: Any) -> None:
    """Router throughput and latency against the bus's own limit, on one broker.

    First a no-op echo (consume a record, re-publish it, commit; the router's batch shape
    without its work) gives the bus's records/s and publish-to-echo latency. Then the router
    service runs in this process against a fake instant worker in a child process: decisions/s
    and the latency from the task or outcome a decision answers to the decision, by record
    timestamps. The broker is embedded unless --kafka-bootstrap is given; topics get a fresh
    bench-* prefix.
    """
    from services.bench.router import run_router_bench

    settings = settings_from(flags)
    err = Console(stderr=True)
    with err.status("benchmarking") as status:
        result = run_router_bench(
            settings,
            tasks=tasks,
            in_flight=in_flight,
            timeout_s=timeout_s,
            progress=lambda stage: status.update(f"benchmarking: {stage}"),
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    where = "embedded Apache Kafka" if result.embedded else result.bootstrap
    table = Table(title=f"router vs bus: {tasks} tasks, {in_flight} in flight, {where}")
    for header in ("path", "rate", "p50", "p99", "measured"):
        table.add_column(header, justify="left" if header == "path" else "right")
    for name, measured, unit in (
        ("echo", result.echo, "records/s"),
        ("router", result.router, "decisions/s"),
    ):
        table.add_row(
            name,
            f"{measured.per_s:,.0f} {unit}",
            _ms(measured.p50_ms),
            _ms(measured.p99_ms),
            f"{measured.items:,} in {measured.seconds:.2f} s",
        )
    Console().print(table)
    click.echo(f"router/echo: {result.ratio:.2f}x")
    click.echo(
        "echo: consume, re-publish, commit, no work (publish to echo); router: the router "
        "service against an instant worker (task or outcome to decision)"
    )
    if result.timed_out:
        click.echo(f"timed out after {timeout_s:.0f} s: only part of the run was measured")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
