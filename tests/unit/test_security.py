"""Kafka security settings reach every kind of client the services make: the FastStream
broker of each service and the plain aiokafka clients (admin, snapshot replay, CLI tools).
The secret itself never shows in the settings' text forms nor in ``--help``."""

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from faststream.kafka.security import parse_security

from services.cli import cli
from services.runtime.kafka import aiokafka_options, make_broker
from services.runtime.settings import Settings

SECRET = "pw-never-shown-7f3a9c"


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="kafka-1:9093", **values)


def broker_security(configured: Settings) -> dict[str, Any]:
    """What the service's FastStream broker hands its aiokafka clients."""
    broker = make_broker(configured, client_id="agensbus-test")
    return parse_security(broker.specification.security)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_the_service_broker_and_the_plain_clients(
    protocol: str, mechanism: str
) -> None:
    configured = settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc-agensbus",
        kafka_sasl_password=SECRET,
    )
    expected = {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc-agensbus",
        "sasl_plain_password": SECRET,
    }
    for options in (broker_security(configured), aiokafka_options(configured)):
        assert {k: options[k] for k in expected} == expected
        uses_tls = isinstance(options.get("ssl_context"), ssl.SSLContext)
        assert uses_tls == (protocol == "SASL_SSL")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate it signed, made with openssl."""
    directory = tmp_path_factory.mktemp("pki")
    files = {name: directory / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-subj", "/CN=agensbus-test-ca", "-keyout", str(files["ca-key"])),
        *("-out", str(files["ca"])),
    )
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=agensbus-client"),
        *("-keyout", str(files["key"]), "-out", str(directory / "client.csr")),
    )
    openssl(
        *("x509", "-req", "-days", "1", "-in", str(directory / "client.csr")),
        *("-CA", str(files["ca"]), "-CAkey", str(files["ca-key"]), "-CAcreateserial"),
        *("-out", str(files["cert"])),
    )
    return files


def test_tls_with_a_ca_and_a_client_certificate_reaches_every_client(
    pki: dict[str, Path],
) -> None:
    configured = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki["ca"],
        kafka_ssl_certfile=pki["cert"],
        kafka_ssl_keyfile=pki["key"],
    )
    for options in (broker_security(configured), aiokafka_options(configured)):
        assert options["security_protocol"] == "SSL"
        context: ssl.SSLContext = options["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED
        issuers = [dict(n[0] for n in ca["subject"]) for ca in context.get_ca_certs()]
        assert issuers == [{"commonName": "agensbus-test-ca"}]


def test_a_client_key_that_does_not_match_its_certificate_is_refused(
    pki: dict[str, Path],
) -> None:
    # The CA's key with the client's certificate: loading the pair must fail, not pass
    # silently and fail later at the handshake.
    configured = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=pki["cert"],
        kafka_ssl_keyfile=pki["ca-key"],
    )
    with pytest.raises(ssl.SSLError):
        aiokafka_options(configured)


def test_the_password_never_shows_in_the_settings_text_forms() -> None:
    configured = settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password=SECRET)
    for text in (repr(configured), str(configured), configured.model_dump_json()):
        assert SECRET not in text
    assert "**********" in repr(configured)


@pytest.mark.parametrize("command", ["router", "worker", "learner", "up", "submit", "tail"])
def test_help_never_prints_a_configured_password(command: str) -> None:
    result = CliRunner().invoke(
        cli, [command, "--help"], env={"AGENSBUS_KAFKA_SASL_PASSWORD": SECRET}
    )
    assert result.exit_code == 0, result.output
    assert "--kafka-sasl-password" in result.output
    assert SECRET not in result.output
