"""The learning benchmark: arms over the same tasks and seeds, in process, against the oracle.

Every arm of a scenario meets the same task order per seed, and every trajectory's regret is
taken against one oracle (the paper's reward, skips allowed), whatever reward the arm
itself learns from, so arms are compared on one yardstick. A warm arm first learns on the
source (by default the other shipped scenario, same seed and epochs, with its own rules
cold) and imports that graph, its counts scaled by the arm's ``warm_weight``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.bench._stats import Estimate
from services.policy import PAPER_REWARD, PolicyGraph
from services.policy.arms import Arm
from services.policy.signature import Signature
from services.sim.engine import Engine, EpochReport, TrajectoryRecord
from services.sim.loader import shipped_scenarios
from services.sim.oracle import Oracle, Paths
from services.sim.scenario import Scenario, build_scenario
from services.sim.spec import ClassEffect, ScenarioSpec

#: Epochs averaged for a plateau, as the paper's Table 3 (epochs 6-8 of 8).
PLATEAU_EPOCHS = 3

#: A class "where coordination matters": the oracle's best path beats the fixed pipeline's
#: expected true quality by more than this. (Elsewhere the best path trades quality the fixed
#: pipeline has for tokens, and matching the pipeline's quality would mean not learning.)
COORDINATION_MARGIN = 0.02

#: Per epoch, the numbers reported with a confidence interval over seeds.
EPOCH_METRICS = ("true_quality", "judge_score", "tokens_per_trajectory", "skip_share", "regret")

#: The non-stationary world: from the shift on, the strong model's answers are worse and
#: the balanced model costs twice as much (its token counts double, on every class).
SHIFT_EFFECTS: dict[str, ClassEffect] = {
    "solver@strong": ClassEffect(gain=-0.15),
    "solver@balanced": ClassEffect(token_factor=2.0),
    "verifier@balanced": ClassEffect(token_factor=2.0),
}

#: Early in a run: the epochs over which a warm start's regret is compared with its cold
#: twin's.
EARLY_EPOCHS = 3

#: The skips each arm still takes are counted per class and cell after this epoch.
SETTLED_AFTER = 2

#: Recovered: the expected reward of the last ``RECOVERY_WINDOW`` trajectories reaches this
#: share of what the new optimum would earn on the same tasks (tasks come shuffled, so a
#: window mixes classes).
RECOVERY_SHARE = 0.9
RECOVERY_WINDOW = 20

Progress = Callable[[str], None]


def scenario_spec(name_or_path: str) -> ScenarioSpec:
    """The validated spec of a shipped scenario or a scenario file (load it first with
    ``load_scenario``, which reports problems; this re-reads the text it accepted)."""
    if name_or_path in shipped_scenarios():
        text = (resources.files("services.sim") / "scenarios" / f"{name_or_path}.yaml").read_text()
    else:
        text = Path(name_or_path).read_text(encoding="utf-8")
    return ScenarioSpec.model_validate(yaml.safe_load(text))


def shifted(spec: ScenarioSpec, effects: dict[str, ClassEffect] = SHIFT_EFFECTS) -> Scenario:
    """The scenario after the shift: ``effects`` added to every class's (gains add, token
    factors multiply, a class's own failure rate stays)."""
    classes = []
    for task_class in spec.classes:
        merged = dict(task_class.effects)
        for selector, effect in effects.items():
            own = merged.get(selector, ClassEffect())
            merged[selector] = ClassEffect(
                gain=own.gain + effect.gain,
                token_factor=own.token_factor * effect.token_factor,
                failure=own.failure if own.failure is not None else effect.failure,
            )
        classes.append(task_class.model_copy(update={"effects": merged}))
    changed = spec.model_copy(update={"name": f"{spec.name}-shifted", "classes": classes})
    return build_scenario(changed, changed.name)


@dataclass(frozen=True)
class Shift:
    """From ``epoch`` on, the world (and the oracle regret is taken against) is ``after``."""

    epoch: int
    after: Scenario
    oracle: Oracle


@dataclass(frozen=True)
class Run:
    """One arm on one seed."""

    arm: str
    seed: int
    epochs: list[EpochReport]
    cumulative_regret: float
    total_tokens: float
    trajectories: int
    recovery: int | None = None  # trajectories after the shift until recovered; None: never
    #: per class: its trajectories after ``SETTLED_AFTER``, and per cell how many of them
    #: skipped it
    late_tasks: dict[str, int] = field(default_factory=dict)
    late_skips: dict[str, dict[str, int]] = field(default_factory=dict)

    def early_regret(self) -> float:
        return sum(e.regret * e.trajectories for e in self.epochs[:EARLY_EPOCHS])

    @property
    def plateau(self) -> list[EpochReport]:
        return self.epochs[-PLATEAU_EPOCHS:]

    def plateau_of(self, metric: str) -> float:
        return float(np.mean([getattr(e, metric) for e in self.plateau]))

    def plateau_class(self, name: str) -> float:
        return float(np.mean([e.per_class[name] for e in self.plateau]))


#: Runs one cold arm on one seed, its regret taken against the oracle given; the default
#: runs it in process (``run_arm``), ``--through-kafka`` through the services.
ArmRunner = Callable[[Arm, int, Oracle], Run]


def run_arm(
    scenario: Scenario,
    arm: Arm,
    seed: int,
    epochs: int,
    oracle: Oracle,
    *,
    start: PolicyGraph | None = None,
    shift: Shift | None = None,
) -> tuple[Run, PolicyGraph]:
    """Run ``arm`` for ``epochs`` epochs from ``start`` (an empty graph when None); with a
    ``shift``, the world changes under the same graph at its epoch."""
    graph = start if start is not None else PolicyGraph()
    before = epochs if shift is None else min(epochs, shift.epoch - 1)
    phases = [(scenario, oracle, 1, before)]
    if shift is not None and before < epochs:
        phases.append((shift.after, shift.oracle, before + 1, epochs - before))
    totals = RunTally()
    earned: list[tuple[float, float]] = []  # after the shift: (expected reward, optimum)

    def tally(record: TrajectoryRecord) -> None:
        totals.add(record)
        if record.epoch > before:
            best = phases[-1][1].for_class(record.task_class).best_reward
            earned.append((best - record.regret, best))

    reports: list[EpochReport] = []
    for world, world_oracle, first, length in phases:
        if length <= 0:
            continue
        engine = Engine(
            world, arm.setup(world, seed), seed=seed, reward=arm.reward, oracle=world_oracle
        )
        engine.graph = graph
        reports += engine.run(length, first_epoch=first, on_trajectory=tally)
    recovery = recovered_after(earned, RECOVERY_WINDOW) if shift is not None else None
    return totals.run(arm.name, seed, reports, recovery), graph


@dataclass
class RunTally:
    """What a run sums over its trajectories, in the order they ran."""

    regret: float = 0.0
    tokens: float = 0.0
    count: int = 0
    late_tasks: dict[str, int] = field(default_factory=dict)
    late_skips: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, record: TrajectoryRecord) -> None:
        self.regret += record.regret
        self.tokens += record.state.tokens_used
        self.count += 1
        if record.epoch > SETTLED_AFTER:
            name = record.task_class
            self.late_tasks[name] = self.late_tasks.get(name, 0) + 1
            skips = self.late_skips.setdefault(name, {})
            for cell in record.state.skipped:
                skips[cell] = skips.get(cell, 0) + 1

    def run(
        self, arm: str, seed: int, epochs: list[EpochReport], recovery: int | None = None
    ) -> Run:
        return Run(
            arm,
            seed,
            epochs,
            self.regret,
            self.tokens,
            self.count,
            recovery,
            self.late_tasks,
            self.late_skips,
        )


def recovered_after(earned: Sequence[tuple[float, float]], window: int) -> int | None:
    """How many trajectories until the last ``window`` of them earn, in expectation,
    ``RECOVERY_SHARE`` of what the optimum would on the same tasks; None if never."""
    for end in range(window, len(earned) + 1):
        chunk = earned[end - window : end]
        if sum(e for e, _ in chunk) >= RECOVERY_SHARE * sum(b for _, b in chunk):
            return end
    return None


def warm_graph(source: PolicyGraph, arm: Arm, classes: Sequence[str]) -> PolicyGraph:
    """The graph a warm arm starts from: ``source`` with its counts scaled by the arm's
    ``warm_weight``. When the arm's fold keys signatures by task class, the source's
    classes are not the target's: each source node is offered, class dropped, to every
    target class, so the other corpus informs every class as a prior."""
    weight = arm.warm_weight if arm.warm_weight is not None else 1.0
    graph = PolicyGraph()
    if "task_class" not in arm.fold.extra_keys:
        graph.merge(source, weight=weight)
        return graph
    for name in classes:
        graph.merge(reclassed(source, name), weight=weight)
    return graph


def reclassed(source: PolicyGraph, task_class: str) -> PolicyGraph:
    """``source`` with every signature's ``task_class`` key set to ``task_class``."""

    def rename(signature: str) -> str:
        parsed = Signature.parse(signature)
        extra = tuple((k, task_class if k == "task_class" else v) for k, v in parsed.extra)
        return replace(parsed, extra=extra).text

    return source.relabeled(rename)


def fixed_pipeline_gap(oracle: Oracle, scenario: Scenario) -> dict[str, float]:
    """Per class, the expected true quality of the oracle's best path minus the fixed
    pipeline's (every plan cell on its default variant, variant index 0, none late)."""
    gaps = {}
    for name, task_class in scenario.classes.items():
        best = oracle.for_class(name)
        slots = len(task_class.plan)
        fixed = Paths(np.zeros((1, slots), dtype=np.int64), np.zeros((1, slots), dtype=np.bool_))
        consistent = (best.paths.index == fixed.index).all(axis=1) & ~best.paths.late.any(axis=1)
        gaps[name] = float(best.quality[best.best] - best.quality[consistent][0])
    return gaps


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    cumulative_regret: Estimate
    plateau_quality: Estimate
    plateau_judge: Estimate
    tokens_per_trajectory: Estimate
    run_tokens_per_trajectory: Estimate
    total_tokens: Estimate
    per_class: dict[str, Estimate]
    per_epoch: dict[str, list[Estimate]]
    recovery: list[int | None] = field(default_factory=list)  # per seed, with a shift
    #: per class, per cell: the share of the class's trajectories after ``SETTLED_AFTER``
    #: that skipped the cell, over every seed
    late_skip_share: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def recovered(self) -> list[int]:
        return [r for r in self.recovery if r is not None]

    @classmethod
    def of(cls, runs: Sequence[Run], classes: Sequence[str]) -> "ArmSummary":
        epochs = len(runs[0].epochs)
        return cls(
            arm=runs[0].arm,
            cumulative_regret=Estimate.of([r.cumulative_regret for r in runs]),
            plateau_quality=Estimate.of([r.plateau_of("true_quality") for r in runs]),
            plateau_judge=Estimate.of([r.plateau_of("judge_score") for r in runs]),
            tokens_per_trajectory=Estimate.of(
                [r.plateau_of("tokens_per_trajectory") for r in runs]
            ),
            run_tokens_per_trajectory=Estimate.of([r.total_tokens / r.trajectories for r in runs]),
            total_tokens=Estimate.of([r.total_tokens for r in runs]),
            per_class={c: Estimate.of([r.plateau_class(c) for r in runs]) for c in classes},
            per_epoch={
                m: [Estimate.of([getattr(r.epochs[e], m) for r in runs]) for e in range(epochs)]
                for m in EPOCH_METRICS
            },
            recovery=[r.recovery for r in runs],
            late_skip_share=_late_skip_share(runs),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cumulative_regret": self.cumulative_regret.as_dict(),
            "plateau_quality": self.plateau_quality.as_dict(),
            "plateau_judge_score": self.plateau_judge.as_dict(),
            "tokens_per_trajectory": self.tokens_per_trajectory.as_dict(),
            "run_tokens_per_trajectory": self.run_tokens_per_trajectory.as_dict(),
            "total_tokens": self.total_tokens.as_dict(),
            "per_class": {c: e.as_dict() for c, e in self.per_class.items()},
            "per_epoch": {m: [e.as_dict() for e in values] for m, values in self.per_epoch.items()},
            f"skip_share_after_epoch_{SETTLED_AFTER}": self.late_skip_share,
        }


def _late_skip_share(runs: Sequence[Run]) -> dict[str, dict[str, float]]:
    tasks: dict[str, int] = {}
    skips: dict[str, dict[str, int]] = {}
    for run in runs:
        for name, count in run.late_tasks.items():
            tasks[name] = tasks.get(name, 0) + count
        for name, cells in run.late_skips.items():
            mine = skips.setdefault(name, {})
            for cell, count in cells.items():
                mine[cell] = mine.get(cell, 0) + count
    return {
        name: {cell: count / tasks[name] for cell, count in sorted(skips.get(name, {}).items())}
        for name in sorted(tasks)
    }


@dataclass(frozen=True)
class WarmRow:
    """A warm arm against its cold twin (same rules, empty start), on the same seeds."""

    warm: str
    cold: str
    savings: Estimate  # share of the whole run's tokens saved, per seed
    plateau_delta: Estimate  # warm minus cold plateau true quality, per seed
    #: The saving of a warm start that spent, from its first trajectory on, what the cold
    #: twin spends per trajectory at its plateau: what starting "already learned" is worth
    #: in tokens when the plateau is the same.
    savings_at_cold_plateau: Estimate
    #: the share of the cold twin's regret over the first ``EARLY_EPOCHS`` epochs that the
    #: warm start saves, per seed
    early_regret_saving: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "warm": self.warm,
            "cold": self.cold,
            "token_savings": self.savings.as_dict(),
            "plateau_quality_delta": self.plateau_delta.as_dict(),
            "token_savings_at_cold_plateau": self.savings_at_cold_plateau.as_dict(),
            "early_regret_saving": self.early_regret_saving.as_dict(),
            "early_epochs": EARLY_EPOCHS,
        }


@dataclass(frozen=True)
class LearningBench:
    scenario: str
    warm_source: str
    seeds: list[int]
    epochs: int
    arms: dict[str, ArmSummary]
    runs: dict[str, list[Run]]
    coordination_gap: dict[str, float]
    warm: list[WarmRow]
    seconds: float
    shift_epoch: int | None = None

    @property
    def coordination_classes(self) -> list[str]:
        return [c for c, gap in self.coordination_gap.items() if gap > COORDINATION_MARGIN]

    def targets(self) -> dict[str, bool]:
        """The issue's acceptance targets that this run can decide."""
        result: dict[str, bool] = {}
        mine, paper, fixed = (self.arms.get(a) for a in ("agensbus", "paper", "fixed"))
        if mine is not None and paper is not None:
            result["regret_at_most_0.6x_paper"] = (
                mine.cumulative_regret.mean <= 0.6 * paper.cumulative_regret.mean
            )
            result["plateau_at_least_paper"] = (
                mine.plateau_quality.mean >= paper.plateau_quality.mean
            )
            result["tokens_at_most_paper"] = (
                mine.tokens_per_trajectory.mean <= paper.tokens_per_trajectory.mean
            )
        if mine is not None and fixed is not None:
            result["plateau_at_least_fixed_where_coordination_matters"] = all(
                mine.per_class[c].mean >= fixed.per_class[c].mean for c in self.coordination_classes
            )
            result["plateau_within_0.01_of_fixed_on_every_class"] = all(
                mine.per_class[c].mean >= fixed.per_class[c].mean - 0.01 for c in mine.per_class
            )
            result["plateau_at_least_fixed_plus_0.03"] = (
                mine.plateau_quality.mean >= fixed.plateau_quality.mean + 0.03
            )
            result["regret_at_most_0.5x_fixed"] = (
                mine.cumulative_regret.mean <= 0.5 * fixed.cumulative_regret.mean
            )
            result["tokens_at_most_0.85x_fixed"] = (
                mine.tokens_per_trajectory.mean <= 0.85 * fixed.tokens_per_trajectory.mean
            )
        if mine is not None and paper is not None:
            result["regret_at_most_0.25x_paper"] = (
                mine.cumulative_regret.mean <= 0.25 * paper.cumulative_regret.mean
            )
        for row in self.warm:
            result[f"{row.warm}_saves_30pct_tokens"] = row.savings.mean >= 0.30
            result[f"{row.warm}_plateau_not_lower"] = row.plateau_delta.mean >= 0.0
            result[f"{row.warm}_early_regret_25pct_lower"] = row.early_regret_saving.mean >= 0.25
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "warm_source": self.warm_source,
            "seeds": self.seeds,
            "epochs": self.epochs,
            "plateau_epochs": min(PLATEAU_EPOCHS, self.epochs),
            "shift_epoch": self.shift_epoch,
            "recovery_share": RECOVERY_SHARE,
            "recovery_window": RECOVERY_WINDOW,
            "seconds": self.seconds,
            "coordination_gap": self.coordination_gap,
            "coordination_classes": self.coordination_classes,
            "arms": {name: s.as_dict() for name, s in self.arms.items()},
            "warm_start": [row.as_dict() for row in self.warm],
            "targets": self.targets(),
            "runs": {
                name: [
                    {
                        "seed": r.seed,
                        "cumulative_regret": r.cumulative_regret,
                        "total_tokens": r.total_tokens,
                        "epochs": [_epoch_dict(e) for e in r.epochs],
                    }
                    for r in runs
                ]
                for name, runs in self.runs.items()
            },
        }


def _epoch_dict(report: EpochReport) -> dict[str, Any]:
    return {
        "epoch": report.epoch,
        "trajectories": report.trajectories,
        "true_quality": report.true_quality,
        "judge_score": report.judge_score,
        "reward": report.reward,
        "tokens_per_trajectory": report.tokens_per_trajectory,
        "skip_share": report.skip_share,
        "regret": report.regret,
        "per_class": report.per_class,
    }


def cold_twin(arm: Arm) -> Arm:
    """The same rules started empty, named as the arm declares."""
    return replace(arm, name=arm.cold_twin or f"{arm.name}-cold", warm_weight=None, cold_twin=None)


def run_learning_bench(
    scenario: Scenario,
    arms: Sequence[Arm],
    *,
    seeds: int,
    epochs: int,
    source: Scenario | PolicyGraph | None,
    shift: Shift | None = None,
    progress: Progress = lambda _stage: None,
    clock: Callable[[], float],
    runner: ArmRunner | None = None,
) -> LearningBench:
    """Run every arm on seeds 0..seeds-1; ``source`` feeds warm arms (a scenario to learn
    on, or a learned graph imported as is). Warm arms get their cold twin run as well, for
    the warm-start table. With a ``shift`` the world changes mid-run for every arm, and each
    run reports how long it took to recover. A ``runner`` runs every arm instead of the
    engine; it takes neither warm starts nor shifts."""
    if runner is not None and (shift is not None or any(a.warm_weight for a in arms)):
        raise ValueError("a runner other than the engine takes neither warm arms nor a shift")
    started = clock()
    oracle = Oracle(scenario, PAPER_REWARD)
    source_oracle = Oracle(source, PAPER_REWARD) if isinstance(source, Scenario) else None
    plan = list(arms)
    for arm in arms:
        twin = cold_twin(arm)
        if arm.warm_weight is not None and all(a.name != twin.name for a in plan):
            plan.append(twin)
    # per-class figures are of the plateau's world: the one after a shift
    world = scenario if shift is None else shift.after
    classes = list(world.classes)
    runs: dict[str, list[Run]] = {arm.name: [] for arm in plan}
    for arm in plan:
        for seed in range(seeds):
            progress(f"{arm.name}, seed {seed}")
            start = None
            if arm.warm_weight is not None:
                start = warm_graph(
                    _source_graph(source, source_oracle, arm, seed, epochs),
                    arm,
                    list(scenario.classes),
                )
            if runner is not None:
                runs[arm.name].append(runner(arm, seed, oracle))
                continue
            run, _ = run_arm(scenario, arm, seed, epochs, oracle, start=start, shift=shift)
            runs[arm.name].append(run)
    warm_rows = [
        _warm_row(arm.name, runs[arm.name], runs[cold_twin(arm).name])
        for arm in plan
        if arm.warm_weight is not None
    ]
    return LearningBench(
        scenario=scenario.name,
        warm_source=_source_name(source),
        seeds=list(range(seeds)),
        epochs=epochs,
        arms={name: ArmSummary.of(r, classes) for name, r in runs.items()},
        runs=runs,
        coordination_gap=fixed_pipeline_gap(oracle if shift is None else shift.oracle, world),
        warm=warm_rows,
        seconds=clock() - started,
        shift_epoch=None if shift is None else shift.epoch,
    )


def _source_graph(
    source: Scenario | PolicyGraph | None,
    source_oracle: Oracle | None,
    arm: Arm,
    seed: int,
    epochs: int,
) -> PolicyGraph:
    if source is None:
        raise ValueError(f"arm {arm.name} starts warm but no --warm-from source was given")
    if isinstance(source, PolicyGraph):
        return source
    assert source_oracle is not None  # built alongside a scenario source
    _, graph = run_arm(source, cold_twin(arm), seed, epochs, source_oracle)
    return graph


def _source_name(source: Scenario | PolicyGraph | None) -> str:
    if source is None:
        return "-"
    if isinstance(source, Scenario):
        return source.name
    return "policy file"


def _warm_row(name: str, warm: Sequence[Run], cold: Sequence[Run]) -> WarmRow:
    pairs = list(zip(warm, cold, strict=True))
    return WarmRow(
        warm=name,
        cold=cold[0].arm,
        savings=Estimate.of([1.0 - w.total_tokens / c.total_tokens for w, c in pairs]),
        plateau_delta=Estimate.of(
            [w.plateau_of("true_quality") - c.plateau_of("true_quality") for w, c in pairs]
        ),
        savings_at_cold_plateau=Estimate.of(
            [
                1.0 - c.plateau_of("tokens_per_trajectory") * c.trajectories / c.total_tokens
                for c in cold
            ]
        ),
        early_regret_saving=Estimate.of(
            [1.0 - w.early_regret() / c.early_regret() for w, c in pairs]
        ),
    )


def write_plots(bench: LearningBench, out: Path) -> list[Path]:
    """Learning curves (mean and 95% band per arm) and the per-class plateau, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    titles = {
        "true_quality": "true quality",
        "judge_score": "judge score",
        "tokens_per_trajectory": "tokens / trajectory",
        "skip_share": "skip share",
        "regret": "regret vs oracle",
    }
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    flat = list(axes.flat)
    for ax, (metric, title) in zip(flat, titles.items(), strict=False):
        for name, summary in bench.arms.items():
            series = summary.per_epoch[metric]
            x = np.arange(1, len(series) + 1)
            ax.plot(x, [e.mean for e in series], label=name)
            ax.fill_between(x, [e.ci_low for e in series], [e.ci_high for e in series], alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    flat[0].legend(fontsize="small")
    flat[-1].axis("off")
    fig.suptitle(f"{bench.scenario}: {len(bench.seeds)} seeds, 95% intervals")
    fig.tight_layout()
    curves = out / "curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(12, 5))
    classes = list(next(iter(bench.arms.values())).per_class)
    width = 0.8 / max(1, len(bench.arms))
    for i, (name, summary) in enumerate(bench.arms.items()):
        means = [summary.per_class[c].mean for c in classes]
        errors = [(summary.per_class[c].ci_high - summary.per_class[c].ci_low) / 2 for c in classes]
        ax.bar(np.arange(len(classes)) + i * width, means, width, yerr=errors, label=name)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax.set_ylabel(f"plateau true quality (last {PLATEAU_EPOCHS} epochs)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    per_class = out / "per_class.png"
    fig.savefig(per_class, dpi=100)
    plt.close(fig)
    return [curves, per_class]
