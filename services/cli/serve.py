"""``agensbus router | worker | learner``: run one service, as a deployment does.

Each service module is imported only when its command runs, so ``agensbus --help`` and the
offline commands do not pay for (or depend on) the Kafka stack.
"""

from collections.abc import Callable
from typing import Any, Literal

import click
from aiokafka.errors import KafkaConnectionError

from services.cli._errors import UserError
from services.cli._extras import require_extra
from services.cli._settings import require_bootstrap, settings_from, with_pipeline
from services.runtime.plugins import PluginConfigError
from services.runtime.service import Service, run_service
from services.runtime.settings import Settings, settings_options
from services.runtime.topics import PartitionsDiffer
from services.runtime.tracing import TracingUnavailable
from services.spec_files import SpecFileError
from services.worker.cells import CellsError

RUNNING = """
\b
Configuration: each flag above, else its AGENSBUS_* variable, else the default shown.
A Kafka bootstrap is required (--kafka-bootstrap or AGENSBUS_KAFKA_BOOTSTRAP).
HTTP: /metrics (Prometheus), /healthz (alive), /readyz (200 once consuming) on
--http-host:--http-port. SIGTERM or Ctrl-C stops fetching, lets in-flight work finish
(at most --graceful-timeout-s), commits and exits 0. Logs are JSON lines on stderr.
"""


def serve(flags: dict[str, Any], build: Callable[[Settings], Service]) -> None:
    """Build the service from flags and environment, and serve until a stop signal."""
    settings = settings_from(flags)
    bootstrap = require_bootstrap(settings)
    try:
        service = build(with_pipeline(settings))
    except (SpecFileError, PluginConfigError, TracingUnavailable, CellsError) as error:
        raise UserError(str(error)) from None
    try:
        run_service(service)
    except KafkaConnectionError as error:
        raise click.ClickException(f"cannot reach Kafka at {bootstrap}: {error}") from None
    except PartitionsDiffer as error:
        raise UserError(str(error)) from None


@click.command("router", epilog=RUNNING)
@settings_options()
def router(**flags: Any) -> None:
    """Run a router: turn tasks into trajectories.

    Consumes tasks and outcomes; for every step picks an action from the newest policy
    snapshot (followed on the policy topic) and publishes a Decision; publishes a
    TrajectoryCompleted when a trajectory ends. Replicas share the --router-group.
    """

    def build(settings: Settings) -> Service:
        from services.router.app import build

        return build(settings)

    serve(flags, build)


def _build_worker(settings: Settings) -> Service:
    if settings.worker_backend == "openai":
        require_extra("openai", "--worker-backend openai")
    from services.worker.app import build

    return build(settings)


def _build_judge(settings: Settings) -> Service:
    if settings.judge_scorer_name == "openai":
        require_extra("openai", "--judge-scorer openai (or --worker-backend openai)")
    from services.judge.app import build

    return build(settings)


@click.command("worker", epilog=RUNNING)
@click.option(
    "--role",
    type=click.Choice(["worker", "judge"]),
    default="worker",
    show_default=True,
    help="worker: execute invoke decisions and publish StepOutcomes (group --worker-group). "
    "judge: the same as `agensbus judge`.",
)
@settings_options()
def worker(role: Literal["worker", "judge"], **flags: Any) -> None:
    """Run an agent worker, or a judge with --role judge.

    A worker executes the cells of the pipeline that decisions invoke (with the
    --worker-backend, an installed agensbus.backends entry point) and echoes the trajectory
    state back in its StepOutcome.
    """
    serve(flags, _build_judge if role == "judge" else _build_worker)


@click.command("judge", epilog=RUNNING)
@settings_options()
def judge(**flags: Any) -> None:
    """Run a judge: score completed trajectories.

    Groups completed trajectories (the rollouts of a task, or peers of a task class), has
    the --judge-scorer (an installed agensbus.judges entry point; by default the one named
    like --worker-backend) score each group side by side, and publishes RewardObserved
    events. Replicas share the --judge-group.
    """
    serve(flags, _build_judge)


@click.command("learner", epilog=RUNNING)
@settings_options()
def learner(**flags: Any) -> None:
    """Run the learner of one --tenant: learn the policy from outcomes.

    Joins completed trajectories with their rewards, backs the hybrid reward up into the
    policy graph and publishes versioned PolicySnapshots (with the input offsets they
    reflect) that routers hot-swap. On restart it resumes from its newest snapshot. With
    --learner-sharded true it is one of the tenant's replicas in its group: each input
    partition it is given is a shard it learns, checkpoints and snapshots apart, and routers
    merge the shards.
    """

    def build(settings: Settings) -> Service:
        from services.learner.app import build

        return build(settings)

    serve(flags, build)
