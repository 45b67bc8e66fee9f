"""The off-policy gate on the real broker: a router in process with the gate on, a fake
worker executing its decisions in the simulated world, and snapshots whose gate figures are
estimated on the decisions and completions the router logged to its topics. A snapshot with
no figures and a deliberately bad one (a learned graph rewritten to skip every cell it can,
without the class paths its action veto would read) are refused with their reasons in the
router's /metrics over HTTP; a good one is adopted."""

import asyncio
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import Decision, PolicySnapshot, RewardObserved, TaskSubmitted
from schemas.policy_file import GateFigures
from schemas.topics import topic_of
from services.policy import PolicyGraph
from services.policy.arms import arm_named
from services.policy.floor import ClassFloor
from services.policy.gate import GateWindow, gate_figures
from services.policy.ope import TargetPolicy
from services.router.core import RouterCore, RouterEvent
from services.runtime.codec import encode
from services.runtime.kafka import aiokafka_options
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.sim import World
from services.sim.engine import Engine, epoch_tasks
from services.sim.judge import SimulatedJudge
from tests.integration.support_broker import run, until
from tests.integration.support_learner import (
    learner_settings,
    metric,
    running,
    until_snapshot,
)
from tests.integration.support_router import SCENARIO, Loop
from tests.unit.support_router import logged

ARM = arm_named("agensbus+explore")
SETUP = ARM.setup(SCENARIO, 0)


def settings_for(bootstrap: str) -> Settings:
    run_id = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"gate-{run_id}.",
        router_group=f"gate-{run_id}",
        http_port=0,
        graceful_timeout_s=5.0,
        policy_arm=ARM.name,
        gate_enabled=True,
        gate_tolerance=0.0,
        gate_min_trajectories=40,
    )


def skipping(graph: PolicyGraph) -> PolicyGraph:
    """``graph`` with every skip it tried made to look excellent, and its classes' paths
    dropped (else its action veto withholds the skips they proved bad): a policy that
    skips."""
    bad = PolicyGraph.from_document(graph.to_document())
    bad.classes = {name: ClassFloor(f.baseline, f.deviated) for name, f in bad.classes.items()}
    skips = [
        (node.signature, action)
        for node in graph.to_document().nodes
        for action in node.edges
        if action.startswith("skip:")
    ]
    for _ in range(30):
        ones = [1.0] * len(skips)
        bad.backup(bad.batch([(s, a, False) for s, a in skips], ones, [0.0] * len(skips)))
    return bad


def snapshot(graph: PolicyGraph, version: int, figures: GateFigures | None) -> PolicySnapshot:
    document = graph.to_document(version=version, fold=SETUP.fold, selection=SETUP.selection)
    return PolicySnapshot(version=version, policy=document, gate=figures)


def scrape(loop: Loop) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{loop.service.http.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_bad_snapshot_is_refused_and_a_good_one_adopted(kafka_bootstrap: str) -> None:
    tasks = epoch_tasks(SCENARIO, 0, 1)
    # What the learner would have learned in this world, and the reward model of both
    # estimates: a graph fit on this world's rewards, not on what a snapshot claims.
    learned = Engine(SCENARIO, SETUP, 0, ARM.reward)
    learned.run(3)
    good, bad = learned.graph, skipping(learned.graph)

    async def scenario() -> None:
        loop = Loop(settings_for(kafka_bootstrap))
        async with loop.running():
            await loop.ready()
            for task_id, task_class in tasks:
                submitted = TaskSubmitted(
                    task_id=task_id,
                    goal=task_class.description,
                    features=task_class.features,
                    task_class=task_class.name,
                )
                await loop.publish(submitted, "tasks", task_id)
            await loop.until("every trajectory", lambda: len(loop.completed) == len(tasks))

            # The judge's part, in the worker's world: the rewards of the logged trajectories.
            world, judge = World(SCENARIO, 0), SimulatedJudge(SCENARIO.judges, 0)
            window = GateWindow(1_000, ARM.reward)
            for decision in loop.decisions:
                window.add(decision)
            for completed in loop.completed:
                window.add(completed)
            for completed in loop.completed:
                judged = judge.score(completed.trajectory_id, world.true_quality(completed.state))
                window.add(
                    RewardObserved(
                        trajectory_id=completed.trajectory_id,
                        task_id=completed.task_id,
                        quality=judged.quality,
                        confidence=judged.confidence,
                    )
                )
            assert len(window.acting()) == len(tasks)

            def figures(graph: PolicyGraph) -> GateFigures:
                target = TargetPolicy(graph, SETUP.selection, floors=True, model=good)
                return gate_figures(target, window)

            bad_figures, good_figures = figures(bad), figures(good)
            assert bad_figures.acting_version == good_figures.acting_version == 0
            await loop.publish(snapshot(good, 1, None), "policy", "default")
            await loop.publish(snapshot(bad, 2, bad_figures), "policy", "default")
            refused = (
                "agensbus_router_snapshots_refused_total",
                (("reason", "below_acting_policy"),),
            )
            await loop.until("the bad snapshot refused", lambda: refused in _positive(loop))
            assert loop.metric("agensbus_router_policy_version", tenant="default") == 0
            await loop.publish(snapshot(good, 3, good_figures), "policy", "default")
            await loop.until(
                "the good snapshot adopted",
                lambda: loop.metric("agensbus_router_policy_version", tenant="default") == 3,
            )
            metrics = await asyncio.to_thread(scrape, loop)

        reasons = {
            dict(labels)["reason"]: value
            for (name, labels), value in metrics.items()
            if name == "agensbus_router_snapshots_refused_total"
        }
        assert reasons == {"below_acting_policy": 1.0, "too_few_decisions": 1.0}
        assert metrics[("agensbus_router_policy_version", (("tenant", "default"),))] == 3
        gauge = {
            dict(labels)["figure"]: value
            for (name, labels), value in metrics.items()
            if name == "agensbus_router_gate_figure"
        }
        assert gauge["lower_bound"] == good_figures.lower_bound
        assert gauge["trajectories"] == len(tasks)
        assert bad_figures.lower_bound is not None and good_figures.lower_bound is not None
        assert bad_figures.lower_bound < bad_figures.acting_estimate  # type: ignore[operator]
        assert good_figures.lower_bound >= good_figures.acting_estimate  # type: ignore[operator]

    run(scenario())


def _positive(loop: Loop) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    registry = loop.service.registry
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for metric in registry.collect()
        for sample in metric.samples
        if sample.value > 0
    }


def test_the_learner_estimates_its_snapshots_on_the_decisions_routers_log(
    kafka_bootstrap: str,
) -> None:
    settings = learner_settings(
        kafka_bootstrap,
        tenants="default",
        policy_arm=ARM.name,
        gate_enabled=True,
        snapshot_every=1_000,
        snapshot_interval_s=0.5,
    )
    # A router's log, run to the end in the simulated world and judged there.
    events = logged(RouterCore(SETUP, ("default",)), 24)

    async def scenario() -> None:
        async with running(settings) as learner:
            await following_decisions(learner, settings.topic("decisions"))
            decisions = [e for e in events if isinstance(e, Decision)]
            async with AIOKafkaProducer(**aiokafka_options(settings)) as producer:
                await send(producer, settings, decisions)
                # Then the rest: the window joins in any order, this makes the snapshot that
                # backs up the last trajectory the first to see every decision.
                await until(
                    lambda: metric(learner, "gate_decisions_total") == len(decisions),
                    "every decision read",
                )
                await send(producer, settings, [e for e in events if not isinstance(e, Decision)])
            snapshot = await until_snapshot(settings, lambda s: s.backed_up == 24)
        assert snapshot.gate is not None
        assert (snapshot.gate.acting_version, snapshot.gate.trajectories) == (0, 24)
        # What the learner backed up and what it estimated on are the same trajectories:
        # the pure gate over the same events and graph gives the same figures.
        window = GateWindow(settings.gate_window, ARM.reward)
        for event in events:
            window.add(event)
        graph = PolicyGraph.from_document(snapshot.policy)
        expected = gate_figures(TargetPolicy(graph, SETUP.selection, floors=True), window)
        # The learner joined the trajectories in the order they arrived: sums in another
        # order differ in the last bits.
        assert snapshot.gate.model_dump() == pytest.approx(expected.model_dump(), rel=1e-12)

    run(scenario())


async def send(
    producer: AIOKafkaProducer, settings: Settings, events: Sequence[RouterEvent | RewardObserved]
) -> None:
    for event in events:
        topic = settings.topic(topic_of(type(event)))
        await producer.send_and_wait(topic, encode(event), key=event.trajectory_id.encode())


async def following_decisions(learner: Service, topic: str) -> None:
    """Wait until the learner's follower of the decisions topic knows where it stands: it
    reads from the end it found, so what is published after this reaches it."""
    followers: list[Any] = [s for s in learner.broker.subscribers if topic in s.topic_names]  # type: ignore[attr-defined]
    consumer: Any = None

    def assigned() -> bool:
        nonlocal consumer
        consumer = followers[0].consumer
        return consumer is not None and bool(consumer.assignment())

    await until(assigned, "the decisions follower's assignment")
    for partition in consumer.assignment():
        await consumer.position(partition)
