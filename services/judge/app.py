"""The judge service: groups completed trajectories, has its scorer score each group side by
side, and publishes the rewards. Handlers stay thin: parse, call pure code, publish."""

import asyncio
import time
from dataclasses import dataclass
from functools import partial

from aiokafka import ConsumerRecord
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from schemas.events import TrajectoryCompleted
from services.judge import core as judging
from services.judge.metrics import JudgeMetrics
from services.judge.scorers import make_scorer
from services.pipeline import deployed_pipeline
from services.runtime.codec import Rejected
from services.runtime.poison import Poison, poison_reason, raise_
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.worker.claims import Claims
from services.worker.commits import Committer, Rebalance, record_of

#: What the judge dead-letters beyond undecodable input (their series start at 0).
JUDGE_DEAD_LETTERS = ("unknown_tenant", "unknown_trajectory", "unknown_task_class")


@dataclass(frozen=True, slots=True)
class _Held:
    record: ConsumerRecord[bytes, bytes]
    trajectory: TrajectoryCompleted


def build(settings: Settings) -> Service:
    service = Service("judge", settings, JUDGE_DEAD_LETTERS)
    metrics = JudgeMetrics(service.registry)
    scorer = make_scorer(settings, deployed_pipeline(settings), metrics, service.log)
    window_s = settings.judge_window_ms / 1000
    rollout_window_s = settings.judge_rollout_window_ms / 1000
    grouper: judging.Grouper[_Held] = judging.Grouper(settings.judge_group_size, window_s)
    committer = Committer(lambda: subscriber.consumer, service.log, service.poisoned)
    store = Claims(service).store
    subscriber = service.broker.subscriber(
        service.topic("trajectories"),
        group_id=settings.judge_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        listener=Rebalance(committer),
    )
    stopping = asyncio.Event()
    flushing: list[asyncio.Task[None]] = []
    # Groups being scored: a model judge takes seconds to minutes, and the consumer must
    # keep fetching (and heartbeating) meanwhile.
    scoring: set[asyncio.Task[None]] = set()

    async def settle(group: judging.Group[_Held]) -> None:
        began = time.time_ns()
        rewards = await scorer.score([h.trajectory for h in group.members])
        records = {h.trajectory.trajectory_id: h.record for h in group.members}
        sent = []
        for reward in rewards:
            # One span per trajectory, in its own trace: the group's scoring and its reward.
            parent = records[reward.trajectory_id].headers
            with service.tracing.span("judgement", parent, start_ns=began, group=group.key):
                key = reward.trajectory_id.encode()
                sent.append(await service.send(reward, service.topic("rewards"), key))
        await asyncio.gather(*sent)
        # Committed only once the rewards are on the broker (at least once); a trajectory
        # no judge scored is finished too: retrying would not make a judge appear, and its
        # join expires in the learner.
        for held in group.items:
            committer.finished(held.record)

    async def guarded(group: judging.Group[_Held]) -> None:
        try:
            await settle(group)
        except Exception as error:
            if poison_reason(error) is None:
                service.log.exception(
                    "scoring or publishing a group failed; its records stay uncommitted",
                    extra={"group": group.key},
                )
                return
            # It would fail the same way on every retry: each member is dead-lettered and
            # finished.
            for held in group.items:
                await committer.finish_after(held.record, partial(raise_, error))

    def dispatch(groups: list[judging.Group[_Held]]) -> None:
        for group in groups:
            task = asyncio.create_task(guarded(group))
            scoring.add(task)
            task.add_done_callback(scoring.discard)

    @subscriber
    async def on_trajectory(msg: KafkaMessage) -> None:
        record = record_of(msg)
        if stopping.is_set():
            return
        trajectory = judging.accept(record.value, scorer.classes, settings.tenant_list)
        if isinstance(trajectory, Rejected):
            await committer.tracked(record, lambda: service.dead_letter(record, trajectory))
            return
        committer.started(record)
        try:
            # The judge reads the text the trajectory stored by reference.
            completed = await judging.readable(trajectory, store)
        except Poison as error:
            await committer.finish_after(record, partial(raise_, error))
            return
        key, member = judging.group_key(completed), completed.trajectory_id
        size, wait_s = judging.shape(
            completed, settings.judge_group_size, window_s, rollout_window_s
        )
        held = _Held(record, completed)
        dispatch(grouper.add(key, member, held, time.monotonic(), size, wait_s))

    async def flush() -> None:
        # Groups that do not fill up are scored when their window ends.
        tick = max(0.01, min(0.1, window_s / 4))
        while True:
            await asyncio.sleep(tick)
            dispatch(grouper.due(time.monotonic()))

    async def start() -> None:
        committer.start()
        await scorer.start()
        flushing.append(asyncio.create_task(flush()))

    async def stop() -> None:
        stopping.set()
        for task in flushing:
            task.cancel()
        await asyncio.gather(*flushing, return_exceptions=True)
        try:
            dispatch(grouper.drain())
            if scoring:
                # What does not finish in time stays uncommitted and is judged again.
                _, late = await asyncio.wait(set(scoring), timeout=settings.graceful_timeout_s)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            await committer.stop()
            await scorer.stop()

    service.on_startup(start)
    service.on_shutdown(stop)
    service.add_check("judge", scorer.readiness)
    return service
