"""``agensbus bench learning --through-kafka``: with one task in flight, every arm replayed
through the services reports exactly what the in-process benchmark reports."""

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from services.cli import cli
from tests.e2e.support import small_scenario

ARMS = "fixed,paper,agensbus"


def bench(arguments: list[str], out: Path) -> dict[str, Any]:
    outcome = CliRunner().invoke(
        cli, ["bench", "learning", *arguments, "--json", "--out", str(out)]
    )
    assert outcome.exit_code == 0, outcome.output
    data: dict[str, Any] = json.loads(outcome.stdout)
    assert json.loads((out / "learning.json").read_text()) == data
    assert (out / "curves.png").stat().st_size > 0
    del data["seconds"]  # wall time, the one number allowed to differ
    return data


def test_through_kafka_equals_in_process(kafka_bootstrap: str, tmp_path: Path) -> None:
    scenario = small_scenario(tmp_path, per_class=2)
    arguments = ["--scenario", str(scenario), "--seeds", "1", "--epochs", "2", "--arms", ARMS]
    served = bench([*arguments, "--through-kafka", "--kafka-bootstrap", kafka_bootstrap],
                   tmp_path / "kafka")  # fmt: skip
    assert served == bench(arguments, tmp_path / "engine")
    runs = served["runs"]
    # The arms chose differently, so equal numbers mean each deployment ran its own arm.
    assert len({json.dumps(runs[arm][0]["epochs"]) for arm in ARMS.split(",")}) == 3
    assert (tmp_path / "kafka" / "seed-0" / "logs" / "agensbus" / "router.log").is_file()
