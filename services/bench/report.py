"""The learning benchmark as a Markdown page: the tables ``agensbus bench learning`` prints,
the plots it wrote beside it, and the command that reproduces it.

The page holds no timing, so the same command on the same code writes the same page: a
committed copy (docs/results/) shows at a glance when the code has moved on from it.
"""

from collections.abc import Sequence

from services.bench._stats import Estimate
from services.bench.learning import EARLY_EPOCHS, PLATEAU_EPOCHS, LearningBench

REPORT_FILE = "report.md"

# Suffixes of the warm-start targets (LearningBench.targets), one pair per warm arm.
_SAVES = "_saves_30pct_tokens"
_NOT_LOWER = "_plateau_not_lower"
_EARLY = "_early_regret_25pct_lower"

_TARGET_TEXT = {
    "regret_at_most_0.6x_paper": "`agensbus` cumulative regret at most 0.6x `paper`'s",
    "plateau_at_least_paper": "`agensbus` plateau true quality at least `paper`'s",
    "tokens_at_most_paper": "`agensbus` tokens per trajectory (plateau) at most `paper`'s",
    "plateau_at_least_fixed_where_coordination_matters": (
        "`agensbus` plateau at least `fixed`'s on every class where coordination matters"
    ),
    "plateau_within_0.01_of_fixed_on_every_class": (
        "`agensbus` plateau at least `fixed`'s less 0.01 on every class (means)"
    ),
    "plateau_at_least_fixed_plus_0.03": "`agensbus` plateau at least `fixed`'s plus 0.03",
    "regret_at_most_0.5x_fixed": "`agensbus` cumulative regret at most 0.5x `fixed`'s",
    "regret_at_most_0.25x_paper": "`agensbus` cumulative regret at most 0.25x `paper`'s",
    "tokens_at_most_0.85x_fixed": (
        "`agensbus` tokens per trajectory (plateau) at most 0.85x `fixed`'s"
    ),
}


def interval(estimate: Estimate, digits: int) -> str:
    """``mean [low, high]`` with thousands separators."""
    return (
        f"{estimate.mean:,.{digits}f} "
        f"[{estimate.ci_low:,.{digits}f}, {estimate.ci_high:,.{digits}f}]"
    )


def learning_report(bench: LearningBench, command: str, plots: Sequence[str]) -> str:
    """The page for ``bench``; ``plots`` are file names relative to the page."""
    lines = [
        f"# Learning benchmark: {bench.scenario}",
        "",
        f"{len(bench.seeds)} seeds x {bench.epochs} epochs per arm, every arm on the same tasks "
        "per seed. Each number is a mean over seeds with its 95% Student-t interval "
        f"`mean [low, high]`; plateau = mean of the last {min(PLATEAU_EPOCHS, bench.epochs)} "
        "epochs; regret is taken against the scenario's oracle under the paper's reward "
        "(docs/learning.md defines every column and arm).",
        "",
        "Reproduce (writes this page, `learning.json` with every number, and the plots):",
        "",
        "```",
        command,
        "```",
        "",
        "## Arms",
        "",
        "| arm | cumulative regret | plateau true quality | plateau judge score "
        "| tokens/trajectory (plateau) | tokens/trajectory (run) |",
        "|---|---|---|---|---|---|",
    ]
    for name, arm in bench.arms.items():
        cells = (
            interval(arm.cumulative_regret, 1),
            interval(arm.plateau_quality, 3),
            interval(arm.plateau_judge, 3),
            interval(arm.tokens_per_trajectory, 0),
            interval(arm.run_tokens_per_trajectory, 0),
        )
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Plateau true quality per class",
        "",
        "`*` marks a class where coordination matters (the oracle's best path beats the fixed "
        "pipeline by more than 0.02).",
        "",
        "| class | " + " | ".join(f"`{name}`" for name in bench.arms) + " |",
        "|---|" + "---|" * len(bench.arms),
    ]
    coordination = set(bench.coordination_classes)
    for task_class in next(iter(bench.arms.values())).per_class:
        mark = " *" if task_class in coordination else ""
        values = [interval(arm.per_class[task_class], 3) for arm in bench.arms.values()]
        lines.append(f"| {task_class}{mark} | " + " | ".join(values) + " |")
    if bench.warm:
        lines += [
            "",
            f"## Warm start from {bench.warm_source}",
            "",
            "The last column is what a warm start would save if it spent, from its first "
            "trajectory on, what the cold twin spends per trajectory at its plateau: what "
            "starting already learned is worth in tokens when the plateau is the same.",
            "",
            "| warm arm | cold twin | share of the run's tokens saved | plateau quality delta "
            "| saved if at the cold plateau from the start "
            f"| share of the regret of epochs 1-{EARLY_EPOCHS} saved |",
            "|---|---|---|---|---|---|",
        ]
        for row in bench.warm:
            lines.append(
                f"| `{row.warm}` | `{row.cold}` | {interval(row.savings, 3)} "
                f"| {interval(row.plateau_delta, 3)} | {interval(row.savings_at_cold_plateau, 3)} "
                f"| {interval(row.early_regret_saving, 3)} |"
            )
    if bench.shift_epoch is not None:
        lines += [
            "",
            f"## Recovery after the shift at epoch {bench.shift_epoch}",
            "",
            "| arm | seeds recovered | trajectories to recover (mean) |",
            "|---|---|---|",
        ]
        for name, arm in bench.arms.items():
            done = arm.recovered
            mean = f"{sum(done) / len(done):.0f}" if done else "-"
            lines.append(f"| `{name}` | {len(done)}/{len(arm.recovery)} | {mean} |")
    targets = bench.targets()
    if targets:
        lines += ["", "## Targets (issues 6 and 11)", ""]
        for key, met in targets.items():
            text = _TARGET_TEXT.get(key) or _warm_target_text(key)
            lines.append(f"- {'met' if met else '**not met**'}: {text}")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _warm_target_text(key: str) -> str:
    if key.endswith(_SAVES):
        arm = key.removesuffix(_SAVES)
        return f"`{arm}` saves at least 30% of its cold twin's tokens over the whole run"
    if key.endswith(_EARLY):
        arm = key.removesuffix(_EARLY)
        return f"`{arm}` regret over epochs 1-{EARLY_EPOCHS} at least 25% below its cold twin's"
    if key.endswith(_NOT_LOWER):
        return f"`{key.removesuffix(_NOT_LOWER)}` plateau not lower than its cold twin's"
    return key
