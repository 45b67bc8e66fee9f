"""``agensbus policy fetch`` on the real broker: the newest snapshot of the tenant asked for
becomes a policy file that ``policy inspect`` reads, the newest snapshots of a sharded
policy's shards one merged file; a topic without one is a clear error."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.events import PolicySnapshot
from schemas.policy_file import PolicyDocument
from services.cli import cli
from services.policy import PolicyGraph
from services.runtime.codec import encode
from services.runtime.settings import Settings
from tests.integration.support_broker import create_topic, produce, run, unique
from tests.unit.support_learner import assert_same_graph, backed_up_directly, real_pairs

pytestmark = pytest.mark.integration


def snapshot(tenant: str, version: int, trajectories: int) -> PolicySnapshot:
    graph = backed_up_directly(real_pairs(trajectories, prefix=f"{tenant}-{version}"))
    document = graph.to_document(tenant=tenant, version=version)
    return PolicySnapshot(tenant=tenant, version=version, policy=document, backed_up=trajectories)


def fetch(bootstrap: str, prefix: str, out: Path, *args: str) -> tuple[int, str]:
    env = {"AGENSBUS_KAFKA_BOOTSTRAP": bootstrap, "AGENSBUS_TOPIC_PREFIX": prefix}
    done = CliRunner().invoke(cli, ["policy", "fetch", str(out), *args], env=env)
    return done.exit_code, done.output


def test_the_newest_snapshot_of_the_tenant_is_written_and_inspected(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = unique("fetch")
    topic = Settings(topic_prefix=prefix).topic("policy")
    run(create_topic(kafka_bootstrap, topic, partitions=1))
    # Older and newer versions of one tenant, and another tenant's newer one after them.
    written = [snapshot("default", 1, 2), snapshot("default", 3, 6), snapshot("other", 9, 1)]
    run(produce(kafka_bootstrap, topic, [(s.tenant.encode(), encode(s)) for s in written]))

    out = tmp_path / "learned.json"
    code, output = fetch(kafka_bootstrap, prefix, out)
    assert code == 0, output
    assert "version 3, 6 trajectories backed up" in output
    assert json.loads(out.read_text()) == json.loads(written[1].policy.model_dump_json())

    inspected = CliRunner().invoke(cli, ["policy", "inspect", str(out), "--json"])
    assert inspected.exit_code == 0, inspected.output
    summary = json.loads(inspected.output)["summary"]
    assert (summary["tenant"], summary["version"]) == ("default", 3)

    code, output = fetch(kafka_bootstrap, prefix, tmp_path / "other.json", "--tenant", "other")
    assert code == 0, output
    assert json.loads((tmp_path / "other.json").read_text())["version"] == 9


def test_a_tenant_without_a_snapshot_and_a_missing_topic_are_one_line_errors(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = unique("fetch")
    out = tmp_path / "none.json"
    code, output = fetch(kafka_bootstrap, prefix, out)
    assert code == 2 and "does not exist" in output, output

    run(create_topic(kafka_bootstrap, Settings(topic_prefix=prefix).topic("policy"), 1))
    code, output = fetch(kafka_bootstrap, prefix, out, "--tenant", "nobody")
    assert code == 2 and "holds no policy of tenant 'nobody'" in output, output
    assert len(output.strip().splitlines()) == 1
    assert not out.exists()


def test_the_shards_of_a_sharded_policy_are_fetched_merged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = unique("fetch")
    topic = Settings(topic_prefix=prefix).topic("policy")
    run(create_topic(kafka_bootstrap, topic, partitions=1))
    pairs = real_pairs(12, prefix="sharded")
    halves = [pairs[:5], pairs[5:]]
    written = [
        PolicySnapshot(
            version=version,
            shard=shard,
            shards=2,
            policy=backed_up_directly(part).to_document(version=version),
            backed_up=len(part),
        )
        for shard, version, part in [(0, 1, halves[0][:2]), (0, 4, halves[0]), (1, 2, halves[1])]
    ]
    keyed = [(f"default/{s.shard}".encode(), encode(s)) for s in written]
    run(produce(kafka_bootstrap, topic, keyed))

    out = tmp_path / "merged.json"
    code, output = fetch(kafka_bootstrap, prefix, out)
    assert code == 0, output
    assert "version 6 (merged from 2 shards), 12 trajectories backed up" in output
    fetched = PolicyGraph.from_document(PolicyDocument.model_validate_json(out.read_text()))
    assert_same_graph(fetched, backed_up_directly(pairs))
