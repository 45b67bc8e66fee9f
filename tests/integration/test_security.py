"""A configured SASL password never reaches a service's output or its metrics. Each service
runs with SASL against the plaintext test broker at DEBUG: the broker refuses the handshake,
the service must fail cleanly (exit 1, one readable error), and the password must appear
nowhere it wrote."""

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import generate_latest

from services.judge import app as judge_app
from services.learner import app as learner_app
from services.router import app as router_app
from services.runtime.processes import ServiceProcess, ServiceSpec
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.worker import app as worker_app

EXIT_TIMEOUT_S = 60.0


def secret() -> str:
    return f"sasl-secret-{uuid.uuid4().hex}"


def sasl_env(bootstrap: str, password: str) -> dict[str, str]:
    return {
        "AGENSBUS_KAFKA_BOOTSTRAP": bootstrap,
        "AGENSBUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AGENSBUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "AGENSBUS_KAFKA_SASL_USERNAME": "svc-agensbus",
        "AGENSBUS_KAFKA_SASL_PASSWORD": password,
        "AGENSBUS_LOG_LEVEL": "DEBUG",
        "AGENSBUS_TOPIC_PREFIX": f"security-{uuid.uuid4().hex[:8]}.",
    }


COMMANDS = [("router",), ("worker",), ("worker", "--role", "judge"), ("learner",)]


@pytest.mark.parametrize("args", COMMANDS)
def test_a_service_that_cannot_authenticate_fails_cleanly_without_its_password(
    args: tuple[str, ...], kafka_bootstrap: str, tmp_path: Path
) -> None:
    password = secret()
    spec = ServiceSpec("service", args, sasl_env(kafka_bootstrap, password))
    process = ServiceProcess(spec, tmp_path).start()

    code = process.wait(EXIT_TIMEOUT_S, kill_after=True)

    output = process.log_path.read_text()  # its stdout and stderr
    assert code == 1, output
    assert f"Error: cannot reach Kafka at {kafka_bootstrap}" in output
    assert "Traceback" not in output
    assert password not in output


BUILDS: dict[str, Callable[[Settings], Service]] = {
    "router": router_app.build,
    "worker": worker_app.build,
    "judge": judge_app.build,
    "learner": learner_app.build,
}


@pytest.mark.parametrize("name", BUILDS)
def test_a_service_that_cannot_authenticate_keeps_its_password_out_of_metrics_and_logs(
    name: str, kafka_bootstrap: str, capfd: pytest.CaptureFixture[str]
) -> None:
    password = secret()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="svc-agensbus",
        kafka_sasl_password=password,
        log_level="DEBUG",
        http_port=0,
        topic_prefix=f"security-{uuid.uuid4().hex[:8]}.",
    )
    service = BUILDS[name](settings)

    with pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(service.run(), EXIT_TIMEOUT_S))

    out, err = capfd.readouterr()
    assert '"level": "debug"' in err or '"level": "error"' in err
    assert password not in out + err
    assert password not in generate_latest(service.registry).decode()
