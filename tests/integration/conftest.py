"""Integration tests run against a real Kafka broker (the ``kafka_bootstrap`` fixture of
tests/conftest.py)."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this directory needs a broker, so `-m "not integration"` leaves it out.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
