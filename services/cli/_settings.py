"""Settings for commands that talk to Kafka: flags, then ``AGENSBUS_*``, then defaults. A bad
value or a missing bootstrap is a user error (exit 2), never a traceback."""

from typing import Any

from pydantic import ValidationError

from services.cli._errors import UserError
from services.runtime.kafka import KafkaNotConfigured, bootstrap_of
from services.runtime.settings import Settings, load_settings
from services.sim.loader import ScenarioError, load_scenario
from services.sim.scenario import Scenario

#: The settings a plain Kafka client needs (address, security, topic names).
KAFKA_FIELDS = (
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "topic_prefix",
)


def settings_from(flags: dict[str, Any]) -> Settings:
    try:
        return load_settings(flags)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "settings"
            where = f"--{name.replace('_', '-')} / AGENSBUS_{name.upper()}"
            problems.append(f"{where}: {item['msg']}")
        raise UserError("; ".join(problems)) from None


def require_bootstrap(settings: Settings) -> str:
    try:
        return bootstrap_of(settings)
    except KafkaNotConfigured as error:
        raise UserError(str(error)) from None


def pipeline_of(scenario: Scenario) -> str:
    """The pipeline ``scenario`` names, as the services can load it."""
    if scenario.pipeline.source == "inline":
        raise UserError(
            f"scenario {scenario.name} writes its cells inline, so it names no pipeline the "
            "services can read: move its cells and plan into a pipeline file, name that in "
            "the scenario ('pipeline: FILE') or in --pipeline / AGENSBUS_PIPELINE "
            "(docs/pipeline.md)"
        )
    return scenario.pipeline.source


def with_pipeline(settings: Settings) -> Settings:
    """``settings`` with the pipeline named: when unset, the one the scenario names, so a
    simulated deployment routes exactly the cells its world simulates."""
    if settings.pipeline is not None:
        return settings
    try:
        scenario = load_scenario(settings.scenario)
    except ScenarioError as error:
        raise UserError(str(error)) from None
    return settings.model_copy(update={"pipeline": pipeline_of(scenario)})
