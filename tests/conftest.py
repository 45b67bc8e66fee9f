"""Fixtures shared by the suites that need a real Kafka broker (integration, e2e): the
cluster named by AGENSBUS_KAFKA_BOOTSTRAP, or else one local broker for the session
(Apache Kafka on the JVM; without one, the fallback broker, with a warning)."""

import warnings
from collections.abc import Iterator

import pytest

from services.runtime.broker import BrokerError, broker_from_env
from services.runtime.local_broker import choose_local_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the broker under test. A broker that cannot start fails the
    tests that need it, with the reason: a missing broker must not pass as a skipped suite."""
    external = broker_from_env()
    if external is not None:
        yield external
        return
    try:
        broker = choose_local_broker(warn=lambda text: warnings.warn(text, stacklevel=2))
        broker.start()
    except BrokerError as error:
        message = f"the embedded Kafka broker did not start: {error}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
