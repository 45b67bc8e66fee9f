"""``agensbus bench``: measured speed, printed as numbers and ratios."""

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from services.bench.policy import (
    REFERENCE_DECISIONS_PER_S,
    REFERENCE_EDGE_UPDATES_PER_S,
    run_policy_bench,
)
from services.cli._errors import UserError
from services.cli._extras import require_extra
from services.cli._options import scenario_option
from services.cli._settings import KAFKA_FIELDS, settings_from, with_pipeline
from services.cli.demo import replay_progress
from services.policy import PAPER_REWARD, PolicyGraph
from services.runtime.policy_files import PolicyFileError, load_graph
from services.runtime.settings import Settings, settings_options
from services.sim.loader import ScenarioError, load_scenario, shipped_scenarios
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.status import Status

    from services.bench.learning import LearningBench
    from services.bench.router import Measured
    from services.policy.arms import Arm

# A deployment per arm and seed gets a topic prefix of its own.
_REPLAY_KAFKA_FIELDS = tuple(f for f in KAFKA_FIELDS if f != "topic_prefix")


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
@click.option(
    "--saturation",
    is_flag=True,
    help="Drain a backlog of --tasks instead (all in flight; --in-flight is unused): raw "
    "aiokafka echo, FastStream echo, one router, the router at half its drained rate (a "
    "quarter as many tasks, offered at a fixed rate: latency), two router processes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")
@settings_options((*KAFKA_FIELDS, "scenario", "seed"))
def bench_router(
    tasks: int, in_flight: int, timeout_s: float, saturation: bool, as_json: bool, **flags: Any
) -> None:
    """Router throughput and latency against the bus's own limit, on one broker.

    First a no-op echo (consume a record, re-publish it, commit; the router's batch shape
    without its work) gives the bus's records/s and publish-to-echo latency. Then the router
    service runs in this process against a fake instant worker in a child process: decisions/s
    and the latency from the task or outcome a decision answers to the decision, by record
    timestamps. The broker is embedded unless --kafka-bootstrap is given; topics get a fresh
    bench-* prefix.
    """
    from services.bench.router import run_router_bench

    # The router routes the cells the scenario's world answers.
    settings = with_pipeline(settings_from(flags))
    if saturation:
        _saturation(settings, tasks, timeout_s, as_json)
        return
    with Console(stderr=True).status("benchmarking") as status:
        result = run_router_bench(
            settings, tasks=tasks, in_flight=in_flight, timeout_s=timeout_s, progress=_stage(status)
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    where = "embedded Apache Kafka" if result.embedded else result.bootstrap
    _print_rates(
        f"router vs bus: {tasks} tasks, {in_flight} in flight, {where}",
        [("echo", result.echo, "records/s"), ("router", result.router, "decisions/s")],
    )
    click.echo(f"router/echo: {result.ratio:.2f}x")
    click.echo(
        "echo: consume, re-publish, commit, no work (publish to echo); router: the router "
        "service against an instant worker (task or outcome to decision)"
    )
    if result.timed_out:
        click.echo(f"timed out after {timeout_s:.0f} s: only part of the run was measured")


@bench.command("learner")
@click.option(
    "--trajectories",
    default=5_000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Trajectories (each with its reward) in the backlog the learner drains.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1.0, 86_400.0),
    help="Seconds for the whole run; what was backed up by then is reported.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")
@settings_options((*KAFKA_FIELDS, "scenario", "seed"))
def bench_learner(trajectories: int, timeout_s: float, as_json: bool, **flags: Any) -> None:
    """Learner throughput at saturation: trajectories backed up per second, by one learner
    and by two sharded learner replicas.

    A backlog of completed trajectories and their rewards (real ones: run by the in-process
    engine over the scenario's simulated world, scored by its simulated judge, repeated under
    fresh ids) is put on the topics first; then the learner service starts as a child
    process and drains it, snapshots included. Then the same again on fresh topics with two
    replicas sharing the inputs (AGENSBUS_LEARNER_SHARDED). A rate counts from the first
    backup to the last. The broker is embedded unless --kafka-bootstrap is given; topics get
    a fresh bench-* prefix per run, of 4 partitions.
    """
    from services.bench.learner import run_learner_bench

    settings = with_pipeline(settings_from(flags))
    with Console(stderr=True).status("benchmarking") as status:
        result = run_learner_bench(
            settings,
            trajectories=trajectories,
            timeout_s=timeout_s,
            progress=lambda stage: status.update(f"benchmarking: {stage}"),
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    for name, drain in (("1 learner", result.one), ("2 sharded", result.sharded)):
        click.echo(
            f"{name}: {drain.per_s:,.0f} trajectories/s backed up "
            f"({drain.backed_up:,} in {drain.seconds:.2f} s, a backlog of {trajectories:,})"
        )
    click.echo(f"2 sharded/1 learner: {result.ratio:.2f}x")
    if result.timed_out:
        click.echo(f"timed out after {timeout_s:.0f} s: only part of the backlog was backed up")


@bench.command("snapshot")
@click.option(
    "--edges",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Edges of the policy (rounded up to whole nodes of 16 actions).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random graph.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")
def bench_snapshot(edges: int, seed: int, as_json: bool) -> None:
    """Snapshot and restore of a large policy, against the 2 s target.

    Snapshot: graph to policy document to JSON bytes (the learner's path). Restore: the
    bytes validated into a document once, then loaded into a graph (a router's path). Wall
    and CPU seconds of each; the restored graph must write the same bytes again (not timed).
    """
    from services.bench.snapshot import TARGET_S, run_snapshot_bench

    with Console(stderr=True).status(f"benchmarking: a policy of {edges:,} edges"):
        result = run_snapshot_bench(edges, seed)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    ratios = result.ratios
    click.echo(
        f"policy: {result.edges:,} edges, {result.nodes:,} nodes, "
        f"{result.bytes / 1e6:,.1f} MB of JSON"
    )
    click.echo(
        f"snapshot: {result.snapshot_s:.2f} s ({ratios['snapshot_vs_target']:.2f}x the "
        f"{TARGET_S:.0f} s target; {result.snapshot_cpu_s:.2f} s of CPU)"
    )
    click.echo(
        f"restore:  {result.restore_s:.2f} s ({ratios['restore_vs_target']:.2f}x the "
        f"{TARGET_S:.0f} s target; {result.restore_cpu_s:.2f} s of CPU)"
    )
    click.echo(f"round trip writes the same bytes: {'yes' if result.round_trip_equal else 'NO'}")


def _saturation(settings: Settings, tasks: int, timeout_s: float, as_json: bool) -> None:
    from services.bench.saturation import run_saturation_bench

    with Console(stderr=True).status("benchmarking") as status:
        result = run_saturation_bench(
            settings, tasks=tasks, timeout_s=timeout_s, progress=_stage(status)
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    where = "embedded Apache Kafka" if result.embedded else result.bootstrap
    _print_rates(
        f"router at saturation: a backlog of {tasks} tasks, {where}",
        [
            ("raw echo", result.raw_echo, "records/s"),
            ("faststream echo", result.faststream_echo, "records/s"),
            ("router", result.router, "decisions/s"),
            (
                f"router at {result.offered_tasks_per_s:,.0f} tasks/s",
                result.at_load,
                "decisions/s",
            ),
            ("two routers", result.two_routers, "decisions/s"),
        ],
    )
    click.echo(
        f"router/raw echo: {result.ratio:.2f}x; faststream echo/raw echo: "
        f"{result.faststream_ratio:.2f}x; two routers/one: {result.scale_out:.2f}x"
    )
    click.echo(
        "backlog runs: every item in flight at once, rate from the first send to the last "
        "answer; the fixed-rate run offers tasks at half the router's drained rate"
    )
    if result.timed_out:
        click.echo(f"timed out after {timeout_s:.0f} s: only part of the run was measured")


def _stage(status: "Status") -> "Callable[[str], None]":
    """A progress callback that shows the bench's current stage on ``status``."""
    return lambda stage: status.update(f"benchmarking: {stage}")


def _print_rates(title: str, rows: "Sequence[tuple[str, Measured, str]]") -> None:
    """One table of measured paths: rate, latency percentiles and what was measured."""
    table = Table(title=title)
    for header in ("path", "rate", "p50", "p99", "measured"):
        table.add_column(header, justify="left" if header == "path" else "right")
    for name, measured, unit in rows:
        table.add_row(
            name,
            f"{measured.per_s:,.0f} {unit}",
            _ms(measured.p50_ms),
            _ms(measured.p99_ms),
            f"{measured.items:,} in {measured.seconds:.2f} s",
        )
    Console().print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@bench.command("learning")
@scenario_option
@click.option(
    "--seeds",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1_000),
    help="Seeds 0..K-1; every arm meets the same tasks per seed. Intervals need 2 or more.",
)
@click.option(
    "--epochs",
    default=8,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Epochs per run; the plateau is the mean of the last three.",
)
@click.option(
    "--arms",
    default="fixed,noskip,paper,warm,agensbus",
    show_default=True,
    metavar="LIST",
    help="Comma-separated arms: fixed, noskip, paper, warm, agensbus (the recommended, "
    "default arm), agensbus-free, agensbus-warm, or ARM+SWITCH[+SWITCH...] for an arm with "
    "improvements turned on (docs/learning.md).",
)
@click.option(
    "--warm-from",
    default=None,
    metavar="NAME|POLICY",
    help="Where warm arms start from: a scenario (learned on for the same seeds and epochs "
    "with the arm's rules) or a policy file. Default: the other shipped scenario.",
)
@click.option(
    "--through-kafka",
    is_flag=True,
    help="Run every arm and seed through the real services over Kafka (a fresh deployment "
    "each, on an embedded broker unless --kafka-bootstrap names one), as agensbus demo does. "
    "Slow; takes no warm arms and no --shift-at.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1_024),
    default=1,
    show_default=True,
    help="With --through-kafka: tasks in flight at once. 1 gives the in-process numbers.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bench-learning"),
    show_default=True,
    help="Directory for learning.json, the PNG plots and report.md (the tables as a "
    "Markdown page with the command that reproduces it).",
)
@click.option(
    "--shift-at",
    type=click.IntRange(2, 10_000),
    default=None,
    metavar="EPOCH",
    help="Make the world non-stationary: from this epoch on the strong model's answers are "
    "worse and the balanced model costs twice as much; reports how many trajectories each "
    "arm needs to earn 90% of the new optimum's reward again. Default: no shift.",
)
@click.option(
    "--shift-to",
    default=None,
    metavar="NAME|FILE",
    help="With --shift-at: the world changes into this scenario (shipped name or file, on "
    "the same cells) instead of the built-in shift; the per-class tables then refer to it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON on stdout instead of tables.")
@settings_options(_REPLAY_KAFKA_FIELDS)
def bench_learning(
    scenario_name: str,
    seeds: int,
    epochs: int,
    arms: str,
    warm_from: str | None,
    through_kafka: bool,
    concurrency: int,
    out: Path,
    shift_at: int | None,
    shift_to: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Learning quality of policy arms against the oracle, over the same tasks and seeds.

    Per arm and epoch: true quality, judge score, tokens per trajectory, skip share and
    regret, with 95% intervals over seeds; a per-class plateau table (mean of the last three
    epochs, as the paper's Table 3); a warm-start table (as its Table 4) comparing each warm
    arm with the same rules started cold; PNG plots and a JSON file with every number.
    """
    require_extra("reports", "agensbus bench learning (its plots)")
    from services.bench.learning import PLATEAU_EPOCHS, Shift, run_learning_bench, write_plots
    from services.bench.report import REPORT_FILE, learning_report
    from services.policy.arms import arm_named

    try:
        chosen = [arm_named(name.strip()) for name in arms.split(",") if name.strip()]
    except KeyError as error:
        raise UserError(str(error.args[0])) from None
    if not chosen:
        raise UserError("--arms names no arm")
    try:
        scenario = load_scenario(scenario_name)
    except ScenarioError as error:
        raise UserError(str(error)) from None
    source = _warm_source(scenario.name, warm_from) if any(a.warm_weight for a in chosen) else None
    shift = None
    if shift_at is not None:
        if shift_at > epochs:
            raise UserError(f"--shift-at {shift_at} is after the last epoch ({epochs})")
        if shift_to is not None and shift_at > epochs - PLATEAU_EPOCHS + 1:
            raise UserError(
                f"--shift-to: the plateau (the last {PLATEAU_EPOCHS} epochs) must lie after "
                f"the shift: --shift-at at most {epochs - PLATEAU_EPOCHS + 1}"
            )
        after = _shifted_world(scenario_name, scenario, shift_to)
        shift = Shift(shift_at, after, Oracle(after, PAPER_REWARD))
    elif shift_to is not None:
        raise UserError("--shift-to needs --shift-at EPOCH: when the world changes")
    if through_kafka:
        if source is not None or shift is not None:
            raise UserError("--through-kafka takes no warm arms and no --shift-at")
        result = _through_kafka(
            scenario_name, scenario, chosen, seeds, epochs, out, concurrency, flags
        )
    else:
        err = Console(stderr=True)
        with err.status("benchmarking") as status:
            result = run_learning_bench(
                scenario,
                chosen,
                seeds=seeds,
                epochs=epochs,
                source=source,
                shift=shift,
                progress=lambda stage: status.update(f"benchmarking: {stage}"),
                clock=time.perf_counter,
            )
    out.mkdir(parents=True, exist_ok=True)
    data = result.as_dict()
    (out / "learning.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    plots = write_plots(result, out)
    command = _learning_command(
        scenario_name,
        seeds=seeds,
        epochs=epochs,
        arms=[arm.name for arm in chosen],
        warm_from=warm_from,
        through_kafka=through_kafka,
        concurrency=concurrency,
        shift_at=shift_at,
        shift_to=shift_to,
        out=out,
    )
    report = out / REPORT_FILE
    report.write_text(learning_report(result, command, [p.name for p in plots]), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data))
        return
    _print_learning(result)
    written = ", ".join(str(p) for p in (out / "learning.json", *plots, report))
    click.echo(f"wrote {written}", err=True)
    click.echo(f"ran in {result.seconds:.1f} s", err=True)


def _shifted_world(scenario_name: str, scenario: Scenario, shift_to: str | None) -> Scenario:
    """The world after the shift: the scenario ``shift_to`` names, or the built-in shift."""
    from services.bench.learning import scenario_spec, shifted

    if shift_to is None:
        try:
            return shifted(scenario_spec(scenario_name))
        except ValueError as error:  # the shift names variants a custom scenario may lack
            raise UserError(f"cannot shift {scenario.name}: {error}") from None
    try:
        after = load_scenario(shift_to)
    except ScenarioError as error:
        raise UserError(f"--shift-to: {error}") from None
    strangers = sorted(set(after.pool.actions) - set(scenario.pool.actions))
    if strangers:
        raise UserError(
            f"--shift-to {shift_to}: its cells are not {scenario.name}'s "
            f"(actions {', '.join(strangers[:5])} are new)"
        )
    return after


def _learning_command(
    scenario: str,
    *,
    seeds: int,
    epochs: int,
    arms: "Sequence[str]",
    warm_from: str | None,
    through_kafka: bool,
    concurrency: int,
    shift_at: int | None,
    shift_to: str | None,
    out: Path,
) -> str:
    """The command line that runs this benchmark again (connection flags left out)."""
    words = ["agensbus", "bench", "learning", "--scenario", scenario]
    words += ["--seeds", str(seeds), "--epochs", str(epochs), "--arms", ",".join(arms)]
    if warm_from is not None:
        words += ["--warm-from", warm_from]
    if through_kafka:
        words += ["--through-kafka", "--concurrency", str(concurrency)]
    if shift_at is not None:
        words += ["--shift-at", str(shift_at)]
    if shift_to is not None:
        words += ["--shift-to", shift_to]
    words += ["--out", str(out)]
    return shlex.join(words)


def _through_kafka(
    scenario_name: str,
    scenario: Scenario,
    arms: "Sequence[Arm]",
    seeds: int,
    epochs: int,
    out: Path,
    concurrency: int,
    flags: dict[str, Any],
) -> "LearningBench":
    from services.bench.through_kafka import KafkaBench, run_through_kafka
    from services.runtime.broker import BrokerError
    from services.runtime.processes import ServiceFailed

    source = Path(scenario_name)
    config = KafkaBench(
        # The services load it themselves; a file must be found from wherever they run.
        scenario=str(source.resolve()) if source.is_file() else scenario_name,
        out=out,
        epochs=epochs,
        concurrency=concurrency,
        settings=settings_from(flags),
    )
    with replay_progress() as progress:
        try:
            return run_through_kafka(
                config,
                scenario,
                arms,
                seeds=seeds,
                progress=progress,
                stage=progress.status,
                clock=time.perf_counter,
            )
        except (BrokerError, ServiceFailed) as error:
            raise click.ClickException(str(error)) from None


def _warm_source(scenario: str, warm_from: str | None) -> Scenario | PolicyGraph:
    if warm_from is None:
        others = [name for name in shipped_scenarios() if name != scenario]
        if not others:
            raise UserError("warm arms need --warm-from: no other shipped scenario to learn on")
        warm_from = others[0]
    if warm_from.endswith(".json") and Path(warm_from).is_file():
        try:
            return load_graph(warm_from)[1]
        except PolicyFileError as error:
            raise UserError(str(error)) from None
    try:
        return load_scenario(warm_from)
    except ScenarioError as error:
        raise UserError(str(error)) from None


def _print_learning(result: "LearningBench") -> None:
    console = Console()
    summary = Table(title=f"{result.scenario}: {len(result.seeds)} seeds x {result.epochs} epochs")
    for header in (
        "arm",
        "cumulative regret",
        "plateau true quality",
        "plateau judge",
        "tokens/traj (plateau)",
        "tokens/traj (run)",
    ):
        summary.add_column(header, justify="left" if header == "arm" else "right")
    for name, arm in result.arms.items():
        summary.add_row(
            name,
            arm.cumulative_regret.text(1),
            arm.plateau_quality.text(),
            arm.plateau_judge.text(),
            arm.tokens_per_trajectory.text(0),
            arm.run_tokens_per_trajectory.text(0),
        )
    console.print(summary)
    for name, arm in result.arms.items():
        epochs = Table(title=f"{name} per epoch (mean ± 95% half-width)")
        epochs.add_column("epoch", justify="right")
        for metric in arm.per_epoch:
            epochs.add_column(metric.replace("_", " "), justify="right")
        for i in range(result.epochs):
            digits = {"tokens_per_trajectory": 0}
            epochs.add_row(
                str(i + 1),
                *(arm.per_epoch[m][i].text(digits.get(m, 3)) for m in arm.per_epoch),
            )
        console.print(epochs)
    classes = Table(title="plateau true quality per class (* where coordination matters)")
    classes.add_column("class")
    for name in result.arms:
        classes.add_column(name, justify="right")
    for task_class in next(iter(result.arms.values())).per_class:
        mark = " *" if task_class in result.coordination_classes else ""
        classes.add_row(
            task_class + mark,
            *(arm.per_class[task_class].text() for arm in result.arms.values()),
        )
    console.print(classes)
    if result.warm:
        warm = Table(title=f"warm start from {result.warm_source}")
        for header in (
            "warm arm",
            "cold twin",
            "tokens saved (run)",
            "plateau quality delta",
            "saved if at cold plateau from the start",
        ):
            warm.add_column(header, justify="left" if "arm" in header else "right")
        for row in result.warm:
            warm.add_row(
                row.warm,
                row.cold,
                row.savings.text(),
                row.plateau_delta.text(),
                row.savings_at_cold_plateau.text(),
            )
        console.print(warm)
    if result.shift_epoch is not None:
        recovery = Table(title=f"recovery after the shift at epoch {result.shift_epoch}")
        for header in ("arm", "seeds recovered", "trajectories to recover (mean)", "per seed"):
            recovery.add_column(header, justify="left" if header == "arm" else "right")
        for name, arm in result.arms.items():
            done = arm.recovered
            recovery.add_row(
                name,
                f"{len(done)}/{len(arm.recovery)}",
                f"{sum(done) / len(done):.0f}" if done else "-",
                ", ".join("-" if r is None else str(r) for r in arm.recovery),
            )
        console.print(recovery)
    targets = result.targets()
    if targets:
        click.echo(
            "targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items())
        )
