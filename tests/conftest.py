"""Fixtures shared by the suites that need a real Kafka broker (integration, e2e): the
cluster named by AGENSBUS_KAFKA_BOOTSTRAP, or else one local broker for the session
(Apache Kafka on the JVM; without one, the fallback broker, with a warning); and the
Hypothesis profile of every suite."""

import os
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import settings

from services.runtime.broker import BrokerError, EmbeddedKafka, broker_from_env
from services.runtime.local_broker import choose_local_broker

# Hypothesis fails an example that runs longer than 200 ms by default: a timed assertion,
# which a shared, loaded machine breaks at random. Speed is the benchmarks' business.
settings.register_profile("agensbus", deadline=None)
settings.load_profile("agensbus")

#: What the session's broker cannot do, as the setting that turns it off.
IDEMPOTENCE_ENV = "AGENSBUS_KAFKA_IDEMPOTENCE"


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
    # The fallback has no idempotent producers: every service and client of the session, in
    # this process or started by it, is told so the way a user would tell it.
    unsuited = {} if isinstance(broker, EmbeddedKafka) else {IDEMPOTENCE_ENV: "false"}
    os.environ.update(unsuited)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        for name in unsuited:
            os.environ.pop(name, None)
