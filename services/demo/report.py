"""The demo's report: tables (terminal and Markdown), metrics.json and PNG plots.

Each table is built once as headers and rows of text, then rendered for the terminal (rich)
or for report.md, so the two never disagree. Plots are drawn on matplotlib's Agg canvas
directly (no pyplot): files only, no window, no global figure state.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from services.demo.results import ArmResult
from services.demo.run import DemoResult, LiveDemoResult
from services.sim.engine import EpochReport, TrajectoryRecord

PLOTS = ("quality.png", "tokens.png", "plateau.png")
_EPOCH_HEADERS = ("epoch", "true quality", "judge", "tokens/traj", "skip share", "regret")


@dataclasses.dataclass(frozen=True)
class TextTable:
    title: str
    headers: Sequence[str]
    rows: list[list[str]]
    left: int = 1  # leading columns aligned left (labels), the rest right (numbers)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _epoch_cells(r: EpochReport) -> list[str]:
    return [
        f"{r.true_quality:.3f}",
        f"{r.judge_score:.3f}",
        f"{r.tokens_per_trajectory:,.0f}",
        f"{r.skip_share:.1%}",
        f"{r.regret:.3f}",
    ]


def plateau_epochs(arm: ArmResult) -> list[int]:
    return [r.epoch for r in arm.plateau]


def plateau_summary(arm: ArmResult) -> EpochReport:
    """The plateau's epochs averaged column by column (every epoch has the same tasks)."""
    reports = arm.plateau
    per_class = class_plateau(arm)
    return EpochReport(
        epoch=reports[-1].epoch,
        trajectories=sum(r.trajectories for r in reports),
        true_quality=_mean([r.true_quality for r in reports]),
        judge_score=_mean([r.judge_score for r in reports]),
        judge_confidence=_mean([r.judge_confidence for r in reports]),
        reward=_mean([r.reward for r in reports]),
        tokens_per_trajectory=_mean([r.tokens_per_trajectory for r in reports]),
        skip_share=_mean([r.skip_share for r in reports]),
        regret=_mean([r.regret for r in reports]),
        per_class={name: values["true_quality"] for name, values in per_class.items()},
    )


def class_plateau(arm: ArmResult) -> dict[str, dict[str, float]]:
    """Per class, the mean over the plateau's trajectories of quality, score and tokens."""
    epochs = set(plateau_epochs(arm))
    by_class: dict[str, list[TrajectoryRecord]] = {}
    for record in arm.records:
        if record.epoch in epochs:
            by_class.setdefault(record.task_class, []).append(record)
    return {
        name: {
            "true_quality": _mean([r.true_quality for r in records]),
            "judge_score": _mean([r.judgement.quality for r in records]),
            "tokens_per_trajectory": _mean([float(r.state.tokens_used) for r in records]),
            "trajectories": float(len(records)),
        }
        for name, records in sorted(by_class.items())
    }


def epochs_span(epochs: Sequence[int]) -> str:
    return f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"


# --- tables ----------------------------------------------------------------------------


def epoch_table(arm: ArmResult) -> TextTable:
    rows = [
        [str(r.epoch), *_epoch_cells(r), f"{wall:.1f}"]
        for r, wall in zip(arm.epochs, arm.epoch_wall_s, strict=True)
    ]
    return TextTable(f"arm {arm.arm}: per epoch", (*_EPOCH_HEADERS, "wall s"), rows, left=0)


def summary_table(result: DemoResult) -> TextTable:
    headers = (
        "arm",
        "true quality",
        "judge",
        "tokens/traj",
        "skip share",
        "regret",
        "submitted",
        "completed",
        "backed up",
        "wall s",
    )
    rows = []
    for arm in result.arms:
        plateau = plateau_summary(arm)
        counts = (arm.submitted, arm.completed, arm.backed_up)
        rows.append([arm.arm, *_epoch_cells(plateau), *map(str, counts), f"{arm.wall_s:.1f}"])
    span = epochs_span(plateau_epochs(result.arms[0])) if result.arms else ""
    return TextTable(f"plateau ({span}) per arm", headers, rows)


def class_table(result: DemoResult) -> TextTable:
    """True quality and judge score per class at the plateau, beside the oracle's path."""
    headers = ["class", "regime", "oracle"]
    for arm in result.arms:
        headers += [f"{arm.arm} quality", f"{arm.arm} judge", f"{arm.arm} tokens"]
    plateaus = [class_plateau(arm) for arm in result.arms]
    rows = []
    for name, task_class in result.scenario.classes.items():
        best = result.oracle.for_class(name)
        row = [name, task_class.regime.value, f"{best.quality[best.best]:.3f}"]
        for plateau in plateaus:
            values = plateau.get(name)
            if values is None:
                row += ["-", "-", "-"]
            else:
                row += [
                    f"{values['true_quality']:.3f}",
                    f"{values['judge_score']:.3f}",
                    f"{values['tokens_per_trajectory']:,.0f}",
                ]
        rows.append(row)
    span = epochs_span(plateau_epochs(result.arms[0])) if result.arms else ""
    return TextTable(f"per class, plateau ({span})", headers, rows, left=2)


def tables(result: DemoResult) -> list[TextTable]:
    return [*(epoch_table(arm) for arm in result.arms), summary_table(result), class_table(result)]


def rich_table(table: TextTable) -> Table:
    rendered = Table(title=table.title)
    for i, header in enumerate(table.headers):
        rendered.add_column(header, justify="left" if i < table.left else "right")
    for row in table.rows:
        rendered.add_row(*row)
    return rendered


def markdown_table(table: TextTable) -> str:
    align = ["---" if i < table.left else "---:" for i in range(len(table.headers))]
    lines = [table.headers, align, *table.rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def print_tables(result: DemoResult, console: Console) -> None:
    for table in tables(result):
        console.print(rich_table(table))


# --- metrics.json ------------------------------------------------------------------------


def settings_of(result: DemoResult | LiveDemoResult) -> dict[str, Any]:
    config = result.config
    return {
        "scenario": result.scenario.name,
        "scenario_source": config.scenario,
        "backend": config.backend,
        "corpus": None if config.corpus is None else str(config.corpus.documents_dir),
        "tasks_per_class": config.per_class or "all",
        "epochs": config.epochs,
        "arms": list(config.arms),
        "seed": config.seed,
        "concurrency": config.concurrency,
        "sim_time_scale": config.sim_time_scale,
        "broker": result.broker,
        "run_id": config.run_id,
        "topic_prefixes": {arm: config.prefix(arm) for arm in config.arms},
        "services_per_arm": "router, 2 workers, judge, learner (snapshot after every backup)",
    }


def arm_metrics(arm: ArmResult) -> dict[str, Any]:
    epochs = [
        {**dataclasses.asdict(r), "wall_s": wall}
        for r, wall in zip(arm.epochs, arm.epoch_wall_s, strict=True)
    ]
    return {
        "submitted": arm.submitted,
        "completed": arm.completed,
        "rewarded": arm.rewarded,
        "backed_up": arm.backed_up,
        "policy_version": arm.policy_version,
        "repeated_completions": arm.repeated_completions,
        "repeated_rewards": arm.repeated_rewards,
        "wall_s": arm.wall_s,
        "epochs": epochs,
        "plateau": {
            "epochs": plateau_epochs(arm),
            **dataclasses.asdict(plateau_summary(arm)),
            "per_class": class_plateau(arm),
        },
    }


def metrics(result: DemoResult) -> dict[str, Any]:
    oracle = {}
    for name in result.scenario.classes:
        best = result.oracle.for_class(name)
        row = best.best
        oracle[name] = {
            "expected_reward": float(best.reward[row]),
            "expected_quality": float(best.quality[row]),
            "expected_tokens": float(best.tokens[row]),
            "actions": list(best.actions(row)),
        }
    return {
        "settings": settings_of(result),
        "wall_s": result.wall_s,
        "arms": {arm.arm: arm_metrics(arm) for arm in result.arms},
        "oracle": oracle,
    }


# --- plots -------------------------------------------------------------------------------


def _figure(width: float) -> Figure:
    figure = Figure(figsize=(width, 4.0), dpi=110)
    FigureCanvasAgg(figure)
    return figure


class _Epoch(Protocol):
    """What a per-epoch plot reads of a simulated or a live epoch."""

    @property
    def epoch(self) -> int: ...

    @property
    def judge_score(self) -> float: ...


def per_epoch_plot(
    scenario: str,
    arms: Sequence[tuple[str, Sequence[_Epoch]]],
    column: str,
    label: str,
    with_judge: bool = False,
) -> Figure:
    """``column`` of each arm's epochs against the epoch; ``with_judge`` adds the judge's
    score dashed in the arm's colour, to show how far the judge is from the truth."""
    figure = _figure(7.0)
    axes = figure.subplots()
    for name, epochs in arms:
        numbers = [e.epoch for e in epochs]
        (line,) = axes.plot(numbers, [getattr(e, column) for e in epochs], marker="o", label=name)
        if with_judge:
            judged = [e.judge_score for e in epochs]
            color = line.get_color()
            axes.plot(numbers, judged, "--", color=color, alpha=0.6, label=f"{name} (judge)")
    axes.set_xlabel("epoch")
    axes.set_ylabel(label)
    axes.set_title(f"{scenario}: {label} per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def save_figures(figures: Sequence[Figure], names: Sequence[str], out: Path) -> list[Path]:
    paths = []
    for name, figure in zip(names, figures, strict=True):
        path = out / name
        figure.savefig(path)
        paths.append(path)
    return paths


def _plateau_plot(result: DemoResult) -> Figure:
    names = list(result.scenario.classes)
    figure = _figure(max(7.0, 0.9 * len(names) + 2))
    axes = figure.subplots()
    width = 0.8 / max(len(result.arms), 1)
    for i, arm in enumerate(result.arms):
        plateau = class_plateau(arm)
        values = [plateau.get(n, {}).get("true_quality", 0.0) for n in names]
        positions = [x - 0.4 + width * (i + 0.5) for x in range(len(names))]
        axes.bar(positions, values, width, label=arm.arm)
    oracle = [float(o.quality[o.best]) for o in map(result.oracle.for_class, names)]
    axes.scatter(range(len(names)), oracle, marker="_", s=600, color="black", label="oracle")
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0.0, 1.15)  # headroom for the legend above the bars
    axes.set_ylabel("true quality")
    span = epochs_span(plateau_epochs(result.arms[0])) if result.arms else ""
    axes.set_title(f"{result.scenario.name}: true quality per class, {span}")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper center", ncol=len(result.arms) + 1)
    figure.tight_layout()
    return figure


def write_plots(result: DemoResult, out: Path) -> list[Path]:
    name = result.scenario.name
    arms = [(arm.arm, arm.epochs) for arm in result.arms]
    figures = (
        per_epoch_plot(name, arms, "true_quality", "true quality", with_judge=True),
        per_epoch_plot(name, arms, "tokens_per_trajectory", "tokens per trajectory"),
        _plateau_plot(result),
    )
    return save_figures(figures, PLOTS, out)


# --- report.md ---------------------------------------------------------------------------


def setting_text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return "; ".join(f"{k}: `{v}`" for k, v in value.items())
    return str(value)


def markdown_page(
    result: DemoResult | LiveDemoResult,
    title: str,
    intro: str,
    sections: Sequence[TextTable],
    plots: Sequence[tuple[str, str]],
) -> str:
    """A demo's report.md: the settings, a section per table, then the plots, each an
    (alt text, file name) pair."""
    rows = [[k, setting_text(v)] for k, v in settings_of(result).items()]
    rows.append(["wall s", f"{result.wall_s:.1f}"])
    lines = [f"# {title}", "", intro, "", "## Settings", ""]
    lines.append(markdown_table(TextTable("", ("setting", "value"), rows, left=2)))
    for table in sections:
        lines += ["", f"## {table.title[0].upper()}{table.title[1:]}", "", markdown_table(table)]
    lines += ["", "## Plots"]
    for alt, name in plots:
        lines += ["", f"![{alt}]({name})"]
    return "\n".join(lines) + "\n"


def markdown(result: DemoResult) -> str:
    return markdown_page(
        result,
        f"agensbus demo: {result.scenario.name}",
        "Each arm ran on its own deployment (router, two workers, judge, learner) and topic "
        "prefix; every task was replayed as a TaskSubmitted event and followed to its "
        "TrajectoryCompleted, RewardObserved and the policy snapshot that backed it up. "
        "docs/demo.md explains every number.",
        tables(result),
        [
            ("true quality per epoch", "quality.png"),
            ("tokens per trajectory per epoch", "tokens.png"),
            ("true quality per class at the plateau", "plateau.png"),
        ],
    )


def save_report(
    out: Path, data: dict[str, Any], page: str, draw: Callable[[Path], object]
) -> dict[str, Any]:
    """Write ``data`` as metrics.json, the plots ``draw`` makes and ``page`` as report.md
    into ``out`` (created if missing); returns ``data``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(data, indent=2) + "\n")
    draw(out)
    (out / "report.md").write_text(page)
    return data


def write_report(result: DemoResult, out: Path) -> dict[str, Any]:
    """Write report.md, metrics.json and the plots into ``out``; returns the metrics."""
    return save_report(out, metrics(result), markdown(result), lambda d: write_plots(result, d))
