"""The agent-worker service: executes invoke decisions of the pipeline's cells with the
deployment's backend and publishes their outcomes. Handlers stay thin: parse, call pure
code, publish."""

from aiokafka import ConsumerRecord
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from schemas.events import ActionKind, Decision
from services.pipeline import deployed_pipeline
from services.runtime.codec import Rejected
from services.runtime.service import Service
from services.runtime.settings import Settings
from services.worker import invoke
from services.worker.backend import Backend, Unexecutable, make_backend
from services.worker.cells import ServedCells
from services.worker.claims import Claims
from services.worker.commits import Committer, Rebalance, record_of
from services.worker.executor import Executor
from services.worker.metrics import WorkerMetrics

#: What the worker dead-letters beyond undecodable input (their series start at 0).
WORKER_DEAD_LETTERS = (
    "unknown_tenant",
    "unknown_action",
    "unknown_trajectory",
    "unknown_step",
    "unknown_task_class",
    "unknown_model",
    "context_overflow",
    "unserved_variant",
)


def build(settings: Settings, backend: Backend | None = None) -> Service:
    """A worker of the cells ``settings`` serve, on ``backend`` (the SDK brings its own)
    or else the deployment's."""
    pipeline = deployed_pipeline(settings)
    pool = pipeline.pool
    served = ServedCells.of(settings.worker_cells, settings.worker_cells_except, pool)
    if backend is None:
        backend = make_backend(settings, pipeline)
    service = Service("worker", settings, WORKER_DEAD_LETTERS)
    metrics = WorkerMetrics(service.registry, pool)
    # The subscriber is created below; the consumer exists only once it has started.
    committer = Committer(lambda: subscriber.consumer, service.log, service.poisoned)
    claims = Claims(service)
    executor = Executor(committer, settings.worker_concurrency, metrics.in_flight, service.log)
    subscriber = service.broker.subscriber(
        service.topic("decisions"),
        group_id=settings.worker_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        listener=Rebalance(committer, assigned=executor.throttle),
    )

    async def execute(record: ConsumerRecord[bytes, bytes], decision: Decision) -> None:
        with service.tracing.span("execution", record.headers, action=decision.action):
            await run(record, decision)

    async def run(record: ConsumerRecord[bytes, bytes], decision: Decision) -> None:
        variant = pool.variant(decision.action)
        # A payload missing from the store raises Poison: the decision is dead-lettered
        # and left unanswered, as every retry would fail the same way.
        state = await claims.readable(decision.state)
        try:
            execution = await backend.execute(state, variant)
        except Unexecutable as error:
            # Keep the decision for operators, and still answer it: a failed step lets the
            # trajectory end instead of waiting forever for an outcome that never comes.
            await service.dead_letter(record, error.rejected)
            execution = error.as_failure()
        execution = await claims.carried(decision.state, execution)
        outcome = invoke.outcome_of(decision, execution)
        key = decision.trajectory_id.encode()
        await service.publish(outcome, service.topic("outcomes"), key)
        metrics.executed(decision, outcome)

    @subscriber
    async def on_decision(msg: KafkaMessage) -> None:
        record = record_of(msg)
        if not executor.accepting:
            return
        decision = invoke.accept(record.value, pool, settings.tenant_list)
        if isinstance(decision, Rejected):
            await committer.tracked(record, lambda: service.dead_letter(record, decision))
        elif decision.action_kind is ActionKind.SKIP or not served.serves(decision.cell):
            # Nothing to run here (another worker set serves that cell); the record still
            # has to count as done for the commit.
            committer.started(record)
            committer.finished(record)
        else:
            executor.submit(record, lambda: execute(record, decision))

    async def start() -> None:
        committer.start()
        await backend.start()
        # A task of the subscriber's, so it stops with the subscriber.
        subscriber.add_task(claims.sweep_every_hour)

    async def stop() -> None:
        await executor.drain(settings.graceful_timeout_s)
        await backend.stop()

    service.on_startup(start)
    service.on_shutdown(stop)
    # Every backend answers for itself: a remote one reports its last endpoint probe.
    service.add_check("backend", backend.readiness)
    return service
