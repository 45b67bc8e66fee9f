"""Prometheus metrics of the worker, on the service's registry."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import Decision, FailureKind, StepOutcome
from schemas.records import StepStatus
from services.policy import CellPool

#: LLM calls take from under a second to minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DIRECTIONS = ("in", "out")
OUTCOME_STATUSES = (StepStatus.SUCCEEDED.value, StepStatus.FAILED.value)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry, pool: CellPool | None = None) -> None:
        """``pool``: the cells and models whose series start at 0."""
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
        variants = [] if pool is None else [v for c in pool.cells.values() for v in c.variants]
        for variant in variants:
            cell, model = variant.cell, variant.model or "none"
            self.latency.labels(cell, model)
            for status in OUTCOME_STATUSES:
                self.executions.labels(cell, model, status)
        for model in {v.model or "none" for v in variants}:
            self.cost.labels(model)
            for direction in DIRECTIONS:
                self.tokens.labels(model, direction)
            for kind in FailureKind:
                self.failures.labels(model, kind.value)

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
