"""Records that fail the same way on every retry, mixed with 300 ordinary tasks on a real
broker with every service a child process: each is dead-lettered exactly once with its
reason and its partition goes on; a step's 2 MiB evidence document travels by reference
to the next cell and the judge, and its trajectory completes."""

import asyncio
import base64
import hashlib
import json
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import DeadLetter, Decision, StepOutcome, TrajectoryCompleted
from schemas.records import PayloadRef
from services.demo.replay import Observed
from services.runtime.broker import EmbeddedKafka
from services.runtime.payloads import marker
from tests.e2e.support import (
    SHIPPED,
    assert_backed_up_exactly_once,
    deployment,
    publish,
    replay_with,
    run,
    small_scenario,
    until,
)

ORDINARY = 300
DOCUMENT_BYTES = 2 * 1024 * 1024
GOAL_BYTES = 900 * 1024
#: A digest no payload in the store has.
MISSING = "sha256:" + "0" * 64


def scenario_with_a_document_step(directory: Path) -> Path:
    """The shipped scenario with 300 tasks an epoch, and one more task of a class whose
    third cell (web_search_primary, after planner and memory) returns one 2 MiB item."""
    spec = yaml.safe_load((SHIPPED / "security-advisories.yaml").read_text())
    classes = spec["classes"]
    for index, task_class in enumerate(classes):
        task_class["count"] = ORDINARY // len(classes) + (index < ORDINARY % len(classes))
    bulky = {
        **classes[0],
        "name": "bulky",
        "count": 1,
        "evidence": {"memory": 0, "web_search_primary": 1, "web_search_secondary": 0},
        "evidence_bytes": DOCUMENT_BYTES,
    }
    spec["classes"] = [*classes, bulky]
    path = directory / "document-step.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def missing_payload(state_handoff: dict[str, object]) -> None:
    """Make a handoff (as JSON data) refer to a payload the store does not hold."""
    evidence = state_handoff.setdefault("evidence", [])
    assert isinstance(evidence, list)
    evidence.append(marker(MISSING))
    ref = PayloadRef(digest=MISSING, bytes=10, field="evidence")
    state_handoff["payloads"] = [ref.model_dump()]


def poison_records(
    decision: Decision, completed: TrajectoryCompleted
) -> dict[str, tuple[str, bytes]]:
    """One record per service that it cannot process, however often it is retried: by
    key, its topic and value."""
    task = {"task_id": "poison-router", "goal": "g" * GOAL_BYTES, "task_class": "C1"}

    worker = decision.model_dump(mode="json")
    worker |= {"trajectory_id": "poison-worker", "decision_id": f"poison-worker:{decision.step}"}
    worker["state"]["trajectory_id"] = "poison-worker"
    missing_payload(worker["state"]["handoff"])

    judge = completed.model_dump(mode="json") | {"trajectory_id": "poison-judge"}
    judge["state"]["trajectory_id"] = "poison-judge"
    missing_payload(judge["state"]["handoff"])

    # The judge scores it; the learner cannot fold a signature like this into its graph.
    learner = completed.model_dump(mode="json") | {"trajectory_id": "poison-learner"}
    learner["state"]["trajectory_id"] = "poison-learner"
    learner["state"]["visited"][0]["signature"] = "not a signature"

    return {
        "poison-router": ("tasks", json.dumps(task).encode()),
        "poison-worker": ("decisions", Decision.model_validate(worker).model_dump_json().encode()),
        "poison-judge": ("trajectories", json.dumps(judge).encode()),
        "poison-learner": ("trajectories", json.dumps(learner).encode()),
    }


#: What each service must say about the record it cannot process.
EXPECTED = {
    "poison-router": ("router", "over_limit", "AGENSBUS_LIMIT_GOAL_BYTES"),
    "poison-worker": ("worker", "payload_missing", MISSING),
    "poison-judge": ("judge", "payload_missing", MISSING),
    "poison-learner": ("learner", "invalid_signature", "step 0"),
}


def total(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_poison_records_are_dead_lettered_once_and_documents_travel_by_reference(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    scenario = scenario_with_a_document_step(tmp_path)
    payloads = tmp_path / "payloads"
    with deployment(
        kafka_bootstrap,
        scenario,
        tmp_path,
        mode="fixed",
        snapshot_every=25,
        extra_env={"AGENSBUS_PAYLOAD_DIR": str(payloads)},
    ) as deployed:
        replay = deployed.replay(concurrency=32)

        async def inject(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 5, timeout_s=120)
            decisions = await asyncio.to_thread(deployed.bus.records, "decisions")
            invoke = next(
                d
                for r in decisions
                if (d := Decision.model_validate_json(r.value)).action_kind == "invoke"
            )
            completed = next(iter(observed.completed.values()))
            for key, (topic, value) in poison_records(invoke, completed).items():
                await publish(deployed, topic, [(key.encode(), value)])

        observed = run(replay_with(replay, range(1, 2), inject), timeout_s=600)
        services = deployed.stack.services
        workers = [services[n].metrics_url for n in ("worker-1", "worker-2")]
        fetched = {
            "worker": sum(total(u, "agensbus_payloads_total", op="fetched") for u in workers),
            "judge": total(services["judge"].metrics_url, "agensbus_payloads_total", op="fetched"),
        }
        poisoned = {
            service: sum(total(u, "agensbus_poison_records_total", service=service) for u in urls)
            for service, urls in {
                "worker": workers,
                "judge": [services["judge"].metrics_url],
            }.items()
        }
        letters = [DeadLetter.model_validate_json(r.value) for r in deployed.bus.records("dlq")]
        outcomes = [
            StepOutcome.model_validate_json(r.value) for r in deployed.bus.records("outcomes")
        ]

    # Every ordinary task completed once and was backed up once; the bad records held
    # nothing up.
    injected = {"poison-judge", "poison-learner"}
    assert_backed_up_exactly_once(deployed.bus, ORDINARY + 1, injected)

    # Each bad record was dead-lettered exactly once, by the service it failed on, with
    # its reason and its coordinates; nothing else was.
    by_key = {base64.b64decode(letter.key_b64 or "").decode(): letter for letter in letters}
    assert len(letters) == len(EXPECTED) == len(by_key), letters
    for key, (service, error_type, named) in EXPECTED.items():
        letter = by_key[key]
        assert (letter.service, letter.error_type) == (service, error_type), letter
        assert named in letter.reason
        assert letter.partition is not None and letter.offset is not None
    router_letter = by_key["poison-router"]
    assert router_letter.payload_truncated
    assert router_letter.payload_bytes is not None and router_letter.payload_bytes > GOAL_BYTES
    assert poisoned == {"worker": 1.0, "judge": 1.0}

    # The document went into the store once and travelled as a reference with its digest.
    (bulky,) = [c for c in observed.completed.values() if c.task_class == "bulky"]
    (ref,) = bulky.state.handoff.payloads
    assert (ref.field, ref.bytes) == ("evidence", DOCUMENT_BYTES)
    assert marker(ref.digest) in bulky.state.handoff.evidence
    stored = payloads / ref.digest.removeprefix("sha256:")[:2] / ref.digest.removeprefix("sha256:")
    assert "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest() == ref.digest
    (third,) = [o for o in outcomes if o.trajectory_id == bulky.trajectory_id and o.step == 2]
    assert third.delta.payloads == [ref]
    assert third.delta.evidence == [marker(ref.digest)]
    # The cells after it and the judge read it from the store.
    assert fetched["worker"] >= len(bulky.state.visited) - 3
    assert fetched["judge"] >= 1


def test_a_broker_killed_and_restarted_mid_run_loses_nothing_and_poisons_nothing(
    tmp_path: Path,
) -> None:
    # A broker of its own: the test kills it.
    scenario = small_scenario(tmp_path, per_class=4)
    with EmbeddedKafka() as broker, deployment(broker.bootstrap, scenario, tmp_path) as deployed:
        replay = deployed.replay(concurrency=8)
        # The outage itself is a pause in everything: it must not count as a stall.
        replay.stall_s = 180.0
        restarted: list[bool] = []

        async def crash_the_broker(observed: Observed) -> None:
            await until(lambda: len(observed.completed) >= 4, timeout_s=120)
            await asyncio.to_thread(broker.restart, kill=True)
            restarted.append(True)

        observed = run(replay_with(replay, range(1, 2), crash_the_broker), timeout_s=600)
        assert restarted
        assert len(observed.learned) == 32
        assert_backed_up_exactly_once(deployed.bus, 32)
        # An outage is a transient failure: nothing was dead-lettered for it.
        assert deployed.bus.records("dlq") == []
