"""A whole demo: a broker (embedded unless one is given), then per arm a fresh deployment on
its own topic prefix, the scenario replayed through it, and the arm's numbers."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

from services.demo.live import LiveArm, live_arm
from services.demo.replay import EpochRun, Observed, Replay
from services.demo.results import ArmResult, arm_result
from services.demo.stack import Stack, StackConfig
from services.policy import PAPER_REWARD
from services.policy.arms import deployed_arm
from services.runtime.local_broker import choose_local_broker, settings_for
from services.runtime.settings import Settings
from services.sim.corpus import Corpus
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario


def new_run_id() -> str:
    """A topic-safe id that sorts by start time: ``20260101t120000-1a2b3c``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


Backend = Literal["simulated", "openai"]

#: Characters of an arm's name that go into its topic prefix, beside the run id.
_ARM_IN_PREFIX = 40


@dataclass(frozen=True)
class DemoConfig:
    """``scenario`` is what the services load (a shipped name or a file path). ``settings``
    are the demo's own (flags, then ``AGENSBUS_*``): the cluster's address (None: start an
    embedded broker) and security, which the services get too, and the openai backend's
    endpoint settings. With a ``corpus`` every task asks its question and the cells retrieve
    from its documents; ``per_class`` submits only each class's first tasks per epoch."""

    scenario: str
    out: Path
    epochs: int = 8
    arms: tuple[str, ...] = ("fixed", "paper")
    seed: int = 0
    concurrency: int = 8
    settings: Settings = field(default_factory=Settings)
    stall_s: float = 120.0
    sim_time_scale: float = 0.0
    run_id: str = field(default_factory=new_run_id)
    backend: Backend = "simulated"
    corpus: Corpus | None = None
    per_class: int | None = None

    def prefix(self, arm: str) -> str:
        # "+" joins an arm's switches but may not appear in a topic name.
        name = arm.replace("+", "_")
        if len(name) > _ARM_IN_PREFIX:
            # A long list of switches would pass the 100 characters a topic prefix may
            # have; a digest of the whole arm keeps shortened names apart.
            digest = hashlib.blake2b(arm.encode(), digest_size=4).hexdigest()
            name = f"{name[: _ARM_IN_PREFIX - len(digest) - 1]}-{digest}"
        return f"agensbus.demo.{self.run_id}.{name}."


@dataclass(frozen=True)
class DemoResult:
    config: DemoConfig
    scenario: Scenario
    oracle: Oracle
    broker: str
    arms: list[ArmResult]
    wall_s: float


@dataclass(frozen=True)
class LiveDemoResult:
    """A demo on real models: no simulated world, hence no oracle and no true quality."""

    config: DemoConfig
    scenario: Scenario
    broker: str
    arms: list[LiveArm]
    wall_s: float


class Progress(Protocol):
    """What a run reports as it goes; the CLI draws it."""

    def status(self, text: str) -> None:
        """A phase begins (starting a broker, services...)."""

    def arm(self, arm: str, total: int) -> None:
        """An arm's replay begins; ``total`` tasks will finish."""

    def advance(self, finished: int) -> None:
        """``finished`` more tasks were completed, judged and backed up."""


class Quiet:
    """Reports nothing (tests, library use)."""

    def status(self, text: str) -> None:
        pass

    def arm(self, arm: str, total: int) -> None:
        pass

    def advance(self, finished: int) -> None:
        pass


@contextmanager
def kafka(settings: Settings, progress: Progress) -> Iterator[tuple[Settings, str]]:
    """(settings, description) of the given cluster, or of an embedded one for the run."""
    if settings.kafka_bootstrap is not None:
        yield settings, settings.kafka_bootstrap
        return
    progress.status("starting the embedded Kafka broker")
    with choose_local_broker(warn=lambda text: progress.status(f"warning: {text}")) as broker:
        yield settings_for(broker, settings), f"{broker.description} ({broker.bootstrap})"


def run_demo(
    config: DemoConfig, scenario: Scenario, progress: Progress | None = None
) -> DemoResult:
    progress = progress or Quiet()
    began = time.monotonic()
    # One yardstick for every arm, as in ``agensbus bench learning``.
    oracle = Oracle(scenario, PAPER_REWARD)
    arms = []
    with kafka(config.settings, progress) as (settings, described):
        for arm in config.arms:
            arms.append(run_arm(config, settings, scenario, oracle, arm, progress))
    return DemoResult(config, scenario, oracle, described, arms, time.monotonic() - began)


def run_live_demo(
    config: DemoConfig, scenario: Scenario, progress: Progress | None = None
) -> LiveDemoResult:
    """The demo with real models behind the cells: the same deployments and replay, reported
    without ground truth."""
    progress = progress or Quiet()
    began = time.monotonic()
    arms = []
    with kafka(config.settings, progress) as (settings, described):
        for arm in config.arms:
            runs, observed, wall_s = replay_arm(config, settings, scenario, arm, progress)
            arms.append(live_arm(arm, runs, observed, wall_s, deployed_arm(arm).reward))
    return LiveDemoResult(config, scenario, described, arms, time.monotonic() - began)


def stack_config(config: DemoConfig, settings: Settings, arm: str) -> StackConfig:
    return StackConfig(
        bootstrap=str(settings.kafka_bootstrap),
        prefix=config.prefix(arm),
        scenario=config.scenario,
        seed=config.seed,
        policy_arm=arm,
        sim_time_scale=config.sim_time_scale,
        extra_env={**kafka_env(settings), **backend_env(config)},
    )


def run_arm(
    config: DemoConfig,
    settings: Settings,
    scenario: Scenario,
    oracle: Oracle,
    arm: str,
    progress: Progress,
) -> ArmResult:
    runs, observed, wall_s = replay_arm(config, settings, scenario, arm, progress)
    reward = deployed_arm(arm).reward
    return arm_result(arm, scenario, config.seed, runs, observed, oracle, wall_s, reward)


def replay_arm(
    config: DemoConfig, settings: Settings, scenario: Scenario, arm: str, progress: Progress
) -> tuple[list[EpochRun], Observed, float]:
    """Start the arm's services, replay every epoch through them, stop them."""
    deployment = stack_config(config, settings, arm)
    progress.status(f"{arm}: starting router, {deployment.workers} workers, judge, learner")
    with Stack(deployment, config.out / "logs" / arm) as stack:
        replay = Replay(
            settings=settings.model_copy(update={"topic_prefix": deployment.prefix}),
            scenario=scenario,
            seed=config.seed,
            concurrency=config.concurrency,
            stall_s=config.stall_s,
            sync_router=stack.sync_router,
            check=stack.check,
            on_finished=progress.advance,
            corpus=config.corpus,
            per_class=config.per_class,
            with_costs=config.backend == "openai",
        )
        progress.arm(arm, config.epochs * tasks_per_epoch(scenario, config.per_class))
        began = time.monotonic()
        runs, observed = asyncio.run(replay.run(range(1, config.epochs + 1)))
        wall_s = time.monotonic() - began
        progress.status(f"{arm}: stopping the services")
    return runs, observed, wall_s


def tasks_per_epoch(scenario: Scenario, per_class: int | None) -> int:
    if per_class is None:
        return scenario.tasks_per_epoch
    return sum(min(c.count, per_class) for c in scenario.classes.values())


def kafka_env(settings: Settings) -> dict[str, str]:
    """The cluster's security (and replication) settings as ``AGENSBUS_*`` variables for the
    services; the address is each deployment's own."""
    return _settings_env(settings, "kafka_", skip="kafka_bootstrap")


def backend_env(config: DemoConfig) -> dict[str, str]:
    """How the workers execute cells, set either way: a ``AGENSBUS_WORKER_BACKEND`` left in
    the caller's environment must not turn a simulated demo into a paid one. The documents
    directory is for the retrieval cell of the real backend."""
    env: dict[str, str] = {"AGENSBUS_WORKER_BACKEND": config.backend}
    if config.corpus is not None:
        env["AGENSBUS_DOCUMENTS_DIR"] = str(config.corpus.documents_dir)
    if config.backend == "openai":
        env |= _settings_env(config.settings, "openai_")
    return env


def _settings_env(settings: Settings, prefix: str, skip: str = "") -> dict[str, str]:
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if not name.startswith(prefix) or name == skip or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"AGENSBUS_{name.upper()}"] = str(value)
    return env
