"""The pieces of ``bench learning --through-kafka`` that need no broker: a replayed arm
becomes the engine's run exactly, and the benchmark reports whatever its runner ran."""

import time
from pathlib import Path

import pytest

from services.bench.learning import Run, run_arm, run_learning_bench
from services.bench.through_kafka import KafkaBench, as_run
from services.demo.results import ArmResult
from services.policy import PAPER_REWARD
from services.policy.arms import Arm, arm_named
from services.sim.engine import Engine, TrajectoryRecord
from services.sim.loader import load_scenario
from services.sim.oracle import Oracle

SCENARIO = load_scenario("security-advisories")
ORACLE = Oracle(SCENARIO, PAPER_REWARD)


def test_a_replayed_arm_sums_to_the_engines_run() -> None:
    arm = arm_named("agensbus")
    expected, _ = run_arm(SCENARIO, arm, 1, 2, ORACLE)
    # The records the demo would rebuild from the services' events, in submission order.
    engine = Engine(SCENARIO, arm.setup(SCENARIO, 1), seed=1, reward=arm.reward, oracle=ORACLE)
    records: list[TrajectoryRecord] = []
    reports = engine.run(2, on_trajectory=records.append)
    n = len(records)
    replayed = ArmResult(n, n, n, n, n, 1.0, [0.5, 0.5], "agensbus", reports, records, 0, 0)
    assert as_run(replayed, 1) == expected


def test_the_report_is_made_of_what_the_runner_ran() -> None:
    ran: list[tuple[str, int]] = []

    def runner(arm: Arm, seed: int, oracle: Oracle) -> Run:
        ran.append((arm.name, seed))
        return run_arm(SCENARIO, arm, seed, 1, oracle)[0]

    arms = [arm_named("fixed"), arm_named("paper")]
    served = run_learning_bench(
        SCENARIO, arms, seeds=2, epochs=1, source=None, clock=time.perf_counter, runner=runner
    ).as_dict()
    engine = run_learning_bench(
        SCENARIO, arms, seeds=2, epochs=1, source=None, clock=time.perf_counter
    ).as_dict()
    assert ran == [("fixed", 0), ("fixed", 1), ("paper", 0), ("paper", 1)]
    del served["seconds"], engine["seconds"]
    assert served == engine
    with pytest.raises(ValueError, match="warm"):
        run_learning_bench(
            SCENARIO, [arm_named("warm")], seeds=1, epochs=1, source=None,
            clock=time.perf_counter, runner=runner,
        )  # fmt: skip


def test_every_seed_gets_its_own_topics_and_logs() -> None:
    config = KafkaBench(scenario="security-advisories", out=Path("out"), epochs=1)
    first, second = config.demo(0), config.demo(1)
    assert first.prefix("agensbus") != second.prefix("agensbus")
    assert first.prefix("paper+softmax").endswith(".paper_softmax.")
    assert (first.seed, second.seed, first.concurrency) == (0, 1, 1)
    assert second.out.name == "seed-1"
