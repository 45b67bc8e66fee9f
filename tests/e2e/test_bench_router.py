"""``agensbus bench router`` runs end to end on a real broker and prints its numbers. Speed is
never asserted: only that both paths were measured."""

import re

from tests.e2e.conftest import Agensbus

NUMBER = r"[\d,]+(?:\.\d+)?"


def test_bench_router_prints_both_rates_and_their_ratio(agensbus: Agensbus) -> None:
    done = agensbus("bench", "router", "--tasks", "3", "--in-flight", "2", "--timeout", "120")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    echo = re.search(rf"echo\s+│\s+({NUMBER}) records/s\s+│\s+{NUMBER} ms\s+│\s+{NUMBER} ms", out)
    router = re.search(
        rf"router\s+│\s+({NUMBER}) decisions/s\s+│\s+{NUMBER} ms\s+│\s+{NUMBER} ms", out
    )
    assert echo is not None and router is not None, out
    assert float(echo[1].replace(",", "")) > 0 and float(router[1].replace(",", "")) > 0
    # Echo moves 8 records per task; the router decides every step of 3 trajectories.
    assert re.search(r"│\s+24 in \d+\.\d\d s\s+│", out), out
    assert re.search(rf"router/echo: {NUMBER}x", out), out
    assert "timed out" not in out


def test_bench_router_saturation_drains_every_backlog_and_prints_the_ratios(
    agensbus: Agensbus,
) -> None:
    done = agensbus("bench", "router", "--saturation", "--tasks", "4", "--timeout", "240")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for path, unit in (
        ("raw echo", "records/s"),
        ("faststream echo", "records/s"),
        ("router", "decisions/s"),
        (rf"router at {NUMBER} tasks/s", "decisions/s"),
        ("two routers", "decisions/s"),
    ):
        row = re.search(rf"{path}\s+│\s+({NUMBER}) {unit}\s+│", out)
        assert row is not None and float(row[1].replace(",", "")) > 0, (path, out)
    # Echo moves 8 records per task; the latency run offers one task (a quarter of 4).
    assert len(re.findall(r"│\s+32 in \d+\.\d\d s\s+│", out)) == 2, out
    assert re.search(
        rf"router/raw echo: {NUMBER}x; faststream echo/raw echo: {NUMBER}x; "
        rf"two routers/one: {NUMBER}x",
        out,
    ), out
    assert "timed out" not in out
