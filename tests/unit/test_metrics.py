"""The metrics the services derive from their events, and the Kafka monitor's checks, without
a broker: what each counter, gauge and histogram reads after a known sequence of events."""

import asyncio
import logging
import math
from typing import Any, cast

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from schemas.events import Decision, PolicySnapshot, StepOutcome, TrajectoryCompleted
from schemas.records import StepStatus
from services.router.metrics import RouterMetrics, WindowMin
from services.runtime.monitor import KafkaMonitor
from services.worker.metrics import WorkerMetrics
from tests.contract.samples import build_samples
from tests.unit.support_clock import Clock

SAMPLES = build_samples()
DECISION = cast(Decision, SAMPLES["Decision"])
OUTCOME = cast(StepOutcome, SAMPLES["StepOutcome"])
COMPLETED = cast(TrajectoryCompleted, SAMPLES["TrajectoryCompleted"])
SNAPSHOT = cast(PolicySnapshot, SAMPLES["PolicySnapshot"])


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_window_min_is_the_smallest_recent_value_and_nan_when_none() -> None:
    clock = Clock(1000.0)
    window = WindowMin(window_s=60.0, slice_s=10.0, clock=clock)
    assert math.isnan(window.value())
    window.add(0.5)
    window.add(0.9)
    clock.now += 30
    window.add(0.7)
    assert window.value() == 0.5
    clock.now += 35  # 0.5 came 65 s ago: gone; 0.7 stays
    assert window.value() == 0.7
    clock.now += 60
    assert math.isnan(window.value())


def test_router_metrics_follow_decisions_completions_and_adopted_policies() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry, ["acme", "other"])
    assert value(registry, "agensbus_router_policy_timestamp_seconds", tenant="acme") == 0
    assert math.isnan(value(registry, "agensbus_router_min_propensity") or 0.0)

    metrics.started_trajectories(3)
    metrics.count([DECISION, DECISION.model_copy(update={"propensity": 0.25}), COMPLETED])
    metrics.adopted(SNAPSHOT, SNAPSHOT.version)

    assert value(registry, "agensbus_router_trajectories_in_flight") == 2
    assert value(registry, "agensbus_router_min_propensity") == 0.25
    labels = {"action_kind": "invoke", "reason": "graph_recommendation"}
    assert value(registry, "agensbus_router_decisions_total", **labels) == 2
    assert value(registry, "agensbus_router_policy_version", tenant="acme") == 7
    assert (
        value(registry, "agensbus_router_policy_timestamp_seconds", tenant="acme")
        == SNAPSHOT.produced_at.timestamp()
    )
    assert value(registry, "agensbus_router_policy_timestamp_seconds", tenant="other") == 0


def test_worker_metrics_count_cost_failures_by_kind_and_latency_by_model() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    succeeded = OUTCOME.model_copy(
        update={"status": StepStatus.SUCCEEDED, "failure_kind": None, "cost_usd": 0.01}
    )
    unknown = OUTCOME.model_copy(update={"failure_kind": None})

    for outcome in (OUTCOME, succeeded, unknown):
        metrics.executed(DECISION, outcome)

    model = {"model": "claude-haiku"}
    assert value(registry, "agensbus_worker_cost_usd_total", **model) == 0.0042 * 2 + 0.01
    assert value(registry, "agensbus_worker_failures_total", kind="rate_limited", **model) == 1
    assert value(registry, "agensbus_worker_failures_total", kind="unknown", **model) == 1
    assert value(registry, "agensbus_worker_retries_total") == 9
    assert (
        value(registry, "agensbus_worker_cell_latency_seconds_count", cell="verifier", **model) == 3
    )


class StubBroker:
    def __init__(self, answers: bool, topics: list[str]) -> None:
        self.answers = answers
        self.config = self
        self.admin_client = self
        self.topics = topics

    async def ping(self, timeout: float | None) -> bool:
        return self.answers

    async def list_topics(self) -> list[str]:
        return self.topics


def monitor(broker: StubBroker) -> KafkaMonitor:
    return KafkaMonitor(
        "probe",
        CollectorRegistry(),
        cast(KafkaBroker, broker),
        ["t.a", "t.b"],
        list,
        logging.getLogger("test"),
    )


def probed(broker: StubBroker) -> dict[str, Any]:
    checked = monitor(broker)
    assert checked.kafka_check() == (False, "not probed yet")
    asyncio.run(checked.probe())
    return {"kafka": checked.kafka_check(), "topics": checked.topics_check()}


def test_kafka_and_topics_checks_say_what_is_wrong() -> None:
    assert probed(StubBroker(answers=False, topics=[])) == {
        "kafka": (False, "no answer from the broker within 5 s"),
        "topics": (False, "unknown: the broker does not answer"),
    }
    assert probed(StubBroker(answers=True, topics=["t.b", "other"]))["topics"] == (
        False,
        "missing: t.a",
    )
    assert probed(StubBroker(answers=True, topics=["t.a", "t.b"])) == {
        "kafka": (True, "the broker answers"),
        "topics": (True, "all 2 present"),
    }
