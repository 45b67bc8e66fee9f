"""``agensbus policy fetch``: the newest policy a learner published, as a policy file, so that
``inspect``, ``explain``, ``evaluate`` and a warm start can read what a deployment learned."""

import asyncio
from pathlib import Path
from typing import Any

import click

from services.cli._errors import UserError
from services.cli._settings import KAFKA_FIELDS, require_bootstrap, settings_from
from services.cli.topics import check_topic
from services.learner.restore import newest_snapshots
from services.policy.shards import merged_document
from services.runtime.policy_files import save_policy
from services.runtime.settings import settings_options


@click.command("fetch")
@click.argument("out_file", metavar="OUT_FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tenant",
    default=None,
    help="Whose policy to fetch. Default: AGENSBUS_TENANT, else 'default'.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="Seconds allowed for reading the policy topic.",
)
@settings_options(KAFKA_FIELDS)
def fetch_command(out_file: Path, tenant: str | None, timeout_s: float, **flags: Any) -> None:
    """Write the newest policy of a tenant on the policy topic to OUT_FILE.

    The topic is read from its beginning to its current end without a consumer group, so
    nobody's offsets move; the snapshot with the highest version wins, and of a policy
    learned in shards (sharded learner replicas) the newest snapshot of every shard, merged
    into one policy. OUT_FILE is written atomically, in the policy file format
    (docs/policy-format.md):

    \b
        agensbus policy fetch learned.json
        agensbus policy inspect learned.json
    """
    settings = settings_from(flags)
    require_bootstrap(settings)
    whose = tenant or settings.tenant
    topic = settings.topic("policy")
    try:
        asyncio.run(check_topic(settings, topic))
        snapshots = asyncio.run(newest_snapshots(settings, whose, timeout_s=timeout_s))
    except TimeoutError:
        raise UserError(f"reading {topic} took longer than --timeout {timeout_s:g} s") from None
    if not snapshots:
        raise UserError(
            f"{topic} holds no policy of tenant {whose!r} yet: the learner publishes one once "
            "it has backed up a rewarded trajectory"
        )
    try:
        policy = merged_document(list(snapshots.values()))
    except ValueError as error:
        raise UserError(f"{topic}: {error}") from None
    try:
        save_policy(out_file, policy)
    except OSError as error:
        raise UserError(f"cannot write {out_file}: {error.strerror}") from None
    backed_up = sum(snapshot.backed_up for snapshot in snapshots.values())
    shards = "" if len(snapshots) == 1 else f" (merged from {len(snapshots)} shards)"
    click.echo(
        f"wrote {out_file}: tenant {whose}, version {policy.version}{shards}, "
        f"{backed_up} trajectories backed up, {len(policy.nodes)} nodes"
    )
