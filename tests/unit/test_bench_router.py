"""The arithmetic of ``agensbus bench router``: which event a decision answers, and the
numbers it reports."""

import json
import math

from services.bench.router import Measured, RouterBenchResult, decision_latencies


def test_a_decision_answers_the_latest_earlier_outcome_else_its_task() -> None:
    tasks = {"a": 1_000, "b": 2_000}
    decisions = [
        ("a", 0, 1_005),  # the first step answers the task
        ("a", 1, 1_020),  # a skip and the invoke after it both answer the outcome of step 0
        ("a", 2, 1_021),
        ("a", 3, 1_032),  # answers the outcome of step 2, not the older one of step 0
        ("b", 0, 2_003),
        ("warmup", 0, 900),  # not a measured trajectory
    ]
    outcomes = [("a", 0, 1_010), ("a", 2, 1_030), ("warmup", 0, 950)]

    assert decision_latencies(tasks, decisions, outcomes) == [5.0, 10.0, 11.0, 2.0, 3.0]


def test_measured_rates_and_percentiles() -> None:
    measured = Measured.of([float(ms) for ms in range(1, 101)], seconds=2.0)

    assert (measured.items, measured.per_s) == (100, 50.0)
    assert measured.p50_ms == 50.5
    assert measured.p99_ms is not None and math.isclose(measured.p99_ms, 99.01)
    nothing = Measured.of([], seconds=0.0)
    assert (nothing.items, nothing.per_s, nothing.p50_ms, nothing.p99_ms) == (0, 0.0, None, None)


def test_the_result_reports_the_ratio_of_router_to_echo() -> None:
    result = RouterBenchResult(
        bootstrap="127.0.0.1:9092",
        embedded=True,
        tasks=10,
        in_flight=4,
        echo=Measured(800, 0.5, 2.0, 5.0),
        router=Measured(70, 0.7, 8.0, 20.0),
        trajectories=10,
        timed_out=False,
    )

    data = json.loads(json.dumps(result.as_dict()))
    assert data["echo"]["per_s"] == 1_600.0
    assert data["router"]["per_s"] == 100.0
    assert data["ratio"] == 100.0 / 1_600.0
    assert (data["trajectories"], data["timed_out"]) == (10, False)
