"""The router service on the real broker, run in process, with a tiny fake worker that
executes every invoke decision in the simulated world and publishes its outcome."""

import asyncio
import base64
from collections import Counter

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.events import (
    ActionKind,
    DecisionReason,
    PolicySnapshot,
    Termination,
)
from schemas.policy_file import PolicyDocument
from schemas.records import FoldSpec
from services.policy import PolicyGraph
from services.policy.chunks import split
from services.runtime.kafka import aiokafka_options
from tests.integration.support_broker import run
from tests.integration.support_router import (
    Loop,
    settings_for,
    task,
)
from tests.unit.support_learner import backed_up_directly, real_pairs
from tests.unit.support_router import confident_graph, snapshot


def test_tasks_complete_while_bad_records_are_dead_lettered_and_duplicates_dropped(
    kafka_bootstrap: str,
) -> None:
    ids = [f"task-{i}" for i in range(5)]

    async def scenario() -> None:
        loop = Loop(settings_for(kafka_bootstrap), duplicate_outcomes=True)
        async with loop.running():
            body = await loop.ready()
            assert body["checks"]["policy"] == {
                "ok": True,
                "detail": "cold: the policy topic was empty at start",
            }
            await loop.publish(b"{not json", "tasks", "bad-json")
            await loop.publish(b'{"task_id": "bad-task", "goal": ""}', "tasks", "bad-task")
            for i, task_id in enumerate(ids):
                await loop.publish(task(task_id, f"C{i + 1}"), "tasks", task_id)

            await loop.until("5 trajectories", lambda: len(loop.completed) == 5)
            await loop.until("2 dead letters", lambda: len(loop.dead) == 2)
            invokes = sum(d.action_kind is ActionKind.INVOKE for d in loop.decisions)
            # every outcome was published twice: the second copy of each is dropped
            await loop.until(
                "every duplicate outcome dropped",
                lambda: loop.metric("agensbus_router_duplicate_outcomes_total") == invokes,
            )
            await asyncio.sleep(0.5)  # anything a duplicate forked would show up by now

            assert sorted(c.trajectory_id for c in loop.completed) == ids
            per_step = Counter((d.trajectory_id, d.step) for d in loop.decisions)
            assert set(per_step.values()) == {1}
            for completed in loop.completed:
                steps = sorted(s for t, s in per_step if t == completed.trajectory_id)
                assert steps == list(range(completed.steps))
                assert completed.state.pending is None
            assert loop.metric("agensbus_router_trajectories_started_total") == 5
            terminations = Counter(c.termination for c in loop.completed)
            assert {
                t: loop.metric("agensbus_router_trajectories_completed_total", termination=t.value)
                for t in Termination
            } == {t: float(terminations[t]) for t in Termination}
            assert loop.metric(
                "agensbus_router_decisions_total", action_kind="invoke", reason="rule_based_prior"
            ) == float(invokes)

            letters = {base64.b64decode(d.key_b64 or ""): d for d in loop.dead}
            assert set(letters) == {b"bad-json", b"bad-task"}
            assert letters[b"bad-json"].error_type == "malformed_json"
            assert base64.b64decode(letters[b"bad-json"].payload_b64) == b"{not json"
            assert letters[b"bad-task"].error_type == "schema_invalid"
            assert "goal" in letters[b"bad-task"].reason
            assert {d.service for d in loop.dead} == {"router"}

    run(scenario())


def test_policy_snapshots_are_replayed_at_start_and_hot_swapped(kafka_bootstrap: str) -> None:
    async def scenario() -> None:
        loop = Loop(settings_for(kafka_bootstrap))
        cold = PolicySnapshot(version=3, policy=PolicyDocument(version=3))
        # a policy past the confidence threshold at the start node with nothing tried yet:
        # decisions made from it explore (untried_action), the cold one follows the prior
        learned = snapshot(confident_graph({}), 7)
        async with loop.running(preload=[(cold, "policy", "default")]):
            body = await loop.ready()
            assert body["checks"]["policy"] == {
                "ok": True,
                "detail": "caught up with the policy topic: default v3",
            }
            assert loop.metric("agensbus_router_policy_version", tenant="default") == 3

            await loop.publish(task("before"), "tasks", "before")
            await loop.until("the first task", lambda: len(loop.completed) == 1)
            # unusable snapshots are refused and leave the policy in use alone
            await loop.publish(b"{not json", "policy", "default")
            await loop.publish(
                snapshot(PolicyGraph(), 9, fold=FoldSpec(granularity=0.5)), "policy", "default"
            )
            await loop.publish(learned, "policy", "default")
            await loop.until(
                "version 7 adopted",
                lambda: loop.metric("agensbus_router_policy_version", tenant="default") == 7,
            )
            await loop.publish(task("after"), "tasks", "after")
            await loop.until("the second task", lambda: len(loop.completed) == 2)

            refused = {
                reason: loop.metric("agensbus_router_policy_refused_total", reason=reason)
                for reason in ("malformed_json", "fold_mismatch")
            }
            assert refused == {"malformed_json": 1, "fold_mismatch": 1}

        by_task = {c.task_id: c for c in loop.completed}
        assert (by_task["before"].policy_version, by_task["after"].policy_version) == (3, 7)
        before = [d for d in loop.decisions if d.task_id == "before"]
        after = [d for d in loop.decisions if d.task_id == "after"]
        assert {d.policy_version for d in before} == {3}
        assert {d.policy_version for d in after} == {7}
        assert before[0].reason is DecisionReason.RULE_BASED_PRIOR
        assert after[0].reason is DecisionReason.UNTRIED_ACTION
        assert after[0].scores and all(s.score is None for s in after[0].scores)

    run(scenario())


def test_a_decision_the_broker_refuses_dead_letters_its_task_and_the_partition_goes_on(
    kafka_bootstrap: str,
) -> None:
    # One partition, so the tasks after the refused one wait behind it; a decisions topic
    # whose records may hold 64 KiB, and a router that admits goals up to 200 kB: a 150 kB
    # goal passes admission, and the broker refuses its first decision (as it would a
    # state grown past message.max.bytes).
    settings = settings_for(kafka_bootstrap).model_copy(
        update={"topic_partitions": 1, "limit_goal_bytes": 200_000, "limit_task_bytes": 300_000}
    )
    before, after = ["task-0", "task-1"], ["task-2", "task-3"]

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(**aiokafka_options(settings))
        await admin.start()
        try:
            small = {"max.message.bytes": str(64 * 1024)}
            await admin.create_topics(
                [NewTopic(settings.topic("decisions"), 1, 1, topic_configs=small)]
            )
        finally:
            await admin.close()
        loop = Loop(settings)
        async with loop.running():
            await loop.ready()
            for task_id in before:
                await loop.publish(task(task_id), "tasks", task_id)
            await loop.publish(
                task("big").model_copy(update={"goal": "g" * 150_000}), "tasks", "big"
            )
            for task_id in after:
                await loop.publish(task(task_id), "tasks", task_id)
            await loop.until("4 trajectories", lambda: len(loop.completed) == 4)
            await loop.until("a dead letter", lambda: len(loop.dead) == 1)
            assert sorted(c.trajectory_id for c in loop.completed) == before + after
            (letter,) = loop.dead
            assert base64.b64decode(letter.key_b64 or "") == b"big"
            assert letter.error_type == "record_too_large"
            assert (letter.partition, letter.offset) == (0, 2)
            assert (
                loop.metric(
                    "agensbus_poison_records_total", service="router", reason="record_too_large"
                )
                == 1.0
            )
            assert not any(d.trajectory_id == "big" for d in loop.decisions)

    run(scenario())


def test_a_snapshot_in_chunks_is_adopted_once_every_chunk_is_in(kafka_bootstrap: str) -> None:
    learned = backed_up_directly(real_pairs(10, prefix="chunked"))
    parts = split(snapshot(learned, 5), max_nodes=3)
    assert len(parts) > 2

    async def scenario() -> None:
        loop = Loop(settings_for(kafka_bootstrap))
        async with loop.running():
            await loop.ready()
            for part in parts[:-1]:
                await loop.publish(part, "policy", "default")
            # read after the chunks so far (one partition, in order): adopted, so they were not
            await loop.publish(snapshot(PolicyGraph(), 2), "policy", "default")
            await loop.until(
                "version 2 adopted",
                lambda: loop.metric("agensbus_router_policy_version", tenant="default") == 2,
            )
            await loop.publish(parts[-1], "policy", "default")
            await loop.until(
                "version 5 adopted whole",
                lambda: loop.metric("agensbus_router_policy_version", tenant="default") == 5,
            )

    run(scenario())
