"""Off-policy evaluation on what crossed Kafka: a deployment routing with a stochastic arm,
its topics read back with ``agensbus tail --json`` (and directly, with --from-kafka), and
the learner's newest snapshot evaluated on them with ``agensbus policy evaluate``, all as a
user runs them."""

import json
import os
from pathlib import Path

import pytest

from tests.e2e.support import deployment, newest_snapshot, run, small_scenario
from tests.e2e.support_up import cli


def agensbus(env: dict[str, str], *args: str) -> str:
    done = cli(env, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_learned_policy_is_evaluated_on_the_logged_topics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    scenario = small_scenario(tmp_path, per_class=2)
    with deployment(
        kafka_bootstrap, scenario, tmp_path / "logs", "agensbus-free+softmax"
    ) as deployed:
        _, observed = run(deployed.replay(concurrency=1).run(range(1, 3)))
        env = {**os.environ, **deployed.bus.env}
        events = tmp_path / "events.jsonl"
        for topic in ("decisions", "trajectories", "rewards"):
            read = agensbus(env, "tail", topic, "--from-beginning", "--timeout", "3", "--json")
            with events.open("a") as file:
                file.write(read)
        newest = newest_snapshot(deployed.bus)
    policy = tmp_path / "learned.json"
    policy.write_text(newest.policy.model_dump_json())

    data = json.loads(agensbus(env, "policy", "evaluate", str(policy), str(events), "--json"))
    # Read straight from the topics, the same events give the same figures (summed in
    # another order: equal to rounding).
    direct = json.loads(agensbus(env, "policy", "evaluate", str(policy), "--from-kafka", "--json"))
    figures = ("estimates", "effective_sample_size")
    assert {k: v for k, v in direct.items() if k not in figures} == {
        k: v for k, v in data.items() if k not in figures
    }
    assert direct["effective_sample_size"] == pytest.approx(data["effective_sample_size"])
    for name, numbers in data["estimates"].items():
        for key, value in numbers.items():
            expected = None if value is None else pytest.approx(value)
            assert direct["estimates"][name][key] == expected
    # Every trajectory came back whole through the topics: all its decisions (each with the
    # candidates it was chosen among), its end and its reward.
    assert data["trajectories"] == len(observed.completed) == 2 * 2 * 8
    assert (data["unfinished"], data["unrewarded"], data["incomplete"]) == (0, 0, 0)
    assert 0 < data["matched"] <= data["trajectories"]
    estimates = data["estimates"]
    for name in ("logged_policy", "IPS", "SNIPS", "doubly_robust"):
        assert isinstance(estimates[name]["estimate"], float)
