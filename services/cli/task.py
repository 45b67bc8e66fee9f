"""``agensbus task``: see how a task would be routed before it is submitted."""

import json
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from schemas._types import Name
from schemas.records import TaskFeatures
from services.cli._errors import UserError, describe_validation
from services.cli._render import echo_json, make_console, print_line
from services.cli.pipeline import pipeline_or_exit
from services.pipeline import DEFAULT_PIPELINE
from services.policy import (
    PolicySetup,
    candidate_actions,
    fixed_pipeline,
    signature_of,
    start_state,
)
from services.policy.pipeline import Pipeline
from services.policy.regime import REGIME_RULES, matching_rule

_NAME: TypeAdapter[str] = TypeAdapter(Name)


@click.group()
def task() -> None:
    """Look at how a task would be routed: regime, plan, first signature and candidates."""


def read_features(text: str) -> TaskFeatures:
    """Parse ``--features``: inline JSON or ``@file.json``; every problem is reported."""
    source = "--features"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise UserError(f"cannot read --features file {path}: {reason}") from None
        source = f"--features file {path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{source} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{source} must be a JSON object of task features, e.g. "
            f'{{"ambiguity_level": 0.8}}; got a {type(data).__name__}'
        )
    try:
        # strict: a JSON true or "0.8" is a mistake here, not a number.
        return TaskFeatures.model_validate(data, strict=True)
    except ValidationError as error:
        raise UserError(describe_validation(error, source)) from None


def check_task_class(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return _NAME.validate_python(value)
    except ValidationError:
        raise UserError(
            f"--task-class {value!r} is not a name: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        ) from None


def explain_task(
    features: TaskFeatures, task_class: str | None, pipeline: Pipeline | None = None
) -> dict[str, Any]:
    """Everything the router decides before the first step, as plain data."""
    setup = PolicySetup() if pipeline is None else PolicySetup(pool=pipeline.pool)
    state = start_state(
        task_id="explain",
        trajectory_id="explain",
        goal="(task explain)",
        features=features,
        setup=setup,
        task_class=task_class,
    )
    fired = matching_rule(features)
    pool = setup.pool
    return {
        "features": features.model_dump(mode="json"),
        "task_class": task_class,
        "regime": state.regime.value,
        "rule": None if fired is None else fired.evaluated(features),
        "rules": [
            {
                "regime": rule.regime.value,
                "condition": rule.condition,
                "evaluated": rule.evaluated(features),
                "matched": rule.matches(features),
            }
            for rule in REGIME_RULES
        ],
        "plan": [
            {
                "cell": name,
                "role": pool.cells[name].role.value,
                "variants": [v.action for v in pool.cells[name].variants],
            }
            for name in state.plan
        ],
        "protected": sorted(pool.protected),
        "fixed_pipeline": list(fixed_pipeline(pool, state.regime)),
        "fold_extra_keys": list(setup.fold.extra_keys),
        "signature": signature_of(state, setup),
        "candidates": candidate_actions(state, pool, allow_skip=setup.allow_skip),
    }


def _rule_status(rule: dict[str, Any], fired: str | None) -> str:
    if not rule["matched"]:
        return "no"
    return "fired" if rule["regime"] == fired else "yes, but an earlier rule fired"


def _render(console: Console, data: dict[str, Any]) -> None:
    def line(label: str, text: str) -> None:
        print_line(console, label, text, width=20)

    fired = None if data["rule"] is None else data["regime"]
    line("regime", f"{data['regime']}  ({data['rule'] or 'no rule matched'})")
    rules = Table(
        title="regime rules (first match wins, strict >)", title_justify="left", box=box.SIMPLE_HEAD
    )
    for name in ("#", "regime", "condition", "matches"):
        rules.add_column(name, overflow="fold")
    for i, r in enumerate(data["rules"], 1):
        rules.add_row(str(i), r["regime"], r["evaluated"], _rule_status(r, fired))
    console.print(rules)
    plan = Table(
        title="activation plan (its order is the rule-based prior)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name in ("#", "cell", "role", "variants (first = default)"):
        plan.add_column(name, overflow="fold")
    for i, cell in enumerate(data["plan"], 1):
        plan.add_row(str(i), cell["cell"], cell["role"], ", ".join(cell["variants"]))
    console.print(plan)
    if data["protected"]:
        line("protected", ", ".join(data["protected"]) + "  (never skipped)")
    line("fixed pipeline", " → ".join(data["fixed_pipeline"]))
    line("initial signature", data["signature"])
    if data["task_class"] is not None and "task_class" not in data["fold_extra_keys"]:
        line("", "(the default fold leaves task_class out of the signature)")
    line("initial candidates", ", ".join(data["candidates"]))
    line(
        "replay it with",
        f"agensbus policy explain POLICY_FILE --signature '{data['signature']}' "
        f"--candidates '{','.join(data['candidates'])}'",
    )


@task.command("explain")
@click.option(
    "--features",
    "features_text",
    default=None,
    metavar="JSON|@FILE",
    help="The task's features as a JSON object of TaskFeatures fields (ambiguity_level, "
    "contradiction_risk, evidence_availability, verification_need, novelty_level, "
    "time_horizon_complexity, cost_sensitivity, requires_factual_grounding), each a number "
    "in [0, 1]; a missing field is 0. @FILE reads the object from a file. Default: the "
    "features of the --task-class in the pipeline file (required for any other class).",
)
@click.option(
    "--task-class",
    default=None,
    metavar="C",
    help="The task_class label a pipeline would attach (default: none); a class the "
    "pipeline file lists brings its features. The default fold does not put it in the "
    "signature.",
)
@click.option(
    "--pipeline",
    "pipeline_name",
    default=DEFAULT_PIPELINE,
    show_default=True,
    metavar="NAME|FILE",
    help="The pipeline whose cells and plans route the task: a shipped one or a pipeline "
    "file (docs/pipeline.md).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print one JSON object instead of tables (default: tables).",
)
def explain_command(
    features_text: str | None, task_class: str | None, pipeline_name: str, as_json: bool
) -> None:
    """Show how a task with these features would start, with the paper's rules.

    Prints the regime and the rule that fired (contradiction_risk > 0.7 → contradictory;
    ambiguity_level > 0.7 → ambiguous; evidence_availability > 0.7 and verification_need >
    0.6 → evidence_heavy; verification_need > 0.8 → high_risk; else straightforward), the
    activation plan with each cell's variants, the fixed pipeline, the initial signature
    and the initial legal candidates in tie order.
    """
    pipeline = pipeline_or_exit(pipeline_name)
    task_class = check_task_class(task_class)
    known = pipeline.classes.get(task_class) if task_class is not None else None
    if features_text is not None:
        features = read_features(features_text)
    elif known is not None:
        features = known.features
    else:
        listed = ", ".join(pipeline.classes) or "none"
        raise UserError(
            f"give --features, or a --task-class the pipeline {pipeline.name} lists "
            f"(its classes: {listed})"
        )
    data = explain_task(features, task_class, pipeline)
    if as_json:
        echo_json(data)
    else:
        _render(make_console(), data)
