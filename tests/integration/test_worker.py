"""The worker on the real broker, in process: one outcome per invoke and none for skips,
concurrent execution under the cap, commits that never pass unfinished work (and a new
worker that picks it up), and bad decisions dead-lettered while the rest proceed."""

import asyncio

from schemas.events import DeadLetter, Decision, FailureKind
from schemas.records import StepStatus
from services.policy import PolicyGraph, absorb, advance, start_state
from services.policy.arms import policy_setup
from services.runtime.codec import encode
from services.runtime.service import Service
from services.runtime.topics import ensure_topics
from services.sim import World
from services.worker.app import build
from services.worker.invoke import outcome_of
from tests.integration.support_broker import run
from tests.integration.support_services import (
    SCENARIO,
    SEED,
    committed,
    outcomes,
    produce,
    publish,
    read_until,
    reading,
    serving,
    settings_for,
)
from tests.unit.support_decisions import as_skip, decision_of


def walk(trajectory_id: str, task_class: str) -> list[tuple[Decision, float]]:
    """Every invoke decision of one trajectory run to its end, with the latency the worker's
    world (same seed) will simulate for it."""
    setup = policy_setup(SCENARIO, "paper")
    world = World(SCENARIO, SEED)
    features = SCENARIO.classes[task_class].features
    state = start_state(
        task_id=trajectory_id,
        trajectory_id=trajectory_id,
        goal="g",
        features=features,
        setup=setup,
        task_class=task_class,
    )
    invokes: list[tuple[Decision, float]] = []
    while True:
        steps, ended = advance(state, PolicyGraph(), setup)
        if ended is not None:
            return invokes
        step = steps[-1]
        assert step.variant is not None
        execution = world.execute(step.state, step.variant)
        invokes.append((decision_of(step), execution.latency_s))
        state = absorb(step.state, execution.result, setup)


def decisions_between(low: float, high: float, count: int) -> list[Decision]:
    """``count`` invoke decisions (of several trajectories and classes) whose simulated
    latency lies in [low, high]."""
    chosen: list[Decision] = []
    classes = list(SCENARIO.classes)
    for index in range(200):
        task_class = classes[index % len(classes)]
        chosen += [d for d, s in walk(f"adv-{index}", task_class) if low <= s <= high]
        if len(chosen) >= count:
            return chosen[:count]
    raise AssertionError("the scenario has too few decisions in that latency band")


def test_one_outcome_per_invoke_none_for_skips_executed_concurrently(
    kafka_bootstrap: str,
) -> None:
    # Calls of 0.6-1.5 s each: 20 of them one after the other would take ~20 s.
    settings = settings_for(kafka_bootstrap, worker_concurrency=10, sim_time_scale=0.5)
    invokes = decisions_between(1.2, 3.0, 20)
    skips = [
        as_skip(d).model_copy(update={"decision_id": f"{d.trajectory_id}:999"}) for d in invokes[:3]
    ]

    async def scenario() -> None:
        await publish(settings, [*skips[:2], *invokes[:10], skips[2], *invokes[10:]])
        service = build(settings)
        seen: list[float] = []

        async def sample() -> None:
            while True:
                seen.append(service.registry.get_sample_value("agensbus_worker_in_flight") or 0)
                await asyncio.sleep(0.02)

        async with (
            reading(kafka_bootstrap, settings.topic("outcomes")) as reader,
            serving(service),
        ):
            sampler = asyncio.create_task(sample())
            values = await read_until(reader, lambda got: len(got) >= 20, quiet_s=1.0)
            sampler.cancel()
        got = outcomes(values)
        assert sorted(o.decision_id for o in got) == sorted(d.decision_id for d in invokes)
        # Overlap: at least half the cap ran at once, and never more than the cap.
        assert 5 <= max(seen) <= 10
        # Each outcome is what the scenario's world makes of its decision.
        world = World(SCENARIO, SEED)
        by_id = {d.decision_id: d for d in invokes}
        for outcome in got:
            decision = by_id[outcome.decision_id]
            expected = outcome_of(
                decision, world.execute(decision.state, SCENARIO.pool.variant(decision.action))
            )
            assert outcome.model_dump(exclude={"produced_at"}) == expected.model_dump(
                exclude={"produced_at"}
            )
        assert total(service, "agensbus_worker_cell_executions") == len(invokes)
        tokens = sum(o.tokens_in + o.tokens_out for o in got)
        assert total(service, "agensbus_worker_tokens") == tokens

    run(scenario())


def test_commits_stop_at_unfinished_work_and_a_new_worker_does_the_rest(
    kafka_bootstrap: str,
) -> None:
    # One partition, so offsets are the order below: a fast call, a slow one still running
    # when the worker stops, fast ones finishing after it, then slow ones.
    slow_settings = settings_for(
        kafka_bootstrap,
        topic_partitions=1,
        worker_concurrency=10,
        sim_time_scale=1.0,
        graceful_timeout_s=0.2,
    )
    fast = decisions_between(0.0, 1.2, 9)
    slow = decisions_between(5.0, 60.0, 11)
    ordered = [fast[0], slow[0], *fast[1:], *slow[1:]]

    async def scenario() -> None:
        await publish(slow_settings, ordered)
        async with reading(kafka_bootstrap, slow_settings.topic("outcomes")) as reader:
            async with serving(build(slow_settings)):
                first = outcomes(await read_until(reader, lambda got: len(got) >= len(fast)))
            # Offset 0 finished, offset 1 did not: the commit stops between them although
            # offsets 2-9 finished too.
            assert {o.decision_id for o in first} == {d.decision_id for d in fast}
            assert await committed(slow_settings) == {0: 1}

            quick = slow_settings.model_copy(update={"sim_time_scale": 0.0})
            async with serving(build(quick)):
                rest = outcomes(await read_until(reader, lambda got: len(got) >= len(ordered) - 1))
        # Every decision has an outcome at least once; those redone are the ones from the
        # committed offset on.
        assert {o.decision_id for o in first + rest} == {d.decision_id for d in ordered}
        assert sorted(o.decision_id for o in rest) == sorted(d.decision_id for d in ordered[1:])
        assert await committed(slow_settings) == {0: len(ordered)}

    run(scenario())


def test_bad_decisions_go_to_the_dlq_and_the_rest_proceed(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, topic_partitions=1)
    good = decisions_between(0.0, 60.0, 6)
    unknown_action = good[0].model_copy(
        update={"action": "solver.telepathy@fast", "decision_id": "adv-x:0"}
    )
    # Valid for the worker, but the simulated backend has no such class to simulate.
    state = good[1].state.model_copy(update={"task_class": "C99"})
    unknown_class = good[1].model_copy(update={"state": state})
    values = [(d.trajectory_id, encode(d)) for d in good]
    values[2:2] = [
        ("adv-bad", b'{"event_type": "Decision", "step": '),
        ("adv-x", encode(unknown_action)),
        (unknown_class.trajectory_id, encode(unknown_class)),
    ]
    expected = [
        (2, "malformed_json"),
        (3, "unknown_action"),
        (4, "unknown_task_class"),
    ]

    async def scenario() -> None:
        await ensure_topics(settings)
        await produce(kafka_bootstrap, settings.topic("decisions"), values)
        service = build(settings)
        async with (
            reading(kafka_bootstrap, settings.topic("outcomes")) as outcome_reader,
            reading(kafka_bootstrap, settings.topic("dlq")) as dlq_reader,
            serving(service),
        ):
            got = outcomes(await read_until(outcome_reader, lambda got: len(got) >= 7))
            raw = await read_until(dlq_reader, lambda got: len(got) >= 3, quiet_s=0.5)
        letters = [DeadLetter.model_validate_json(v) for v in raw]
        # The decision the backend cannot run is still answered, as a failed step, so its
        # trajectory ends instead of waiting for an outcome forever.
        upstream = [o for o in got if o.failure_kind is FailureKind.UPSTREAM]
        assert [(o.decision_id, o.status, o.tokens_in + o.tokens_out) for o in upstream] == [
            (unknown_class.decision_id, StepStatus.FAILED, 0)
        ]
        answered = [o for o in got if o not in upstream]
        assert sorted(o.decision_id for o in answered) == sorted(d.decision_id for d in good)
        # The backend's refusal comes from the background: order by offset.
        assert sorted((d.offset or -1, d.error_type) for d in letters) == expected
        assert {d.service for d in letters} == {"worker"}
        assert all(d.key_b64 is not None for d in letters)
        for _, error_type in expected:
            counted = service.registry.get_sample_value(
                "agensbus_dead_letters_total", {"service": "worker", "reason": error_type}
            )
            assert counted == 1
        # Dead-lettered records count as done: the commit covers all of them.
        assert await committed(settings) == {0: len(values)}

    run(scenario())


def test_a_worker_joining_the_group_takes_over_partitions_and_nothing_is_lost(
    kafka_bootstrap: str,
) -> None:
    # Two partitions of 14 and 16 decisions, run slowly enough that each still has work
    # when the rebalance completes (~3 s, the first worker's next heartbeat).
    settings = settings_for(
        kafka_bootstrap, topic_partitions=2, worker_concurrency=2, sim_time_scale=0.4
    )
    decisions = decisions_between(1.0, 3.0, 30)
    ids = {d.decision_id for d in decisions}

    async def scenario() -> None:
        await publish(settings, decisions)
        first, second = build(settings), build(settings)
        async with (
            reading(kafka_bootstrap, settings.topic("outcomes")) as reader,
            serving(first),
        ):
            early = outcomes(await read_until(reader, lambda got: len(got) >= 1))
            done = {o.decision_id for o in early}
            # The second member's join revokes partitions from the first, which commits
            # what it finished there; the second resumes from those commits.
            async with serving(second):
                await read_until(
                    reader, lambda got: ids <= done | {o.decision_id for o in outcomes(got)}
                )
        executed = [total(w, "agensbus_worker_cell_executions") for w in (first, second)]
        assert executed[1] > 0, "the second worker took nothing over"
        assert sum(executed) >= len(decisions)
        assert sum((await committed(settings)).values()) == len(decisions)

    run(scenario())


def total(service: Service, counter: str) -> float:
    """A counter of the service summed over all its labels."""
    return sum(
        sample.value
        for metric in service.registry.collect()
        if metric.name == counter
        for sample in metric.samples
    )
