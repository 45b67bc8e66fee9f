"""``agensbus policy evaluate``: estimate what a policy file would earn, from the decisions,
trajectories and rewards another policy logged (services.policy.ope), without running it."""

import asyncio
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from rich.table import Table

from schemas.events import Decision, RewardObserved, TrajectoryCompleted
from schemas.topics import topic_of
from services.cli._errors import UserError
from services.cli._render import echo_json, listing, make_console
from services.cli._settings import KAFKA_FIELDS, require_bootstrap, settings_from
from services.cli.policy import POLICY_FILE, load_policy_file
from services.cli.topics import check_topic
from services.policy.analysis import evaluation_figures, logged_fold_mismatch
from services.policy.ope import Evaluation, Joined, TargetPolicy, evaluate, join
from services.runtime.codec import Rejected, decode
from services.runtime.reading import Record, read_to_end
from services.runtime.settings import Settings, settings_options

Logged = Decision | TrajectoryCompleted | RewardObserved
_LOGGED: dict[str, type[Logged]] = {
    model.__name__: model for model in (Decision, TrajectoryCompleted, RewardObserved)
}
_TOPICS = tuple(topic_of(model) for model in _LOGGED.values())


@dataclass
class Gathered:
    """The logged events found, and what was passed over."""

    events: list[Logged] = field(default_factory=list)
    other: int = 0
    """Events of other kinds (tasks, outcomes, ...)."""
    unreadable: list[str] = field(default_factory=list)
    """Where and why a record could not be read."""

    def add(self, where: str, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            self.unreadable.append(f"{where}: not JSON")
            return
        kind = data.get("event_type") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            self.unreadable.append(f"{where}: not an agensbus event (no event_type)")
            return
        model = _LOGGED.get(kind)
        if model is None:
            self.other += 1
            return
        parsed = decode(raw, model)
        if isinstance(parsed, Rejected):
            self.unreadable.append(f"{where}: {parsed.reason}")
        else:
            self.events.append(parsed)


def read_files(files: Iterable[IO[bytes]], gathered: Gathered) -> None:
    """Every non-blank line of JSON-lines files (as ``agensbus tail --json`` prints them);
    a line that is no readable event is the user's to fix (exit 2, naming each)."""
    for file in files:
        for number, line in enumerate(file, 1):
            if line.strip():
                gathered.add(f"{file.name} line {number}", line)
    if gathered.unreadable:
        raise UserError(f"the events cannot be read:\n{listing(gathered.unreadable)}")


async def read_topics(settings: Settings, gathered: Gathered, timeout_s: float) -> None:
    """The three topics whole, as they are now. A record the services could not have
    written (it would have been dead-lettered) is counted and passed over, not fatal."""
    for name in _TOPICS:
        topic = settings.topic(name)
        await check_topic(settings, topic)

        def add(record: Record, topic: str = topic) -> None:
            gathered.add(f"{topic}[{record.partition}]@{record.offset}", record.value or b"")

        await read_to_end(settings, topic, add, timeout_s=timeout_s)


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def evaluation_json(
    path: Path, evaluation: Evaluation, joined: Joined, gathered: Gathered
) -> dict[str, Any]:
    return {
        "policy": str(path),
        "estimates": {
            f.estimator.replace(" ", "_"): {
                "estimate": _finite(f.estimate),
                "ci95_half_width": _finite(f.half_width),
            }
            for f in evaluation_figures(evaluation)
        },
        "effective_sample_size": evaluation.snips.effective_sample_size,
        "trajectories": len(joined.trajectories),
        "matched": evaluation.matched,
        "unfinished": joined.unfinished,
        "unrewarded": joined.unrewarded,
        "incomplete": joined.incomplete,
        "other_events": gathered.other,
        "unreadable_records": len(gathered.unreadable),
    }


@click.command("evaluate")
@POLICY_FILE
@click.argument("events", metavar="[EVENTS.jsonl]...", nargs=-1, type=click.File("rb"))
@click.option(
    "--from-kafka",
    is_flag=True,
    help="Read the decisions, trajectories and rewards topics whole, as they are now (no "
    "consumer group: nobody's offsets move).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1.0),
    default=120.0,
    show_default=True,
    help="With --from-kafka: seconds allowed for reading each topic.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@settings_options(KAFKA_FIELDS)
def evaluate_command(
    policy_file: Path,
    events: tuple[IO[bytes], ...],
    from_kafka: bool,
    timeout_s: float,
    as_json: bool,
    **flags: Any,
) -> None:
    """Estimate what POLICY_FILE would earn on the tasks another policy routed, from the
    events that policy logged (off-policy evaluation), without running it.

    The events are the Decision, TrajectoryCompleted and RewardObserved events of the
    logging deployment: read from its topics with --from-kafka, or from JSON-lines files
    (- for stdin) such as

    \b
        for t in decisions trajectories rewards; do
          agensbus tail $t --from-beginning --timeout 5 --json >> events.jsonl
        done

    Each whole trajectory is weighed by how likely POLICY_FILE (its graph and its selection
    rules) was to take every logged step, over the propensity the router logged; a
    trajectory's reward is the policy's own reward (its `reward` section) of the judged
    quality, tokens and retries.
    Prints the logging policy's mean reward and the IPS, SNIPS and doubly robust estimates
    of the target's, with 95% intervals where they exist.

    A deterministic router (paper mode: every propensity 1) only ever logs the one action
    it chose, so a policy that differs from it can be evaluated only where they agree: log
    with a stochastic arm (selection temperature above 0, e.g. the +softmax switch).
    """
    if not events and not from_kafka:
        raise UserError("no events to evaluate on: give EVENTS.jsonl files, or --from-kafka")
    document, graph = load_policy_file(policy_file)
    gathered = Gathered()
    read_files(events, gathered)
    if from_kafka:
        settings = settings_from(flags)
        require_bootstrap(settings)
        try:
            asyncio.run(read_topics(settings, gathered, timeout_s))
        except TimeoutError:
            raise UserError(
                f"reading the topics took longer than --timeout {timeout_s:g} s"
            ) from None
    mine = [event for event in gathered.events if event.tenant == document.tenant]
    joined = join(mine, document.reward)
    if not joined.trajectories:
        raise UserError(
            f"no whole trajectory of tenant {document.tenant!r} in the events: evaluation "
            "needs each trajectory's Decision events, its TrajectoryCompleted and a "
            f"RewardObserved (found {len(mine)} events of the tenant: {joined.unfinished} "
            f"unfinished, {joined.unrewarded} unrewarded, {joined.incomplete} with a decision "
            "missing or listing no candidates)"
        )
    target = TargetPolicy(graph, document.selection)
    mismatch = logged_fold_mismatch(joined.trajectories, document.fold)
    if mismatch is not None:
        trajectory_id, why = mismatch
        raise UserError(
            f"trajectory {trajectory_id} was logged by a router that folds states differently "
            f"from the policy ({why}): its nodes cannot be looked up in this policy"
        )
    try:
        evaluation = evaluate(target, joined.trajectories)
    except ValueError as error:
        raise UserError(str(error)) from None
    if as_json:
        echo_json(evaluation_json(policy_file, evaluation, joined, gathered))
        return
    console = make_console()
    table = Table(title=f"{policy_file} on {len(joined.trajectories)} logged trajectories")
    for header in ("estimator", "mean reward", "95% interval", "note"):
        table.add_column(header, justify="left" if header in ("estimator", "note") else "right")
    for f in evaluation_figures(evaluation):
        half = f.half_width
        interval = "" if half is None or math.isnan(half) else f"± {half:.4f}"
        estimate = "-" if math.isnan(f.estimate) else f"{f.estimate:.4f}"
        table.add_row(f.estimator, estimate, interval, f.note)
    console.print(table)
    console.print(
        f"{evaluation.matched} of {len(joined.trajectories)} trajectories are ones the policy "
        f"could have produced; left out: {joined.unfinished} unfinished, {joined.unrewarded} "
        f"unrewarded, {joined.incomplete} with a decision missing or listing no candidates "
        f"(a deterministic router lists none where its prior chose); {gathered.other} other "
        f"events, {len(gathered.unreadable)} unreadable records"
    )
    if evaluation.matched == 0:
        console.print(
            "The policy would have taken none of the logged trajectories, so nothing in this "
            "log speaks for it: log with a stochastic arm (temperature above 0)."
        )
