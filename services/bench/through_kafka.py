"""``agensbus bench learning --through-kafka``: every arm and seed replayed through a fresh
deployment of the real services, with ``agensbus demo``'s machinery, and reported as the
in-process benchmark reports its runs.

Each (arm, seed) gets a deployment of its own (its own topic prefix, consumer groups and
learner, so nothing learned leaks between runs) started with ``AGENSBUS_POLICY_ARM`` set to
the arm's name, which the router and learner resolve through the same ``Arm`` the engine
runs. With ``concurrency`` 1 every task is routed with the policy learned from all earlier
ones, so the report equals the in-process one number for number (its wall time aside).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.bench.learning import LearningBench, Run, RunTally, run_learning_bench
from services.demo.results import ArmResult
from services.demo.run import DemoConfig, Progress, kafka, new_run_id, run_arm
from services.policy.arms import Arm
from services.runtime.settings import Settings
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario


@dataclass(frozen=True)
class KafkaBench:
    """``scenario`` is what the services load (a shipped name or a file path); ``settings``
    hold the cluster's address (None: an embedded broker for the run) and security."""

    scenario: str
    out: Path
    epochs: int
    concurrency: int = 1
    settings: Settings = field(default_factory=Settings)
    stall_s: float = 120.0
    run_id: str = field(default_factory=new_run_id)

    def demo(self, seed: int) -> DemoConfig:
        """The demo configuration of one seed: a run id of its own gives each (arm, seed)
        its own topic prefix; logs go to ``<out>/seed-<seed>/logs/<arm>/``."""
        return DemoConfig(
            scenario=self.scenario,
            out=self.out / f"seed-{seed}",
            epochs=self.epochs,
            seed=seed,
            concurrency=self.concurrency,
            settings=self.settings,
            stall_s=self.stall_s,
            run_id=f"{self.run_id}-s{seed}",
        )


def as_run(result: ArmResult, seed: int) -> Run:
    """The benchmark's run from a replayed arm, summed in the engine's (submission) order."""
    totals = RunTally()
    for record in result.records:
        totals.add(record)
    return totals.run(result.arm, seed, result.epochs)


def run_through_kafka(
    config: KafkaBench,
    scenario: Scenario,
    arms: Sequence[Arm],
    *,
    seeds: int,
    progress: Progress,
    stage: Callable[[str], None],
    clock: Callable[[], float],
) -> LearningBench:
    """``run_learning_bench`` with every run replayed through the services; ``stage`` names
    the (arm, seed) starting, ``progress`` follows its deployment and tasks."""
    with kafka(config.settings, progress) as (settings, _):

        def runner(arm: Arm, seed: int, oracle: Oracle) -> Run:
            demo = config.demo(seed)
            result = run_arm(demo, settings, scenario, oracle, arm.name, progress)
            return as_run(result, seed)

        return run_learning_bench(
            scenario,
            arms,
            seeds=seeds,
            epochs=config.epochs,
            source=None,
            progress=stage,
            clock=clock,
            runner=runner,
        )
