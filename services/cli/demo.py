"""``agensbus demo``: replay a scenario through the running services and report each arm."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from services.cli._errors import UserError
from services.cli._options import scenario_option
from services.cli._settings import KAFKA_FIELDS, settings_from
from services.runtime.settings import settings_options
from services.sim.engine import POLICIES, PolicyName
from services.sim.loader import ScenarioError, load_scenario

# The demo gives every arm a topic prefix of its own.
_KAFKA_FIELDS = tuple(f for f in KAFKA_FIELDS if f != "topic_prefix")


def parse_arms(text: str) -> tuple[PolicyName, ...]:
    """``fixed,paper`` → the arms in the order given."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    if not arms or any(a not in POLICIES for a in arms):
        raise UserError(
            f"--arms takes a comma-separated list of {', '.join(POLICIES)}; got {text!r}"
        )
    if len(set(arms)) != len(arms):
        raise UserError(f"--arms names an arm twice: {text!r}")
    return tuple(cast(PolicyName, a) for a in arms)


@click.command("demo")
@scenario_option
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=1_000),
    default=8,
    show_default=True,
    help="Epochs to replay; each submits every class's tasks once, in the seeded order.",
)
@click.option(
    "--arms",
    default="fixed,paper",
    show_default=True,
    help="Comma-separated arms, each run on a fresh deployment with that --policy-arm: "
    "fixed (the plan's default variants) and/or paper (the learned policy).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the world, the judge and the task order (as agensbus simulate).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1_024),
    default=8,
    show_default=True,
    help="Tasks in flight at once (submitted and not yet backed up by the learner). "
    "1 reproduces agensbus simulate exactly.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report directory (report.md, metrics.json, plots, service logs). "
    "Default: ./demo-report-<timestamp>.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print metrics.json on stdout instead of tables."
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=1.0, max=3_600.0),
    default=120.0,
    show_default=True,
    help="Give up when nothing comes back from the services for this many seconds.",
)
@click.option(
    "--sim-time-scale",
    type=click.FloatRange(min=0.0, max=10.0),
    default=0.0,
    show_default=True,
    help="Workers sleep each simulated step's latency times this (0: as fast as possible).",
)
@settings_options(_KAFKA_FIELDS)
def demo(
    scenario_name: str,
    epochs: int,
    arms: str,
    seed: int,
    concurrency: int,
    out: Path | None,
    as_json: bool,
    stall_timeout: float,
    sim_time_scale: float,
    **flags: Any,
) -> None:
    """Replay a simulated scenario through the services, over Kafka, and report each arm.

    Per arm a fresh router, two workers, a judge and a learner run as child processes on a
    topic prefix of their own (on an embedded Apache Kafka broker unless --kafka-bootstrap
    or AGENSBUS_KAFKA_BOOTSTRAP names a cluster). The scenario's tasks are submitted epoch
    by epoch as TaskSubmitted events; an epoch ends when every task's trajectory completed,
    was judged and was backed up by the learner. Printed per arm and epoch: true quality,
    judge score, tokens per trajectory, skip share and regret; then the plateau (last three
    epochs) per arm and per class. The report directory holds report.md, metrics.json and
    PNG plots (docs/demo.md explains them).
    """
    from services.demo.report import print_tables, write_report
    from services.demo.run import DemoConfig, run_demo
    from services.runtime.broker import BrokerError
    from services.runtime.processes import ServiceFailed

    try:
        scenario = load_scenario(scenario_name)
    except ScenarioError as error:
        raise UserError(str(error)) from None
    source = Path(scenario_name)
    config = DemoConfig(
        # The services load it themselves; a file must be found from wherever they run.
        scenario=str(source.resolve()) if source.is_file() else scenario_name,
        out=out or Path(f"demo-report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"),
        epochs=epochs,
        arms=parse_arms(arms),
        seed=seed,
        concurrency=concurrency,
        settings=settings_from(flags),
        stall_s=stall_timeout,
        sim_time_scale=sim_time_scale,
    )
    with replay_progress() as progress:
        try:
            result = run_demo(config, scenario, progress)
        except (BrokerError, ServiceFailed) as error:
            raise click.ClickException(str(error)) from None
    data = write_report(result, config.out)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        console = Console()
        # Piped or redirected, rich would fold the wide tables to 80 columns.
        print_tables(result, console if console.is_terminal else Console(width=160))
    click.echo(f"report: {config.out / 'report.md'} ({result.wall_s:.0f} s)", err=True)


class _Lines:
    """Progress as one line per phase (stderr is not a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def status(self, text: str) -> None:
        self.console.print(text)

    def arm(self, arm: str, total: int) -> None:
        self.console.print(f"{arm}: replaying {total} tasks")

    def advance(self, finished: int) -> None:
        pass


class _Bars(_Lines):
    """A progress bar per arm."""

    def __init__(self, bars: Progress) -> None:
        super().__init__(bars.console)
        self.bars = bars
        self.current: TaskID | None = None

    def arm(self, arm: str, total: int) -> None:
        self.current = self.bars.add_task(f"arm {arm}", total=total)

    def advance(self, finished: int) -> None:
        if self.current is not None:
            self.bars.advance(self.current, finished)


@contextmanager
def replay_progress() -> Iterator[_Lines]:
    """Progress on stderr, so that stdout stays clean for --json."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield _Lines(console)
        return
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as bars:
        yield _Bars(bars)
