"""The learner service on the real broker, in process: it learns from trajectories and
rewards, publishes snapshots, and resumes from its snapshot after a stop or a crash with
nothing lost and nothing counted twice."""

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.learner.restore import newest_snapshot
from services.policy.arms import deployed_arm
from services.runtime.settings import Settings
from tests.integration.support_broker import run, until
from tests.integration.support_learner import (
    Input,
    assert_learned_exactly,
    consumed,
    crash,
    dead_letters,
    learner_settings,
    metric,
    publish,
    running,
    split,
    start,
    until_snapshot,
)
from tests.unit.support_learner import real_pairs


def test_learns_from_trajectories_and_rewards_and_publishes_snapshots(
    kafka_bootstrap: str,
) -> None:
    settings = learner_settings(kafka_bootstrap, snapshot_every=5, snapshot_interval_s=0.3)
    pairs = real_pairs(16, prefix="learn")
    t, r = split(pairs)
    foreign = real_pairs(1, prefix="foreign", tenant="other")[0][0]
    stranger = r[0].model_copy(update={"tenant": "stranger", "trajectory_id": "nobody"})
    # Half the rewards come before their trajectories.
    inputs: list[Input] = [*t[:8], *r, *t[8:]]
    inputs += [("trajectories", b"{not json"), foreign, stranger]

    async def scenario() -> None:
        async with running(settings) as service:
            await publish(settings, inputs)
            snapshot = await until_snapshot(settings, lambda s: s.backed_up == 16)
            await until(lambda: consumed(service) == len(inputs), "every input consumed")
            assert metric(service, "backups_total") == 16
            assert metric(service, "foreign_events_total") == 1
            assert metric(service, "snapshots_published_total") >= 1
            assert metric(service, "policy_nodes") > 0
        assert snapshot.checkpoint.waiting_trajectories == []
        assert snapshot.checkpoint.waiting_rewards == []
        assert sorted(snapshot.checkpoint.recent_ids) == sorted(x.trajectory_id for x in t)
        assert snapshot.policy.selection == deployed_arm(settings.policy_arm).selection
        assert_learned_exactly(snapshot.policy, pairs)

        # The last snapshot (on shutdown, unless the one above had all) covers every input,
        # the rejected ones too.
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert final.version >= snapshot.version
        assert final.backed_up == 16
        read = {topic: 0 for topic in ("trajectories", "rewards")}
        for offset in final.input_offsets:
            read[offset.topic.removeprefix(settings.topic_prefix)] += offset.offset
        assert read == {"trajectories": 16 + 2, "rewards": 16 + 1}

        letters = await dead_letters(settings, 2)
        assert sorted((d.error_type, d.source_topic) for d in letters) == [
            ("malformed_json", settings.topic("trajectories")),
            ("unknown_tenant", settings.topic("rewards")),
        ]

    run(scenario())


def test_a_restarted_learner_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str,
) -> None:
    # Snapshots only on shutdown: whatever a crash interrupts is lost from memory and must
    # be read again from the inputs.
    settings = learner_settings(kafka_bootstrap, snapshot_every=1_000, snapshot_interval_s=60.0)
    pairs = real_pairs(22, prefix="restart")
    t, r = split(pairs)
    second_reward = r[3].model_copy(update={"event_id": "again", "quality": 0.0})

    async def scenario() -> None:
        # A learns 0-9, keeps r10 and t11 waiting and stops gracefully.
        first_inputs: list[Input] = [*t[:10], *r[:10], r[10], t[11]]
        async with running(settings) as service:
            await publish(settings, first_inputs)
            await until(lambda: consumed(service) == len(first_inputs), "A consumed")
        first = await newest_snapshot(settings, settings.tenant)
        assert first is not None
        assert first.backed_up == 10
        assert [x.trajectory_id for x in first.checkpoint.waiting_rewards] == ["restart-010"]
        assert [x.trajectory_id for x in first.checkpoint.waiting_trajectories] == ["restart-011"]

        # B completes both joins from A's checkpoint, learns 12-19, sees a second reward
        # and a replayed trajectory, and crashes before any snapshot.
        second_inputs: list[Input] = [
            t[10],
            r[11],
            *t[12:20],
            *r[12:20],
            second_reward,
            t[5],
            r[20],
            r[21],
        ]
        service, task = await start(settings)
        await publish(settings, second_inputs)
        await until(lambda: consumed(service) == len(second_inputs), "B consumed")
        assert metric(service, "backups_total") == 10
        assert metric(service, "duplicates_total", kind="reward") == 1
        assert metric(service, "duplicates_total", kind="trajectory") == 1
        await crash(service, task)
        assert (await newest_snapshot(settings, settings.tenant)) == first
        # Whatever the group committed is no checkpoint: pretend it ran ahead to the end.
        await commit_to_the_end(settings)

        # C reads B's inputs again from A's offsets, and the last two trajectories.
        async with running(settings) as service:
            await publish(settings, [t[20], t[21]])
            await until(lambda: metric(service, "backups_total") == 12, "C backed up")
            assert metric(service, "duplicates_total", kind="reward") == 1
            assert metric(service, "duplicates_total", kind="trajectory") == 1
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert final.version == first.version + 1
        assert final.backed_up == 22
        assert final.checkpoint.waiting_trajectories == []
        assert final.checkpoint.waiting_rewards == []
        assert sorted(final.checkpoint.recent_ids) == sorted(x.trajectory_id for x in t)
        assert_learned_exactly(final.policy, pairs)

    run(scenario())


async def commit_to_the_end(settings: Settings) -> None:
    partitions = [
        TopicPartition(settings.topic(name), p)
        for name in ("trajectories", "rewards")
        for p in range(settings.topic_partitions)
    ]
    async with AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.learner_group,
        enable_auto_commit=False,
    ) as consumer:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(ends)


def test_a_trajectory_whose_reward_never_comes_expires(kafka_bootstrap: str) -> None:
    settings = learner_settings(
        kafka_bootstrap, reward_ttl_s=0.5, snapshot_every=1, snapshot_interval_s=0.2
    )
    (t0, r0), (t1, _) = real_pairs(2, prefix="ttl")

    async def scenario() -> None:
        async with running(settings) as service:
            await publish(settings, [t0, r0, t1])
            await until(lambda: metric(service, "joins_expired_total") == 1, "an expiry")
            assert metric(service, "backups_total") == 1
            assert metric(service, "waiting_joins", kind="trajectory") == 0
        final = await newest_snapshot(settings, settings.tenant)
        assert final is not None
        assert (final.backed_up, final.checkpoint.expired) == (1, 1)
        assert final.checkpoint.waiting_trajectories == []

    run(scenario())
