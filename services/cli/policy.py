"""``agensbus policy``: audit policy files (``agensbus.policy/3``; ``/1``, ``/2`` read as ``/3``).

``explain`` replays one paper-mode decision, ``inspect`` summarises what a policy prefers per
regime, ``validate`` runs the checks an import runs. All three read the file through
:func:`services.runtime.policy_files.load_graph`, so they accept and reject exactly what a
router or an import would. The analysis is :mod:`services.policy.analysis`'s; this module
parses the options and prints.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from schemas._types import ActionId
from schemas.policy_file import PolicyDocument
from schemas.records import FoldSpec, Regime, SelectionConfig
from services.cli._errors import UserError
from services.cli._render import echo_json, make_console, print_line
from services.policy import PolicyGraph, Signature
from services.policy.analysis import (
    Explanation,
    GroupSummary,
    explain_decision,
    fold_mismatch,
    summarize,
    unchoosable,
    why_prior_acts,
)
from services.router.core import action_score
from services.runtime.policy_files import PolicyFileError, load_graph

POLICY_FILE = click.argument(
    "policy_file", metavar="POLICY_FILE", type=click.Path(dir_okay=False, path_type=Path)
)
_ACTION_ID: TypeAdapter[str] = TypeAdapter(ActionId)
_ACTION_SYNTAX = "cell, cell.protocol, cell@model, cell.protocol@model or skip:cell"


@click.group()
def policy() -> None:
    """Fetch, explain, inspect, validate and evaluate policy files (see
    docs/policy-format.md)."""


def load_policy_file(path: Path) -> tuple[PolicyDocument, PolicyGraph]:
    try:
        return load_graph(path)
    except PolicyFileError as error:
        raise UserError(str(error)) from None


def _number(value: float, digits: int = 4) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


# --- explain ---------------------------------------------------------------------------------


def parse_signature(text: str, fold: FoldSpec) -> Signature:
    text = text.strip()
    try:
        signature = Signature.parse(text)
    except ValueError as error:
        raise UserError(f"--signature: {error}") from None
    if signature.text != text:
        # The graph is keyed by canonical text; another spelling would silently miss its node.
        raise UserError(
            f"--signature {text!r} is not canonical; the router writes {signature.text!r}"
        )
    problem = fold_mismatch(signature, fold)
    if problem is not None:
        raise UserError(f"--signature {text!r} does not fit the policy's fold: {problem}")
    return signature


def _action_problem(item: str) -> str | None:
    if not item:
        return "an empty entry"
    try:
        _ACTION_ID.validate_python(item)
    except ValidationError:
        return f"{item!r} is not an action id ({_ACTION_SYNTAX})"
    return None


def parse_candidates(text: str) -> list[str]:
    """Split ``a,b,skip:c`` into actions, rejecting empty, malformed and repeated entries."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise UserError(
            "--candidates is empty: list the legal actions in tie order, "
            "e.g. planner,solver.concise@fast,skip:planner"
        )
    problems = [p for p in map(_action_problem, items) if p is not None]
    repeated = sorted({item for item in items if item and items.count(item) > 1})
    if repeated:
        problems.append(f"{', '.join(repeated)} listed more than once")
    if problems:
        raise UserError(f"--candidates {text!r}: {'; '.join(problems)}")
    return items


def _check_prior_can_act(candidates: Sequence[str], config: SelectionConfig, n: int) -> None:
    if unchoosable(candidates, config, n):
        raise UserError(
            f"--candidates has only skips, but the rule-based prior acts here "
            f"({why_prior_acts(config, n)}) and never skips: include the invoke candidates"
        )


def explanation_json(
    path: Path, document: PolicyDocument, explanation: Explanation
) -> dict[str, Any]:
    selection = explanation.selection
    return {
        "policy": {"file": str(path), "tenant": document.tenant, "version": document.version},
        "selection_config": explanation.config.model_dump(mode="json"),
        "signature": explanation.signature,
        "signature_in_policy": explanation.in_policy,
        "node_visits": selection.node_visits,
        "exploration_c": selection.exploration_c,
        "prior_acts": explanation.prior_acts,
        "action": selection.action,
        "index": selection.index,
        "reason": selection.reason.value,
        "reason_text": explanation.reason_text,
        "propensity": selection.propensity,
        "scores": [action_score(s).model_dump(mode="json") for s in explanation.scores],
        "notes": explanation.notes,
    }


def _action_table(title: str, actions: Sequence[str], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    # Numbers never fold; a long action id folds instead when the terminal is narrow.
    table.add_column(
        "action", overflow="fold", min_width=min(12, max(map(len, actions), default=6))
    )
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True, min_width=max(len(name), 6))
    return table


def _render_explanation(
    console: Console, path: Path, document: PolicyDocument, ex: Explanation
) -> None:
    sel, cfg = ex.selection, ex.config
    where = f"in the policy, N = {sel.node_visits}" if ex.in_policy else "not in the policy, N = 0"
    print_line(console, "policy", f"{path}  (tenant {document.tenant}, version {document.version})")
    print_line(console, "signature", f"{ex.signature}  ({where})")
    print_line(
        console,
        "c",
        f"max({cfg.c_min:g}, {cfg.c_initial:g}·2^(-{sel.node_visits}/{cfg.c_half_life:g}))"
        f" = {sel.exploration_c:.4f}",
    )
    columns = ("score", "mean", "bonus", "penalty", "visits", "fails")
    title = "candidates (tie order; ▶ marks the choice)"
    table = _action_table(title, [s.action for s in ex.scores], columns)
    for i, s in enumerate(ex.scores):
        chosen = i == sel.index
        table.add_row(
            f"▶ {i + 1}" if chosen else str(i + 1),
            s.action,
            _number(s.score),
            _number(s.mean) if s.visits else "-",
            _number(s.bonus),
            _number(s.penalty),
            str(s.visits),
            str(s.failures),
            style="bold" if chosen else None,
        )
    console.print(table)
    print_line(console, "chosen", f"{sel.action}  (candidate {sel.index + 1})")
    print_line(console, "reason", f"{sel.reason.value}: {ex.reason_text}")
    print_line(console, "propensity", f"{sel.propensity:g}")
    for note in ex.notes:
        print_line(console, "note", note)


@policy.command("explain")
@POLICY_FILE
@click.option(
    "--signature",
    "signature_text",
    required=True,
    metavar="SIG",
    help="The node, in canonical text: v1|<regime>|<7 mask bits>|c<C>.u<U>.r<R>.e<E>"
    "[|key=value...]; its extra keys must be the policy's fold keys.",
)
@click.option(
    "--candidates",
    "candidates_text",
    required=True,
    metavar="A,B,...",
    help="The legal actions, comma-separated, in tie order (invokes in plan order, then "
    "skips), e.g. planner,solver.concise@fast,skip:planner.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print one JSON object instead of tables (default: tables). A never-tried "
    "candidate's score and bonus (+inf) are written as null.",
)
def explain_command(
    policy_file: Path, signature_text: str, candidates_text: str, as_json: bool
) -> None:
    """Replay the paper-mode decision at one node of POLICY_FILE.

    Shows every candidate's UCB score (mean + c·sqrt(ln(N+1)/n) - λ·f/(n+f); inf when never
    tried), mean, bonus, penalty, visits and failures; the chosen action, why, its
    propensity, the exploration constant c and the node's visits N. Below the confidence
    threshold the rule-based prior acts: the first candidate that is not a skip.
    """
    candidates = parse_candidates(candidates_text)
    document, graph = load_policy_file(policy_file)
    signature = parse_signature(signature_text, document.fold).text
    _check_prior_can_act(candidates, document.selection, graph.visits_of(signature))
    explanation = explain_decision(graph, document.selection, signature, candidates)
    if as_json:
        echo_json(explanation_json(policy_file, document, explanation))
    else:
        _render_explanation(make_console(), policy_file, document, explanation)


# --- inspect ---------------------------------------------------------------------------------


def _optional(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary_json(path: Path, document: PolicyDocument, graph: PolicyGraph) -> dict[str, Any]:
    return {
        "file": str(path),
        "format": document.format,
        "tenant": document.tenant,
        "version": document.version,
        "created_at": None if document.created_at is None else document.created_at.isoformat(),
        "fold": document.fold.model_dump(mode="json"),
        "selection": document.selection.model_dump(mode="json"),
        "reward": document.reward.model_dump(mode="json"),
        "nodes": graph.node_count,
        "edges": graph.edge_count,
        "actions": len(graph.actions),
        "total_visits": graph.total_node_visits,
    }


def _group_json(group: GroupSummary, top: int) -> dict[str, Any]:
    ranked = group.ranked()
    shown = ranked[:top] if top else ranked
    return {
        "regime": group.regime.value,
        "keys": dict(group.keys),
        "nodes": group.nodes,
        "visits": group.visits,
        "actions_total": len(ranked),
        "actions": [
            {
                "action": a.action,
                "visits": a.visits,
                "failures": a.failures,
                "mean_reward": a.mean_reward,
                "failure_rate": a.failure_rate,
                "greedy_nodes": a.greedy_nodes,
            }
            for a in shown
        ],
    }


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return "  ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return "-" if value is None else str(value)


def _render_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="policy", title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in summary.items():
        table.add_row(name, _flat(value))
    console.print(table)


def _render_group(console: Console, group: dict[str, Any]) -> None:
    label = " · ".join([group["regime"], *(f"{k}={v}" for k, v in group["keys"].items())])
    title = f"{label}: {group['nodes']} nodes, {group['visits']} visits"
    columns = ("greedy at", "mean reward", "visits", "failures", "failure rate")
    table = _action_table(title, [a["action"] for a in group["actions"]], columns)
    for rank, a in enumerate(group["actions"], 1):
        table.add_row(
            str(rank),
            a["action"],
            f"{a['greedy_nodes']}/{group['nodes']}",
            _optional(a["mean_reward"]),
            str(a["visits"]),
            str(a["failures"]),
            _optional(a["failure_rate"], 3),
        )
    hidden = group["actions_total"] - len(group["actions"])
    if hidden:
        table.caption = f"{hidden} more action{'s' if hidden > 1 else ''} (--top 0 shows all)"
    console.print(table)


@policy.command("inspect")
@POLICY_FILE
@click.option(
    "--regime",
    type=click.Choice([r.value for r in Regime]),
    default=None,
    help="Show only this regime's nodes (default: every regime present in the file).",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Actions shown per group, most preferred first; 0 shows all.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print one JSON object instead of tables (default: tables); a mean or failure rate "
    "with nothing to average is null.",
)
def inspect_command(policy_file: Path, regime: str | None, top: int, as_json: bool) -> None:
    """Summarise POLICY_FILE and show which actions it prefers.

    After a summary (tenant, version, fold, selection constants, nodes, edges, visits) come
    one table per regime and value of each extra fold key (e.g. task_class). Each aggregates
    that group's nodes per action: visits, visit-weighted mean reward, failure rate
    (failures / (visits + failures)) and at how many nodes the action is the greedy choice
    (the highest mean among completed edges; ties credit every tied action). Rows are sorted
    by greedy nodes, then mean reward, then visits.
    """
    document, graph = load_policy_file(policy_file)
    groups = summarize(document.nodes, None if regime is None else Regime(regime))
    summary = _summary_json(policy_file, document, graph)
    group_data = [_group_json(g, top) for g in groups]
    if as_json:
        echo_json({"summary": summary, "groups": group_data})
        return
    console = make_console()
    _render_summary(console, summary)
    if not group_data:
        console.print(f"no nodes{'' if regime is None else f' for regime {regime}'}")
    for group in group_data:
        _render_group(console, group)


# --- validate --------------------------------------------------------------------------------


@policy.command("validate")
@POLICY_FILE
def validate_command(policy_file: Path) -> None:
    """Check POLICY_FILE as an import would.

    Prints OK with its counts, or the problem (exit 2). Checks: the file is JSON, its format
    is agensbus.policy/3 (or /2 or /1, read as /3), every field has the right type and range
    (counts ≥ 0, M2 ≥ 0), signatures are unique, parse, and carry the fold's version and
    extra keys.
    """
    document, graph = load_policy_file(policy_file)
    click.echo(
        f"OK {policy_file}: {document.format}, tenant {document.tenant}, version "
        f"{document.version}: {graph.node_count} nodes, {graph.edge_count} edges, "
        f"{len(graph.actions)} actions, {graph.total_node_visits} visits"
    )
