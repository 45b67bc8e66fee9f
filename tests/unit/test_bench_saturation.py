"""The arithmetic of ``agensbus bench router --saturation``: the offered load of the latency
run, the ratios it prints and its JSON."""

import json
from dataclasses import replace

from services.bench.router import Measured
from services.bench.saturation import SaturationResult, load_tasks, offered_tasks_per_s


def test_the_offered_load_is_a_share_of_the_drained_decisions_in_tasks() -> None:
    # 800 decisions of 100 trajectories in 2 s: 400 decisions/s, 8 decisions a task.
    drained = Measured(800, 2.0, 10.0, 30.0)

    assert offered_tasks_per_s(drained, 100, 0.5) == 25.0
    assert offered_tasks_per_s(drained, 100, 1.0) == 50.0
    assert offered_tasks_per_s(Measured(0, 2.0, None, None), 100, 0.5) == 0.0
    assert offered_tasks_per_s(drained, 0, 0.5) == 0.0


def test_the_latency_run_offers_a_quarter_of_the_backlog_and_never_nothing() -> None:
    assert load_tasks(20_000) == 5_000
    assert load_tasks(3) == 1
    assert load_tasks(1) == 1


def test_the_result_reports_router_over_raw_echo_and_the_scale_out() -> None:
    result = SaturationResult(
        bootstrap="127.0.0.1:9092",
        embedded=True,
        tasks=100,
        raw_echo=Measured(8_000, 2.0, 50.0, 90.0),
        faststream_echo=Measured(8_000, 4.0, 80.0, 120.0),
        router=Measured(800, 0.5, 20.0, 40.0),
        offered_tasks_per_s=100.0,
        at_load=Measured(200, 1.0, 3.0, 9.0),
        two_routers=Measured(800, 0.25, 15.0, 30.0),
        timed_out=False,
    )

    assert result.ratio == 1_600.0 / 4_000.0
    assert result.faststream_ratio == 0.5
    assert result.scale_out == 2.0
    data = json.loads(json.dumps(result.as_dict()))
    assert data["raw_echo"]["per_s"] == 4_000.0
    assert data["two_routers"]["per_s"] == 3_200.0
    assert data["at_load"]["p99_ms"] == 9.0
    assert (data["ratio"], data["faststream_ratio"], data["scale_out"]) == (0.4, 0.5, 2.0)
    nothing = replace(result, raw_echo=Measured(0, 0.0, None, None))
    assert nothing.ratio == 0.0
