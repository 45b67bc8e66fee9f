"""``agensbus submit`` and ``agensbus tail`` as a user runs them, against a real broker."""

import asyncio
import json
from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas.events import (
    DeadLetter,
    Decision,
    Event,
    PolicySnapshot,
    RewardObserved,
    StepOutcome,
    TaskSubmitted,
    TrajectoryCompleted,
)
from services.runtime.codec import encode
from services.runtime.kafka import aiokafka_options
from tests.contract.samples import build_samples
from tests.e2e.conftest import Agensbus, Bus

TASKS = [
    {"task_id": "t-1", "goal": "Extract the fixed release", "task_class": "C1"},
    {
        "task_id": "t-2",
        "goal": "Reconcile two advisories",
        "task_class": "C2",
        "features": {"contradiction_risk": 0.9},
        "rollouts": 2,
    },
    {"task_id": "t-3", "goal": "Assess the impact", "constraints": ["cite sources"]},
]
#: A file with two good lines and four bad ones (cut JSON, a bad id, a repeated task_id, a
#: goal over the size the router admits).
MIXED = [
    json.dumps(TASKS[0]),
    '{"task_id": "t-9", "goal": ',
    json.dumps(TASKS[1]),
    json.dumps({"task_id": "no spaces allowed", "goal": "x"}),
    json.dumps({"task_id": "t-1", "goal": "again"}),
    json.dumps({"task_id": "t-6", "goal": "g" * 70_000}),
]


def comparable(event: TaskSubmitted) -> dict[str, object]:
    # event_id and produced_at are stamped when a line leaves them out.
    return event.model_dump(mode="json", exclude={"event_id", "produced_at"})


def published(bus: Bus) -> dict[str, TaskSubmitted]:
    records = bus.records("tasks")
    tasks = {r.key.decode(): TaskSubmitted.model_validate_json(r.value) for r in records}
    assert len(tasks) == len(records)
    return tasks


def test_submit_publishes_each_line_keyed_by_its_task_id(
    tmp_path: Path, bus: Bus, agensbus: Agensbus
) -> None:
    file = tmp_path / "tasks.jsonl"
    # A blank line is not a task; it is passed over, not reported.
    file.write_text("\n".join([json.dumps(TASKS[0]), "", *map(json.dumps, TASKS[1:])]) + "\n")

    done = agensbus("submit", str(file))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"published 3 task(s) to {bus.topic('tasks')}\n"
    tasks = published(bus)
    assert sorted(tasks) == ["t-1", "t-2", "t-3"]
    for task in TASKS:
        expected = TaskSubmitted.model_validate(task)
        assert comparable(tasks[expected.task_id]) == comparable(expected)


def test_submit_reports_every_bad_line_and_publishes_nothing(
    tmp_path: Path, bus: Bus, agensbus: Agensbus
) -> None:
    file = tmp_path / "tasks.jsonl"
    file.write_text("\n".join(MIXED) + "\n")

    done = agensbus("submit", str(file))

    assert done.returncode == 2
    assert done.stdout == ""
    assert "tasks.jsonl: 4 invalid line(s), nothing published" in done.stderr
    assert "line 2: not JSON" in done.stderr
    assert "line 4: not a valid TaskSubmitted: task_id: String should match" in done.stderr
    assert "line 5: task_id 't-1' repeats line 1" in done.stderr
    assert (
        "line 6: the goal is 70000 bytes, over the limit of 65536 (AGENSBUS_LIMIT_GOAL_BYTES)"
        in done.stderr
    )
    assert "line 1:" not in done.stderr and "line 3:" not in done.stderr
    assert "Traceback" not in done.stderr
    assert bus.records("tasks") == []


def test_submit_skip_invalid_publishes_the_good_lines_from_stdin(
    bus: Bus, agensbus: Agensbus
) -> None:
    done = agensbus("submit", "-", "--skip-invalid", stdin="\n".join(MIXED))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"published 2 task(s) to {bus.topic('tasks')}\n"
    assert "stdin: skipped 4 invalid line(s)" in done.stderr
    assert sorted(published(bus)) == ["t-1", "t-2"]


def test_submit_to_a_missing_topic_is_a_user_error(tmp_path: Path, agensbus: Agensbus) -> None:
    file = tmp_path / "tasks.jsonl"
    file.write_text(json.dumps(TASKS[0]))

    done = agensbus("submit", str(file), "--topic", "no-such-topic")

    assert done.returncode == 2
    assert "topic no-such-topic does not exist" in done.stderr
    assert "Traceback" not in done.stderr


async def _produce(bus: Bus, values: list[tuple[bytes, bytes]]) -> None:
    async with AIOKafkaProducer(**aiokafka_options(bus.settings)) as producer:
        for key, value in values:
            await producer.send_and_wait(bus.topic("tasks"), value, key=key)


def test_tail_prints_one_readable_line_per_event_or_its_json(bus: Bus, agensbus: Agensbus) -> None:
    samples = build_samples()
    events: list[Event] = [e for e in samples.values() if isinstance(e, Event)]
    bare_task = {"task_id": "from-kcat", "goal": "no envelope"}  # read as its topic's kind
    values = [(b"k", encode(e)) for e in events]
    values += [(b"from-kcat", json.dumps(bare_task).encode()), (b"junk", b"not json")]
    asyncio.run(_produce(bus, values))
    count = len(values)

    readable = agensbus("tail", "tasks", "--from-beginning", "--max", str(count), "--timeout", "10")

    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert len(lines) == count

    def line(start: str) -> str:
        (found,) = [text for text in lines if text.split(" ", 1)[1].startswith(start)]
        return found

    task = samples["TaskSubmitted"]
    assert isinstance(task, TaskSubmitted)
    assert f"class={task.task_class}" in line(f"task       {task.task_id} ")
    assert 'goal="no envelope"' in line("task       from-kcat ")
    decision = samples["Decision"]
    assert isinstance(decision, Decision)
    assert f"{decision.action_kind.value} {decision.action}" in line(
        f"decision   {decision.decision_id} "
    )
    outcome = samples["StepOutcome"]
    assert isinstance(outcome, StepOutcome)
    assert f"{outcome.action} {outcome.status.value}" in line(f"outcome    {outcome.decision_id} ")
    completed = samples["TrajectoryCompleted"]
    assert isinstance(completed, TrajectoryCompleted)
    assert f"steps={completed.steps} tokens={completed.tokens}" in line(
        f"completed  {completed.trajectory_id} {completed.termination.value} "
    )
    reward = samples["RewardObserved"]
    assert isinstance(reward, RewardObserved)
    assert f"quality={reward.quality:.3f}" in line(f"reward     {reward.trajectory_id} ")
    snapshot = samples["PolicySnapshot"]
    assert isinstance(snapshot, PolicySnapshot)
    assert f"version={snapshot.version}" in line(f"policy     tenant={snapshot.tenant} ")
    letter = samples["DeadLetter"]
    assert isinstance(letter, DeadLetter)
    assert f"error={letter.error_type}" in line(f"dead       {letter.source_topic}[")
    assert "not JSON" in line("?  ")

    # --json: the JSON of each event, on one line each; what is not JSON is left out.
    raw = agensbus("tail", bus.topic("tasks"), "--from-beginning", "--json", "--timeout", "1")

    assert raw.returncode == 0, raw.stderr
    printed = sorted(
        json.dumps(json.loads(text), sort_keys=True) for text in raw.stdout.splitlines()
    )
    sent = sorted(json.dumps(json.loads(value), sort_keys=True) for _, value in values[:-1])
    assert printed == sent
    assert "not JSON, left out" in raw.stderr


def test_tail_starts_at_the_end_and_exits_1_short_of_max(bus: Bus, agensbus: Agensbus) -> None:
    asyncio.run(_produce(bus, [(b"old", encode(build_samples()["TaskSubmitted"]))]))

    done = agensbus("tail", "tasks", "--max", "1", "--timeout", "1")

    assert done.returncode == 1
    assert done.stdout == ""
    assert f"{bus.topic('tasks')}: 0 of 1 events before the timeout" in done.stderr


def test_tail_of_a_missing_topic_is_a_user_error(agensbus: Agensbus) -> None:
    done = agensbus("tail", "nope", "--timeout", "1")

    assert done.returncode == 2
    assert "topic nope does not exist" in done.stderr
    assert "Traceback" not in done.stderr
