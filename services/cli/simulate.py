"""``agensbus simulate``: run a policy against a simulated scenario, offline, with ground truth."""

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from services.cli._errors import UserError
from services.cli._options import scenario_option
from services.policy import PolicyGraph
from services.policy.arms import deployed_arm
from services.runtime.policy_files import PolicyFileError, load_graph
from services.runtime.policy_files import save_policy as write_policy
from services.sim.engine import Engine, EpochReport, TrajectoryRecord
from services.sim.loader import ScenarioError, load_scenario
from services.sim.oracle import Oracle
from services.sim.scenario import Scenario

OnTrajectory = Callable[[TrajectoryRecord], None]


@click.command("simulate")
@scenario_option
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=10_000),
    default=8,
    show_default=True,
    help="Epochs to run; each epoch runs every class's tasks once, in a seeded order.",
)
@click.option(
    "--policy",
    default="agensbus",
    show_default=True,
    help="The arm to run, any that `agensbus bench learning --arms` takes but a warm one: "
    "agensbus, the recommended rules (the fixed pipeline is a floor per class, see "
    "docs/learning.md); fixed, the plan's cells on their default variants, never adapting; "
    "paper, the paper's selector exactly; or ARM+SWITCH[+SWITCH...].",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the world, the judges and the task order; the same seed gives the same run.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the per-epoch numbers and the oracle as JSON on stdout instead of tables.",
)
@click.option(
    "--load-policy",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Warm start from this policy file (agensbus.policy/3, /2 or /1); its fold and reward "
    "settings are "
    "used. Default: start from an empty graph.",
)
@click.option(
    "--save-policy",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the graph as it stands after the last epoch to this file. Default: not saved.",
)
def simulate(
    scenario_name: str,
    epochs: int,
    policy: str,
    seed: int,
    as_json: bool,
    load_policy: Path | None,
    save_policy: Path | None,
) -> None:
    """Run POLICY for EPOCHS epochs in a simulated scenario and report, per epoch, the mean
    true (latent) quality, the judges' score, tokens per trajectory, the share of skip
    decisions and the regret against the scenario's oracle."""
    try:
        arm = deployed_arm(policy)
    except KeyError as error:
        raise UserError(f"--policy: {error.args[0]}") from None
    except ValueError as error:
        raise UserError(f"--policy: {error}") from None
    try:
        scenario = load_scenario(scenario_name)
    except ScenarioError as error:
        raise UserError(str(error)) from None
    graph, reward, version = PolicyGraph(), arm.reward, 0
    setup = arm.setup(scenario, seed)
    if load_policy is not None:
        try:
            document, graph = load_graph(load_policy)
        except PolicyFileError as error:
            raise UserError(str(error)) from None
        reward, version = document.reward, document.version
        setup = dataclasses.replace(setup, fold=document.fold)
    engine = Engine(scenario, setup, seed=seed, reward=reward, graph=graph)
    started = time.perf_counter()
    with _progress(epochs * scenario.tasks_per_epoch) as advance:
        reports = engine.run(epochs, on_trajectory=advance)
    elapsed = time.perf_counter() - started
    if save_policy is not None:
        document = graph.to_document(
            version=version + 1, fold=setup.fold, selection=setup.selection, reward=reward
        )
        try:
            write_policy(save_policy, document)
        except OSError as error:
            raise UserError(f"cannot write policy file {save_policy}: {error.strerror}") from None
    if as_json:
        click.echo(json.dumps(_as_data(scenario, policy, seed, reports, engine.regret_oracle)))
    else:
        _print_tables(scenario, policy, seed, reports, engine.regret_oracle)
    trajectories = sum(r.trajectories for r in reports)
    click.echo(f"simulated {trajectories} trajectories in {elapsed:.2f} s", err=True)


@contextmanager
def _progress(total: int) -> Iterator[OnTrajectory]:
    """A progress bar on stderr when it is a terminal; stdout stays clean for --json."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _record: None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=total)
        yield lambda _record: progress.advance(task)


def _oracle_data(scenario: Scenario, oracle: Oracle) -> dict[str, dict[str, Any]]:
    data = {}
    for name in scenario.classes:
        best = oracle.for_class(name)
        row = best.best
        data[name] = {
            "expected_reward": float(best.reward[row]),
            "expected_quality": float(best.quality[row]),
            "expected_tokens": float(best.tokens[row]),
            "actions": list(best.actions(row)),
        }
    return data


def _as_data(
    scenario: Scenario, policy: str, seed: int, reports: list[EpochReport], oracle: Oracle
) -> dict[str, Any]:
    return {
        "scenario": scenario.name,
        "policy": policy,
        "seed": seed,
        "epochs": [dataclasses.asdict(r) for r in reports],
        "oracle": _oracle_data(scenario, oracle),
    }


def _print_tables(
    scenario: Scenario, policy: str, seed: int, reports: list[EpochReport], oracle: Oracle
) -> None:
    console = Console()
    epochs = Table(title=f"{scenario.name}: policy {policy}, seed {seed}")
    for header in ("epoch", "true quality", "judge", "tokens/traj", "skip share", "regret"):
        epochs.add_column(header, justify="right")
    for r in reports:
        epochs.add_row(
            str(r.epoch),
            f"{r.true_quality:.3f}",
            f"{r.judge_score:.3f}",
            f"{r.tokens_per_trajectory:,.0f}",
            f"{r.skip_share:.1%}",
            f"{r.regret:.3f}",
        )
    console.print(epochs)
    # The first epoch against the last shows what was learned; one epoch is both.
    shown = [reports[0], reports[-1]] if len(reports) > 1 else reports[:1]
    classes = Table(title="true quality per class")
    headers = ("class", "regime", *(f"epoch {r.epoch}" for r in shown), "oracle path")
    for header in headers:
        classes.add_column(header, justify="left" if header in ("class", "regime") else "right")
    for name, task_class in scenario.classes.items():
        best = oracle.for_class(name)
        classes.add_row(
            name,
            task_class.regime.value,
            *(_quality(r, name) for r in shown),
            f"{best.quality[best.best]:.3f}",
        )
    console.print(classes)


def _quality(report: EpochReport, name: str) -> str:
    value = report.per_class.get(name)
    return "-" if value is None else f"{value:.3f}"
