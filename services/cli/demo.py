"""``agensbus demo``: replay a scenario through the running services and report each arm."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from services.cli._errors import UserError
from services.cli._extras import require_extra
from services.cli._options import scenario_option
from services.cli._settings import KAFKA_FIELDS, pipeline_of, settings_from
from services.policy.arms import deployed_arm
from services.runtime.settings import Settings, settings_options
from services.sim.corpus import CorpusError, corpus_for
from services.sim.loader import ScenarioError, load_scenario
from services.sim.scenario import Scenario

if TYPE_CHECKING:  # the demo's modules are imported when the command runs (start-up time)
    from services.demo.run import DemoConfig
    from services.demo.run import Progress as DemoProgress

# The demo gives every arm a topic prefix of its own.
_KAFKA_FIELDS = tuple(f for f in KAFKA_FIELDS if f != "topic_prefix")

#: Defaults per backend: real models cost money and minutes per trajectory, so a run on
#: them is shorter, learns one arm, and waits longer before calling the services stalled.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "simulated": {"epochs": 8, "arms": "fixed,paper", "stall_timeout": 120.0},
    "openai": {"epochs": 2, "arms": "paper", "stall_timeout": 600.0},
}


def parse_arms(text: str) -> tuple[str, ...]:
    """``fixed,paper`` → the arms in the order given: any arm a deployment can run (its
    ``--policy-arm``)."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    if not arms:
        raise UserError(f"--arms names no arm: {text!r}")
    if len(set(arms)) != len(arms):
        raise UserError(f"--arms names an arm twice: {text!r}")
    for arm in arms:
        try:
            deployed_arm(arm)
        except KeyError as error:
            raise UserError(f"--arms: {error.args[0]}") from None
        except ValueError as error:
            raise UserError(f"--arms: {error}") from None
    return tuple(arms)


@click.command("demo")
@scenario_option
@click.option(
    "--backend",
    type=click.Choice(["simulated", "openai"]),
    default="simulated",
    show_default=True,
    help="simulated: the scenario's world runs the cells (offline, with ground truth). "
    "openai: real models behind AGENSBUS_OPENAI_BASE_URL / AGENSBUS_OPENAI_MODELS_FILE "
    "run them (docs/models.md); the report then has no true quality or regret.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=1_000),
    default=None,
    help="Epochs to replay; each submits every class's tasks once, in the seeded order. "
    "Default: 8 (simulated), 2 (openai).",
)
@click.option(
    "--arms",
    default=None,
    help="Comma-separated arms, each run on a fresh deployment with that --policy-arm: "
    "fixed (the plan's default variants), paper (the paper's learned policy), agensbus, "
    "noskip, agensbus-lean, or ARM+SWITCH as agensbus bench learning takes them. "
    "Default: fixed,paper (simulated), paper (openai).",
)
@click.option(
    "--tasks-per-class",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="Submit only each class's first N tasks per epoch (a cheap try on real models: "
    "1 asks 8 questions per epoch of security-advisories). Default: all.",
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
    default=None,
    help="Give up when nothing comes back from the services for this many seconds. "
    "Default: 120 (simulated), 600 (openai).",
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
    backend: Literal["simulated", "openai"],
    epochs: int | None,
    arms: str | None,
    tasks_per_class: int | None,
    seed: int,
    concurrency: int,
    out: Path | None,
    as_json: bool,
    stall_timeout: float | None,
    sim_time_scale: float,
    **flags: Any,
) -> None:
    """Replay a scenario through the services, over Kafka, and report each arm.

    Per arm a fresh router, two workers, a judge and a learner run as child processes on a
    topic prefix of their own (on an embedded Apache Kafka broker unless --kafka-bootstrap
    or AGENSBUS_KAFKA_BOOTSTRAP names a cluster). The scenario's tasks are submitted epoch
    by epoch as TaskSubmitted events; an epoch ends when every task's trajectory completed,
    was judged and was backed up by the learner. Printed per arm and epoch: true quality,
    judge score, tokens per trajectory, skip share and regret; then the plateau (last three
    epochs) per arm and per class. The report directory holds report.md, metrics.json and
    PNG plots (docs/demo.md explains them).

    With --backend openai the workers run every cell on real models (docs/models.md says
    how to point them at OpenRouter, OpenAI, vLLM or Ollama) and each task asks its question
    from the scenario's document corpus. With no world behind the answers there is no true
    quality or regret: the report gives the judge's score, tokens, cost, skips and how
    trajectories ended, and metrics.json every answer beside the reference answer.
    """
    from services.demo.run import DemoConfig
    from services.runtime.broker import BrokerError
    from services.runtime.processes import ServiceFailed

    require_extra("reports", "agensbus demo (the plots of its report)")
    try:
        scenario = load_scenario(scenario_name)
    except ScenarioError as error:
        raise UserError(str(error)) from None
    try:
        corpus = corpus_for(scenario)
    except CorpusError as error:
        if backend == "openai":
            raise UserError(str(error)) from None
        # The simulated world never reads the questions: the class descriptions will do.
        click.echo(f"warning: {error}; tasks ask their class description", err=True)
        corpus = None
    settings = settings_from(flags)
    if settings.pipeline is None:
        pipeline_of(scenario)  # the services will read it: an inline one stops them all
    defaults = _DEFAULTS[backend]
    if backend == "openai":
        for warning in openai_preflight(settings, scenario):
            click.echo(f"warning: {warning}", err=True)
        if corpus is None:
            click.echo(
                f"warning: scenario {scenario.name} ships no document corpus; every task asks "
                "its class description",
                err=True,
            )
    source = Path(scenario_name)
    config = DemoConfig(
        # The services load it themselves; a file must be found from wherever they run.
        scenario=str(source.resolve()) if source.is_file() else scenario_name,
        out=out or Path(f"demo-report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"),
        epochs=epochs or defaults["epochs"],
        arms=parse_arms(arms or defaults["arms"]),
        seed=seed,
        concurrency=concurrency,
        settings=settings,
        stall_s=stall_timeout or defaults["stall_timeout"],
        sim_time_scale=sim_time_scale,
        backend=backend,
        corpus=corpus,
        per_class=tasks_per_class,
    )
    with replay_progress() as progress:
        try:
            data, show, wall_s = run_and_report(config, scenario, progress)
        except (BrokerError, ServiceFailed) as error:
            raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        console = Console()
        # Piped or redirected, rich would fold the wide tables to 80 columns.
        show(console if console.is_terminal else Console(width=160))
    click.echo(f"report: {config.out / 'report.md'} ({wall_s:.0f} s)", err=True)


def run_and_report(
    config: "DemoConfig", scenario: Scenario, progress: "DemoProgress"
) -> tuple[dict[str, Any], Callable[[Console], None], float]:
    """Run the demo on its backend and write its report: (metrics, how to print the tables,
    wall seconds)."""
    from services.demo import live_report, report
    from services.demo.run import run_demo, run_live_demo

    if config.backend == "openai":
        live = run_live_demo(config, scenario, progress)
        data = live_report.write_report(live, config.out)
        return data, lambda console: live_report.print_tables(live, console), live.wall_s
    result = run_demo(config, scenario, progress)
    data = report.write_report(result, config.out)
    return data, lambda console: report.print_tables(result, console), result.wall_s


def openai_preflight(settings: Settings, scenario: Scenario) -> list[str]:
    """Refuse, before anything starts, a configuration that cannot reach a model: no
    endpoint, a model that resolves to none, a missing key. Returns warnings: model slots of
    the pool that no table maps, which the endpoint receives as model names."""
    require_extra("openai", "--backend openai")
    from services.worker.openai.models import ModelConfigError, load_models, read_model_file

    if settings.openai_base_url is None and settings.openai_models_file is None:
        raise UserError(
            "--backend openai needs an endpoint: set AGENSBUS_OPENAI_BASE_URL (and "
            "AGENSBUS_OPENAI_API_KEY), or a model table in AGENSBUS_OPENAI_MODELS_FILE "
            "(docs/models.md)"
        )
    names = {v.model for cell in scenario.pool.cells.values() for v in cell.variants}
    try:
        table = load_models(settings, names)
        mapped = (
            set(read_model_file(settings.openai_models_file).models)
            if settings.openai_models_file is not None
            else set()
        )
    except ModelConfigError as error:
        raise UserError(" ".join(str(error).split())) from None
    keyless = sorted({spec.key_source for spec in table.models.values() if spec.api_key is None})
    if keyless:
        raise UserError(
            f"--backend openai: no API key in {', '.join(keyless)} (for a local server "
            "without keys, set any non-empty value)"
        )
    unmapped = sorted(n for n in names if n is not None and n not in mapped)
    if not unmapped:
        return []
    return [
        f"model slots {', '.join(unmapped)} are not in a model table: the endpoint receives "
        "them as model names (map them in AGENSBUS_OPENAI_MODELS_FILE, docs/models.md)"
    ]


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
