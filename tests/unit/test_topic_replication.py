"""How many copies created topics get: the settings' (3, with min ISR 2, by default), cut to
the cluster's size with a warning."""

import logging

import pytest

from services.runtime.settings import Settings
from services.runtime.topics import replication


def test_a_cluster_of_three_gets_the_defaults_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert replication(Settings(), brokers=3) == (3, 2)
        assert replication(Settings(), brokers=5) == (3, 2)
    assert caplog.records == []


def test_a_smaller_cluster_caps_the_factor_and_the_min_isr_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert replication(Settings(), brokers=1) == (1, 1)
        assert replication(Settings(), brokers=2) == (2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "topics get replication factor 1, not 3: the cluster has 1 broker(s)",
        "topics get replication factor 2, not 3: the cluster has 2 broker(s)",
    ]


def test_chosen_settings_are_kept_when_the_cluster_can_hold_them() -> None:
    chosen = Settings(kafka_replication=5, kafka_min_insync_replicas=3)
    assert replication(chosen, brokers=5) == (5, 3)
    # A min ISR above the factor could never be met: it is the factor at most.
    assert replication(Settings(kafka_replication=2, kafka_min_insync_replicas=3), 3) == (2, 2)
