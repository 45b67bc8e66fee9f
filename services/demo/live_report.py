"""The report of a demo on real models: tables, metrics.json with every answer, report.md.

There is no simulated world behind real answers, so nothing here knows a true quality: the
judge's score is the only quality figure, and regret (a gap to the oracle of a known world)
does not exist. The tables say so rather than print zeros.
"""

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from services.demo.live import LiveArm, LiveEpoch
from services.demo.report import (
    TextTable,
    epochs_span,
    markdown_page,
    per_epoch_plot,
    rich_table,
    save_figures,
    save_report,
    settings_of,
)
from services.demo.run import LiveDemoResult

PLOTS = ("judge.png", "tokens.png", "cost.png")

NO_GROUND_TRUTH = (
    "No true quality and no regret: with real models no simulated world stands behind the "
    "answers, so the judge's score is the only quality figure (compare the answers in "
    "metrics.json with the corpus's reference answers by reading them)."
)


def _terminations(epoch: LiveEpoch) -> str:
    return ", ".join(f"{name} {count}" for name, count in epoch.terminations.items())


def _cells(epoch: LiveEpoch) -> list[str]:
    return [
        f"{epoch.judge_score:.3f}",
        f"{epoch.judge_confidence:.2f}",
        f"{epoch.reward:.3f}",
        f"{epoch.tokens_per_trajectory:,.0f}",
        f"{epoch.cost_per_trajectory_usd:.4f}",
        f"{epoch.skip_share:.1%}",
        str(epoch.failed_steps),
    ]


_HEADERS = (
    "judge",
    "confidence",
    "reward",
    "tokens/traj",
    "cost/traj USD",
    "skip share",
    "failed steps",
)


def plateau(arm: LiveArm) -> LiveEpoch:
    """The last three epochs (fewer when the run was shorter) taken together."""
    epochs = {e.epoch for e in arm.epochs[-3:]}
    return LiveEpoch.of(max(epochs, default=0), [r for r in arm.records if r.epoch in epochs])


def epoch_table(arm: LiveArm) -> TextTable:
    rows = [
        [str(e.epoch), str(e.trajectories), *_cells(e), _terminations(e), f"{wall:.1f}"]
        for e, wall in zip(arm.epochs, arm.epoch_wall_s, strict=True)
    ]
    headers = ("epoch", "trajectories", *_HEADERS, "terminations", "wall s")
    return TextTable(f"arm {arm.arm}: per epoch", headers, rows, left=0)


def summary_table(result: LiveDemoResult) -> TextTable:
    headers = ("arm", *_HEADERS, "submitted", "completed", "backed up", "cost USD", "wall s")
    rows = [
        [
            arm.arm,
            *_cells(plateau(arm)),
            str(arm.submitted),
            str(arm.completed),
            str(arm.backed_up),
            f"{arm.cost_usd:.4f}",
            f"{arm.wall_s:.1f}",
        ]
        for arm in result.arms
    ]
    span = epochs_span([e.epoch for e in result.arms[0].epochs[-3:]]) if result.arms else ""
    return TextTable(f"plateau ({span}) per arm", headers, rows)


def class_table(result: LiveDemoResult) -> TextTable:
    """Judge score and tokens per class at the plateau."""
    headers = ["class", "regime"]
    for arm in result.arms:
        headers += [f"{arm.arm} judge", f"{arm.arm} tokens"]
    rows = []
    for name, task_class in result.scenario.classes.items():
        row = [name, task_class.regime.value]
        for arm in result.arms:
            epochs = {e.epoch for e in arm.epochs[-3:]}
            records = [r for r in arm.records if r.epoch in epochs and r.task_class == name]
            summary = LiveEpoch.of(0, records)
            row += (
                [f"{summary.judge_score:.3f}", f"{summary.tokens_per_trajectory:,.0f}"]
                if records
                else ["-", "-"]
            )
        rows.append(row)
    return TextTable("per class, plateau", headers, rows, left=2)


def tables(result: LiveDemoResult) -> list[TextTable]:
    return [*(epoch_table(arm) for arm in result.arms), summary_table(result), class_table(result)]


def print_tables(result: LiveDemoResult, console: Console) -> None:
    for table in tables(result):
        console.print(rich_table(table))
    console.print(NO_GROUND_TRUTH)


def metrics(result: LiveDemoResult) -> dict[str, Any]:
    corpus = result.config.corpus
    references = {
        (name, task.question): task.answer
        for name, tasks in (corpus.tasks.items() if corpus is not None else ())
        for task in tasks
    }
    arms = {}
    for arm in result.arms:
        trajectories = [
            {
                **dataclasses.asdict(record),
                "reference_answer": references.get((record.task_class, record.question)),
            }
            for record in arm.records
        ]
        arms[arm.arm] = {
            "submitted": arm.submitted,
            "completed": arm.completed,
            "rewarded": arm.rewarded,
            "backed_up": arm.backed_up,
            "policy_version": arm.policy_version,
            "cost_usd": arm.cost_usd,
            "wall_s": arm.wall_s,
            "epochs": [
                {**dataclasses.asdict(e), "wall_s": wall}
                for e, wall in zip(arm.epochs, arm.epoch_wall_s, strict=True)
            ],
            "plateau": dataclasses.asdict(plateau(arm)),
            "trajectories": trajectories,
        }
    return {
        "settings": settings_of(result),
        "wall_s": result.wall_s,
        "ground_truth": None,
        "arms": arms,
    }


def markdown(result: LiveDemoResult) -> str:
    return markdown_page(
        result,
        f"agensbus demo on real models: {result.scenario.name}",
        "Each arm ran on its own deployment (router, two workers on the openai backend, judge, "
        "learner) and topic prefix. " + NO_GROUND_TRUTH,
        tables(result),
        [
            ("judge score per epoch", "judge.png"),
            ("tokens per trajectory per epoch", "tokens.png"),
            ("provider cost per trajectory per epoch", "cost.png"),
        ],
    )


def write_plots(result: LiveDemoResult, out: Path) -> list[Path]:
    name = result.scenario.name
    arms = [(arm.arm, arm.epochs) for arm in result.arms]
    figures = (
        per_epoch_plot(name, arms, "judge_score", "judge score"),
        per_epoch_plot(name, arms, "tokens_per_trajectory", "tokens per trajectory"),
        per_epoch_plot(name, arms, "cost_per_trajectory_usd", "cost per trajectory (USD)"),
    )
    return save_figures(figures, PLOTS, out)


def write_report(result: LiveDemoResult, out: Path) -> dict[str, Any]:
    """Write report.md, metrics.json and the plots into ``out``; returns the metrics."""
    return save_report(out, metrics(result), markdown(result), lambda d: write_plots(result, d))
