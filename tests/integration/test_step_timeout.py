"""The router's step timeout on the real broker: an invoke nobody answers fails with kind
timeout and the trajectory goes on; a late answer is ignored; a router that starts after the
decision was dispatched (the first one stopped) still times it out, from the log alone."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer

from schemas.events import (
    ActionKind,
    Decision,
    Event,
    FailureKind,
    StepOutcome,
    TrajectoryCompleted,
)
from schemas.records import StepStatus
from services.router.app import build
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.runtime.topics import ensure_topics
from tests.integration.support_broker import run
from tests.integration.support_router import task
from tests.integration.support_services import produce, read_until, reading, serving
from tests.unit.support_router import execute

E = TypeVar("E", bound=Event)


def settings_for(bootstrap: str, timeout_s: float) -> Settings:
    run_id = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"timeout-{run_id}.",
        router_group=f"timeout-{run_id}",
        topic_partitions=2,
        http_port=0,
        graceful_timeout_s=2.0,
        step_timeout_s=timeout_s,
        step_timeout_replay_s=600.0,
    )


async def next_event(
    consumer: AIOKafkaConsumer, model: type[E], accept: Callable[[E], bool] = lambda e: True
) -> E:
    """The next record of ``consumer`` that parses as ``model`` and passes ``accept``."""
    while True:
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            for record in batch:
                event = model.model_validate_json(record.value)
                if accept(event):
                    return event


def counter(service: Service, name: str) -> float:
    return service.registry.get_sample_value(name) or 0.0


async def first_invoke(settings: Settings, decisions: AIOKafkaConsumer) -> Decision:
    await produce(settings.kafka_bootstrap or "", settings.topic("tasks"),
                  [("t-1", encode(task("t-1")))])  # fmt: skip
    return await next_event(decisions, Decision, lambda d: d.action_kind is ActionKind.INVOKE)


def test_an_unanswered_step_times_out_the_trajectory_goes_on_and_a_late_answer_is_ignored(
    kafka_bootstrap: str,
) -> None:
    settings = settings_for(kafka_bootstrap, timeout_s=1.0)

    async def scenario() -> None:
        await ensure_topics(settings)
        router = build(settings)
        async with (
            reading(kafka_bootstrap, settings.topic("decisions")) as decisions,
            reading(kafka_bootstrap, settings.topic("outcomes")) as outcomes,
            reading(kafka_bootstrap, settings.topic("trajectories")) as trajectories,
            serving(router),
        ):
            first = await first_invoke(settings, decisions)
            timed_out = await next_event(outcomes, StepOutcome)
            assert (timed_out.decision_id, timed_out.status, timed_out.failure_kind) == (
                first.decision_id,
                StepStatus.FAILED,
                FailureKind.TIMEOUT,
            )
            assert timed_out.state == first.state
            assert timed_out.latency_s >= settings.step_timeout_s

            # The worker answers after all: too late, the router already went on.
            await produce(kafka_bootstrap, settings.topic("outcomes"),
                          [("t-1", encode(execute(first)))])  # fmt: skip
            while counter(router, "agensbus_router_late_outcomes_total") < 1:
                await asyncio.sleep(0.05)

            # Nobody answers any step: the failures halt the trajectory, which completes.
            done = await next_event(trajectories, TrajectoryCompleted)
            invokes = [e for e in done.state.visited if not e.action.startswith("skip:")]
            assert invokes
            assert {e.status for e in invokes} == {StepStatus.FAILED}
            assert counter(router, "agensbus_router_step_timeouts_total") == len(invokes)

            # The late answer forked nothing: one decision per step.
            async with reading(kafka_bootstrap, settings.topic("decisions")) as again:
                values = await read_until(again, lambda v: len(v) >= done.steps, quiet_s=0.5)
            per_step = Counter(Decision.model_validate_json(v).step for v in values)
            assert set(per_step.values()) == {1}
            assert sorted(per_step) == list(range(done.steps))

    run(scenario())


def test_a_router_started_after_the_dispatch_still_times_the_step_out(
    kafka_bootstrap: str,
) -> None:
    # Long enough that the first router is stopped well before the step is due.
    settings = settings_for(kafka_bootstrap, timeout_s=8.0)

    async def scenario() -> None:
        await ensure_topics(settings)
        first_router = build(settings)
        async with (
            reading(kafka_bootstrap, settings.topic("decisions")) as decisions,
            reading(kafka_bootstrap, settings.topic("outcomes")) as outcomes,
        ):
            async with serving(first_router):
                first = await first_invoke(settings, decisions)
            assert counter(first_router, "agensbus_router_step_timeouts_total") == 0

            second_router = build(settings)
            async with serving(second_router):
                timed_out = await next_event(outcomes, StepOutcome)
                assert timed_out.decision_id == first.decision_id
                assert timed_out.failure_kind is FailureKind.TIMEOUT
                # ...and the trajectory goes on from it.
                after = await next_event(decisions, Decision, lambda d: d.step > first.step)
                assert after.trajectory_id == first.trajectory_id
            assert counter(second_router, "agensbus_router_step_timeouts_total") == 1

    run(scenario())
