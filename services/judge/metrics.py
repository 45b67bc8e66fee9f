"""Prometheus metrics of the judge, on the service's registry."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from schemas.events import FailureKind, RewardObserved
from services.worker.metrics import DIRECTIONS, LATENCY_BUCKETS

if TYPE_CHECKING:  # the openai package is loaded only where models judge
    from services.worker.openai.judge import JudgeCall

DISAGREEMENT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


class JudgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.groups = Counter(
            "agensbus_judge_groups_scored_total",
            "Groups of trajectories scored.",
            registry=registry,
        )
        self.disagreement = Histogram(
            "agensbus_judge_disagreement",
            "Judges' disagreement per trajectory: 1 - confidence.",
            buckets=DISAGREEMENT_BUCKETS,
            registry=registry,
        )
        self.unscored = Counter(
            "agensbus_judge_unscored_total",
            "Trajectories no judge scored: they got no reward (their join expires in the learner).",
            registry=registry,
        )
        # The LLM judge's calls, by judge model (the simulated judge makes none).
        self.requests = Counter(
            "agensbus_judge_requests_total",
            "Chat requests sent to judge models, retries and corrections included, by model.",
            ["model"],
            registry=registry,
        )
        self.failures = Counter(
            "agensbus_judge_failures_total",
            "Groups a judge model scored none of (its calls failed after retries, or its "
            "answer stayed unreadable), by model and failure kind.",
            ["model", "kind"],
            registry=registry,
        )
        self.abstentions = Counter(
            "agensbus_judge_abstentions_total",
            "Trajectories a judge model gave no usable score for, by model.",
            ["model"],
            registry=registry,
        )
        self.tokens = Counter(
            "agensbus_judge_tokens_total",
            "Tokens the judge models spent, by model and direction (in, out).",
            ["model", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "agensbus_judge_cost_usd_total",
            "What the judge models cost, in US dollars, by model.",
            ["model"],
            registry=registry,
        )
        self.latency = Histogram(
            "agensbus_judge_latency_seconds",
            "Time a judge model took to score a group, retries included, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def expect(self, models: Iterable[str]) -> None:
        """Start the series of these judge models at 0."""
        for model in models:
            self.requests.labels(model)
            self.abstentions.labels(model)
            self.cost.labels(model)
            self.latency.labels(model)
            for direction in DIRECTIONS:
                self.tokens.labels(model, direction)
            for kind in FailureKind:
                self.failures.labels(model, kind.value)

    def scored(self, rewards: list[RewardObserved], unscored: int = 0) -> None:
        self.groups.inc()
        self.unscored.inc(unscored)
        for reward in rewards:
            self.disagreement.observe(1.0 - reward.confidence)

    def called(self, call: "JudgeCall") -> None:
        self.requests.labels(call.model).inc(call.requests)
        if call.failure is not None:
            self.failures.labels(call.model, call.failure.value).inc()
        self.abstentions.labels(call.model).inc(call.abstained)
        self.tokens.labels(call.model, "in").inc(call.tokens_in)
        self.tokens.labels(call.model, "out").inc(call.tokens_out)
        self.cost.labels(call.model).inc(call.cost_usd)
        self.latency.labels(call.model).observe(call.latency_s)
