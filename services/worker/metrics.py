"""Prometheus metrics of the worker, on the service's registry."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import Decision, StepOutcome
from schemas.records import StepStatus

#: LLM calls take from under a second to minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.executions = Counter(
            "agensbus_worker_cell_executions_total",
            "Invoke decisions executed, by cell, model and final status.",
            ["cell", "model", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "agensbus_worker_cell_latency_seconds",
            "Time a cell took, retries included, by cell and model.",
            ["cell", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "agensbus_worker_tokens_total",
            "Tokens spent, by model and direction (in, out).",
            ["model", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "agensbus_worker_cost_usd_total",
            "What the calls cost, in US dollars, by model (0 where the backend has no prices, "
            "as the simulated one).",
            ["model"],
            registry=registry,
        )
        self.retries = Counter("agensbus_worker_retries_total", "Retried calls.", registry=registry)
        self.failures = Counter(
            "agensbus_worker_failures_total",
            "Cell executions that failed after their retries, by model and failure kind.",
            ["model", "kind"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "agensbus_worker_in_flight", "Decisions executing right now.", registry=registry
        )

    def executed(self, decision: Decision, outcome: StepOutcome) -> None:
        """Count what the published outcome of ``decision`` reports."""
        model = decision.model or "none"
        self.executions.labels(decision.cell, model, outcome.status.value).inc()
        self.latency.labels(decision.cell, model).observe(outcome.latency_s)
        self.tokens.labels(model, "in").inc(outcome.tokens_in)
        self.tokens.labels(model, "out").inc(outcome.tokens_out)
        self.cost.labels(model).inc(outcome.cost_usd)
        self.retries.inc(outcome.retries)
        if outcome.status is StepStatus.FAILED:
            kind = outcome.failure_kind.value if outcome.failure_kind else "unknown"
            self.failures.labels(model, kind).inc()
