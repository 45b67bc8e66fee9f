"""The router's Prometheus series, on the service's registry."""

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import Decision
from services.router.core import RouterEvent

# A decision is pure CPU work plus a hand-off to the producer: milliseconds, not minutes.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry, tenants: Sequence[str]) -> None:
        self.decisions = Counter(
            "agensbus_router_decisions_total",
            "Decisions published, by action kind and the reason behind the choice.",
            ["action_kind", "reason"],
            registry=registry,
        )
        self.started = Counter(
            "agensbus_router_trajectories_started_total",
            "Trajectories started from submitted tasks (one per rollout).",
            registry=registry,
        )
        self.completed = Counter(
            "agensbus_router_trajectories_completed_total",
            "Trajectories that ended, by termination.",
            ["termination"],
            registry=registry,
        )
        self.duplicates = Counter(
            "agensbus_router_duplicate_outcomes_total",
            "Outcomes dropped because their (trajectory, step) was already absorbed.",
            registry=registry,
        )
        self.policy_version = Gauge(
            "agensbus_router_policy_version",
            "Version of the policy snapshot in use (0: cold, no snapshot yet).",
            ["tenant"],
            registry=registry,
        )
        self.policy_refused = Counter(
            "agensbus_router_policy_refused_total",
            "Policy records not adopted because they were unusable, by reason.",
            ["reason"],
            registry=registry,
        )
        self.decision_latency = Histogram(
            "agensbus_router_decision_latency_seconds",
            "From receiving a task or outcome to its events being handed to the producer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for tenant in tenants:
            self.policy_version.labels(tenant=tenant).set(0)

    def count(self, events: Sequence[RouterEvent]) -> None:
        for event in events:
            if isinstance(event, Decision):
                self.decisions.labels(
                    action_kind=event.action_kind.value, reason=event.reason.value
                ).inc()
            else:
                self.completed.labels(termination=event.termination.value).inc()
