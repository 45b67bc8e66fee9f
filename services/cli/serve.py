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
from services.cli._settings import require_bootstrap, settings_from
from services.runtime.service import Service, run_service
from services.runtime.settings import Settings, settings_options
from services.runtime.tracing import TracingUnavailable
from services.sim.loader import ScenarioError

_RUNNING = """
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
        service = build(settings)
    except (ScenarioError, TracingUnavailable) as error:
        raise UserError(str(error)) from None
    try:
        run_service(service)
    except KafkaConnectionError as error:
        raise click.ClickException(f"cannot reach Kafka at {bootstrap}: {error}") from None


@click.command("router", epilog=_RUNNING)
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


@click.command("worker", epilog=_RUNNING)
@click.option(
    "--role",
    type=click.Choice(["worker", "judge"]),
    default="worker",
    show_default=True,
    help="worker: execute invoke decisions and publish StepOutcomes (group --worker-group). "
    "judge: score completed trajectories and publish RewardObserved (group --judge-group).",
)
@settings_options()
def worker(role: Literal["worker", "judge"], **flags: Any) -> None:
    """Run an agent worker, or a judge with --role judge.

    A worker executes the cells that decisions invoke (with the --worker-backend) and echoes
    the trajectory state back in its StepOutcome; a judge scores completed trajectories.
    """

    def build(settings: Settings) -> Service:
        from services.worker.app import build

        if settings.worker_backend != "openai":
            return build(settings, role=role)
        require_extra("openai", "--worker-backend openai")
        from services.worker.openai import CONFIG_ERRORS

        try:
            return build(settings, role=role)
        except CONFIG_ERRORS as error:
            raise UserError(str(error)) from None

    serve(flags, build)


@click.command("learner", epilog=_RUNNING)
@settings_options()
def learner(**flags: Any) -> None:
    """Run the learner of one --tenant: learn the policy from outcomes.

    Joins completed trajectories with their rewards, backs the hybrid reward up into the
    policy graph and publishes versioned PolicySnapshots (with the input offsets they
    reflect) that routers hot-swap. On restart it resumes from its newest snapshot.
    """

    def build(settings: Settings) -> Service:
        from services.learner.app import build

        return build(settings)

    serve(flags, build)
