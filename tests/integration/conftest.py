"""Integration tests run against a real Kafka broker: the cluster named by
AGENSBUS_KAFKA_BOOTSTRAP, or else one embedded broker started for the whole session."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.broker import BrokerError, EmbeddedKafka, broker_from_env

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this directory needs a broker, so `-m "not integration"` leaves it out.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the broker under test. A broker that cannot start fails the
    tests that need it, with the reason: a missing broker must not pass as a skipped suite."""
    external = broker_from_env()
    if external is not None:
        yield external
        return
    broker = EmbeddedKafka()
    try:
        broker.start()
    except BrokerError as error:
        message = f"the embedded Kafka broker did not start: {error}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
