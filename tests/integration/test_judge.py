"""The judge role on the real broker, in process: one RewardObserved per completed
trajectory, scored as the simulated judge scores it directly, rollouts of a task grouped
together and classes apart, every input committed once scored."""

from collections import Counter, defaultdict

from schemas.events import DeadLetter, RewardObserved, TaskSubmitted
from services.judge.app import build as judge_build
from services.policy.arms import policy_setup
from services.policy.rubric import judge_confidence
from services.router.app import build as router_build
from services.runtime.codec import encode
from services.runtime.topics import ensure_topics
from services.sim import Engine, SimulatedJudge, World
from services.sim.testing import completed_trajectory
from services.worker.app import build
from tests.integration.support_broker import run
from tests.integration.support_services import (
    SCENARIO,
    SEED,
    committed,
    produce,
    read_until,
    reading,
    serving,
    settings_for,
)

GROUP_SIZE = 3


def test_one_reward_per_trajectory_scored_in_groups(kafka_bootstrap: str) -> None:
    settings = settings_for(
        kafka_bootstrap,
        judge_group_size=GROUP_SIZE,
        judge_window_ms=1500,
    )
    engine = Engine(SCENARIO, policy_setup(SCENARIO, "paper"), seed=SEED)
    trajectories = [
        *(completed_trajectory(engine, "C3", "t-1", r) for r in range(3)),  # a full group
        *(completed_trajectory(engine, "C5", "t-2", r) for r in range(2)),  # closed by its window
        *(completed_trajectory(engine, "C1", f"t-{i}") for i in range(3, 7)),  # peers: 3 + 1
        completed_trajectory(engine, "C2", "t-7"),
    ]
    values = [(t.trajectory_id, encode(t)) for t in trajectories]
    values.insert(4, ("t-bad", b"not json"))

    async def scenario() -> None:
        await ensure_topics(settings)
        await produce(kafka_bootstrap, settings.topic("trajectories"), values)
        service = judge_build(settings)
        async with (
            reading(kafka_bootstrap, settings.topic("rewards")) as reader,
            reading(kafka_bootstrap, settings.topic("dlq")) as dlq_reader,
            serving(service),
        ):
            raw = await read_until(reader, lambda got: len(got) >= len(trajectories), 0.5)
            (letter,) = await read_until(dlq_reader, lambda got: len(got) >= 1)
        rewards = [RewardObserved.model_validate_json(v) for v in raw]
        assert DeadLetter.model_validate_json(letter).error_type == "malformed_json"
        assert sorted(r.trajectory_id for r in rewards) == sorted(
            t.trajectory_id for t in trajectories
        )

        world, judge = World(SCENARIO, SEED), SimulatedJudge(SCENARIO.judges, SEED)
        by_id = {t.trajectory_id: t for t in trajectories}
        for reward in rewards:
            trajectory = by_id[reward.trajectory_id]
            direct = judge.score(trajectory.trajectory_id, world.true_quality(trajectory.state))
            assert 0.0 <= reward.quality <= 1.0
            assert reward.quality == direct.quality
            assert reward.confidence == judge_confidence([j.overall for j in reward.judges])
            assert reward.confidence == direct.confidence
            assert reward.task_id == trajectory.task_id

        members: dict[str | None, set[str]] = defaultdict(set)
        for reward in rewards:
            members[reward.group_id].add(reward.trajectory_id)
        groups = sorted(sorted(m) for m in members.values())
        assert None not in members
        # Rollouts of a task are one group; single runs group with their class's peers,
        # at most GROUP_SIZE at a time; classes never mix.
        assert ["t-1~0", "t-1~1", "t-1~2"] in groups
        assert ["t-2~0", "t-2~1"] in groups
        assert ["t-7"] in groups
        c1 = [g for g in groups if g[0] in {"t-3", "t-4", "t-5", "t-6"}]
        assert sorted(len(g) for g in c1) == [1, 3]
        assert Counter(len(g) for g in groups) == Counter([3, 2, 1, 1, 3])
        assert service.registry.get_sample_value("agensbus_judge_groups_scored_total") == 5
        assert service.registry.get_sample_value("agensbus_judge_disagreement_count") == len(
            trajectories
        )
        # Every input, the dead letter included, was committed once scored.
        assert sum((await committed(settings, settings.judge_group)).values()) == len(values)

    run(scenario())


def test_a_task_run_as_rollouts_through_the_router_is_judged_as_one_group(
    kafka_bootstrap: str,
) -> None:
    """Router, simulated worker and judge on the broker: six rollouts of one task are one
    group although groups of peers hold four, and single runs are judged with their class."""
    settings = settings_for(kafka_bootstrap, judge_window_ms=300)
    settings = settings.model_copy(update={"router_group": f"router-{settings.topic_prefix}"})
    c2 = SCENARIO.classes["C2"]
    tasks = [
        TaskSubmitted(
            task_id=task_id,
            goal=c2.description,
            features=c2.features,
            task_class=c2.name,
            rollouts=rollouts,
        )
        for task_id, rollouts in (("multi", 6), ("one", 1))
    ]

    async def scenario() -> list[RewardObserved]:
        await ensure_topics(settings)
        services = [router_build(settings), build(settings), judge_build(settings)]
        async with (
            reading(kafka_bootstrap, settings.topic("rewards")) as reader,
            serving(services[0]),
            serving(services[1]),
            serving(services[2]),
        ):
            await produce(
                kafka_bootstrap,
                settings.topic("tasks"),
                [(t.task_id, encode(t)) for t in tasks],
            )
            raw = await read_until(reader, lambda got: len(got) >= 7, 0.5)
        return [RewardObserved.model_validate_json(v) for v in raw]

    rewards = run(scenario())
    assert sorted(r.trajectory_id for r in rewards) == [*(f"multi~{r}" for r in range(6)), "one"]
    groups: dict[str | None, set[str]] = defaultdict(set)
    for reward in rewards:
        groups[reward.group_id].add(reward.trajectory_id)
    assert sorted(map(sorted, groups.values())) == [
        [f"multi~{r}" for r in range(6)],
        ["one"],
    ]
