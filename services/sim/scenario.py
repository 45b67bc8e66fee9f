"""A scenario resolved for simulation: the pool, and per task class the cost and quality
effect of every variant of its plan, as lookup tables.

Resolution rules (docs/scenarios.md): a *selector* (``cell``, ``cell.protocol``,
``cell@model`` or ``cell.protocol@model``) addresses every variant it matches. Costs come
from the most specific selector that sets them (a class's ``failure`` beats the defaults);
gains of all matching selectors add up; a class's token factors multiply.
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from schemas.records import Handoff, Regime, Role, TaskFeatures
from services.pipeline import PipelineError, load_pipeline
from services.pipeline.build import build_pool
from services.policy import CellPool, Variant, detect_regime, precondition_holds
from services.policy.pipeline import Pipeline
from services.sim.spec import (
    ClassEffect,
    Dist,
    JudgeSpec,
    ScenarioSpec,
    TaskClassSpec,
    VariantDefaults,
)
from services.spec_files import Problems, SpecFileError, SpecProblems

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The oracle enumerates every success pattern of a plan (2^cells), so plans stay short.
MAX_PLAN_CELLS = 10

#: Roles whose steps return evidence items, so every class needs a count for them.
RETRIEVAL_ROLES = (Role.MEMORY, Role.WEB_SEARCH)

#: Roles whose output informs the draft: they count only if they succeed before it is written.
FEEDS_DRAFT = frozenset({Role.PLANNER, Role.MEMORY, Role.WEB_SEARCH})

E = TypeVar("E", VariantDefaults, ClassEffect)
V = TypeVar("V")

_SELECTOR = re.compile(
    r"^(?P<cell>[A-Za-z0-9][A-Za-z0-9_\-]*)(?:\.(?P<protocol>[A-Za-z0-9_\-]+))?"
    r"(?:@(?P<model>[A-Za-z0-9_.:/\-]+))?$"
)


class ScenarioError(SpecFileError):
    """A scenario that cannot be used; one line per problem, each naming the file."""

    kind = "scenario"


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    cell: str
    protocol: str | None
    model: str | None

    @classmethod
    def parse(cls, text: str) -> "Selector":
        match = _SELECTOR.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a selector (cell, cell.protocol, cell@model or "
                "cell.protocol@model)"
            )
        return cls(text, match["cell"], match["protocol"], match["model"])

    @property
    def specificity(self) -> int:
        return (self.protocol is not None) + (self.model is not None)

    def matches(self, variant: Variant) -> bool:
        return (
            variant.cell == self.cell
            and self.protocol in (None, variant.protocol)
            and self.model in (None, variant.model)
        )


@dataclass(frozen=True, slots=True)
class Costs:
    """What one attempt of a variant costs, and how likely it fails."""

    tokens_in: Dist
    tokens_out: Dist
    latency_s: Dist
    failure: float


@dataclass(frozen=True, eq=False)
class TaskClass:
    """One task class with its plan and the effect tables of the plan's variants.

    ``gains[slot, v]`` is the gain of variant ``v`` of plan cell ``slot``; the last column is
    zero and stands for "did not succeed", so index -1 reads as no gain. ``feeds`` marks the
    plan cells that inform the draft, ``drafts`` those that write it, ``needs_draft`` those
    that can only run once a draft exists.
    """

    name: str
    description: str
    features: TaskFeatures
    regime: Regime
    count: int
    base_quality: float
    plan: tuple[str, ...]
    roles: tuple[Role, ...]
    variants: tuple[tuple[Variant, ...], ...]
    costs: Mapping[str, Costs]
    gains: F64
    absence: F64
    evidence: Mapping[str, int]
    evidence_bytes: int
    feeds: npt.NDArray[np.bool_] = field(init=False, repr=False)
    drafts: npt.NDArray[np.bool_] = field(init=False, repr=False)
    needs_draft: npt.NDArray[np.bool_] = field(init=False, repr=False)
    _slots: Mapping[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        slots = {
            v.action: (slot, index)
            for slot, variants in enumerate(self.variants)
            for index, v in enumerate(variants)
        }
        empty = Handoff(goal="")
        assign = object.__setattr__
        assign(self, "_slots", slots)
        assign(self, "feeds", np.array([r in FEEDS_DRAFT for r in self.roles], dtype=np.bool_))
        assign(self, "drafts", np.array([r is Role.SOLVER for r in self.roles], dtype=np.bool_))
        needs = [not precondition_holds(r, empty) for r in self.roles]
        assign(self, "needs_draft", np.array(needs, dtype=np.bool_))

    def locate(self, action: str) -> tuple[int, int]:
        """(plan slot, variant index) of an invoke action."""
        try:
            return self._slots[action]
        except KeyError:
            raise KeyError(
                f"{action!r} is not a variant of the plan of class {self.name}"
            ) from None

    def quality(self, succeeded: I64, absent: npt.NDArray[np.bool_] | None = None) -> F64:
        """Latent quality ``clip(base + sum of gains + sum of absence effects, 0, 1)``.

        ``succeeded[..., slot]`` is the index of the variant of that plan cell that ran
        successfully, or -1. The absence effect of a cell applies where ``absent`` is set
        (by default: wherever nothing succeeded).
        """
        slots = np.arange(len(self.plan))
        gains = self.gains[slots, succeeded].sum(axis=-1)
        missing = succeeded < 0 if absent is None else absent
        losses = np.where(missing, self.absence, 0.0).sum(axis=-1)
        result: F64 = np.clip(self.base_quality + gains + losses, 0.0, 1.0)
        return result


@dataclass(frozen=True, eq=False)
class Scenario:
    name: str
    description: str
    source: str
    pipeline: Pipeline
    max_retries: int
    judges: tuple[JudgeSpec, ...]
    classes: Mapping[str, TaskClass]

    @property
    def pool(self) -> CellPool:
        return self.pipeline.pool

    @property
    def tasks_per_epoch(self) -> int:
        return sum(c.count for c in self.classes.values())

    def task_class(self, name: str | None) -> TaskClass:
        if name is None or name not in self.classes:
            known = ", ".join(self.classes)
            raise KeyError(f"scenario {self.name} has no task class {name!r} (known: {known})")
        return self.classes[name]


# --- building ------------------------------------------------------------------------------


def build_scenario(spec: ScenarioSpec, source: str) -> Scenario:
    """Resolve a validated spec; raises SpecProblems listing every inconsistency of the
    scenario, or ScenarioError with the problems of the pipeline file it names."""
    problems = Problems()
    pipeline = _pipeline(spec, source, problems)
    if pipeline is None:
        raise SpecProblems(problems.items)
    pool = pipeline.pool
    variants = [v for cell in pool.cells.values() for v in cell.variants]
    defaults = _selectors(spec.defaults, variants, "defaults", problems)
    base_costs = {v.action: _base_costs(v, defaults, problems) for v in variants}
    _check_cells(spec.absent, pool, "absent", problems)
    _check_evidence_keys(spec.evidence, pool, "evidence", problems)
    classes: dict[str, TaskClass] = {}
    for i, class_spec in enumerate(spec.classes):
        loc = f"classes.{i}"
        if class_spec.name in classes:
            problems.add(f"{loc}.name", f"class {class_spec.name!r} is defined twice")
            continue
        built = _build_class(class_spec, loc, spec, pipeline, defaults, base_costs, problems)
        if built is not None:
            classes[class_spec.name] = built
    if not any(c.count for c in spec.classes):
        problems.add("classes", "every class has count 0; an epoch would have no tasks")
    names = [j.name for j in spec.judges]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("judges", f"judge {name!r} is listed twice")
    problems.raise_if_any()
    return Scenario(
        name=spec.name,
        description=spec.description,
        source=source,
        pipeline=pipeline,
        max_retries=spec.max_retries,
        judges=tuple(spec.judges),
        classes=classes,
    )


def _pipeline(spec: ScenarioSpec, source: str, problems: Problems) -> Pipeline | None:
    """The pipeline the scenario names (a relative path starts at the scenario's directory),
    or the one its own cells make."""
    if spec.pipeline is not None:
        try:
            pipeline = load_pipeline(spec.pipeline, relative_to=Path(source).parent)
        except PipelineError as error:
            if error.listed:
                raise ScenarioError(str(error)) from None
            problems.add("pipeline", str(error))
            return None
    else:
        pool = build_pool(spec, problems)
        if pool is None:
            return None
        pipeline = Pipeline(spec.name, spec.description, "inline", pool)
    for regime, plan in pipeline.pool.plans.items():
        if len(plan) > MAX_PLAN_CELLS:
            where = "pipeline" if spec.pipeline is not None else "plan"
            problems.add(
                where,
                f"the plan for {regime.value} lists {len(plan)} cells; the simulator takes at "
                f"most {MAX_PLAN_CELLS}",
            )
    return None if problems.items else pipeline


def _selectors(
    entries: Mapping[str, E], variants: list[Variant], loc: str, problems: Problems
) -> list[tuple[Selector, E]]:
    parsed = []
    for text, entry in entries.items():
        try:
            selector = Selector.parse(text)
        except ValueError as error:
            problems.add(f"{loc}.{text}", str(error))
            continue
        if not any(selector.matches(v) for v in variants):
            problems.add(f"{loc}.{text}", "matches no variant of the pool")
            continue
        parsed.append((selector, entry))
    return parsed


def _most_specific(
    variant: Variant,
    entries: list[tuple[Selector, E]],
    pick: Callable[[E], V | None],
    where: str,
    problems: Problems,
) -> V | None:
    """The value set by the most specific matching selector; a tie is a problem because
    ``cell.protocol`` and ``cell@model`` are equally specific and neither should win."""
    found = [
        (s, value) for s, e in entries if s.matches(variant) and (value := pick(e)) is not None
    ]
    if not found:
        return None
    top = max(s.specificity for s, _ in found)
    best = [(s, value) for s, value in found if s.specificity == top]
    if len(best) > 1:
        problems.add(
            where,
            f"{variant.action} gets this from both {best[0][0].text!r} and {best[1][0].text!r};"
            f" set it on {variant.action!r} to decide",
        )
    return best[0][1]


def _base_costs(
    variant: Variant, defaults: list[tuple[Selector, VariantDefaults]], problems: Problems
) -> Costs | None:
    def resolve(name: str, pick: Callable[[VariantDefaults], V | None]) -> V | None:
        return _most_specific(variant, defaults, pick, f"defaults ({name})", problems)

    tokens_in = resolve("tokens_in", lambda d: d.tokens_in)
    tokens_out = resolve("tokens_out", lambda d: d.tokens_out)
    latency = resolve("latency_s", lambda d: d.latency_s)
    failure = resolve("failure", lambda d: d.failure)
    for name, value in (("tokens_in", tokens_in), ("tokens_out", tokens_out)):
        if value is None:
            problems.add(
                "defaults",
                f"variant {variant.action} has no {name}; set it on a selector that matches "
                f"it (e.g. {variant.cell!r})",
            )
    if tokens_in is None or tokens_out is None:
        return None
    return Costs(tokens_in, tokens_out, latency or Dist(mean=0.0), failure or 0.0)


def _build_class(
    spec: TaskClassSpec,
    loc: str,
    scenario: ScenarioSpec,
    pipeline: Pipeline,
    defaults: list[tuple[Selector, VariantDefaults]],
    base_costs: Mapping[str, Costs | None],
    problems: Problems,
) -> TaskClass | None:
    before = len(problems.items)
    pool = pipeline.pool
    features = _features(spec, pipeline, loc, problems)
    if features is None:
        return None
    regime = detect_regime(features)
    if not {regime, Regime.STRAIGHTFORWARD} & set(pool.plans):
        problems.add(
            f"{loc}.features",
            f"the features give regime {regime.value}, which has no plan, and 'plans' has no "
            "straightforward plan to fall back on",
        )
        return None
    plan = pool.plan_for(regime)
    variants = [v for cell in pool.cells.values() for v in cell.variants]
    effects = _selectors(spec.effects, variants, f"{loc}.effects", problems)
    _check_cells(spec.absent, pool, f"{loc}.absent", problems)
    _check_evidence_keys(spec.evidence, pool, f"{loc}.evidence", problems)
    evidence = _evidence_counts(spec, scenario, pool, plan, loc, problems)
    slots = tuple(pool.cells[name].variants for name in plan)
    width = max(len(v) for v in slots) + 1
    gains = np.zeros((len(plan), width))
    costs: dict[str, Costs] = {}
    for slot, slot_variants in enumerate(slots):
        for index, variant in enumerate(slot_variants):
            matching = [e for s, e in effects if s.matches(variant)]
            gains[slot, index] = sum(d.gain for s, d in defaults if s.matches(variant)) + sum(
                e.gain for e in matching
            )
            base = base_costs[variant.action]
            if base is None:
                continue
            factor = math.prod(e.token_factor for e in matching)
            failure = _most_specific(
                variant, effects, lambda e: e.failure, f"{loc}.effects (failure)", problems
            )
            costs[variant.action] = Costs(
                base.tokens_in.scaled(factor),
                base.tokens_out.scaled(factor),
                base.latency_s,
                base.failure if failure is None else failure,
            )
    for slot in range(len(plan)):
        if abs(gains[slot, 0]) > 1e-9:
            problems.add(
                f"{loc}.effects",
                f"the default variant {slots[slot][0].action} has gain {gains[slot, 0]:+g}; "
                "base_quality is the default pipeline's quality, so default variants have "
                "gain 0 (move it into base_quality, or give the cell a positive 'absent' "
                "effect if running it hurts)",
            )
    if len(problems.items) > before:
        return None
    absence = np.array([spec.absent.get(c, scenario.absent.get(c, 0.0)) for c in plan])
    return TaskClass(
        name=spec.name,
        description=spec.description,
        features=features,
        regime=regime,
        count=spec.count,
        base_quality=spec.base_quality,
        plan=plan,
        roles=tuple(pool.cells[name].role for name in plan),
        variants=slots,
        costs=costs,
        gains=gains,
        absence=absence,
        evidence=evidence,
        evidence_bytes=spec.evidence_bytes,
    )


def _features(
    spec: TaskClassSpec, pipeline: Pipeline, loc: str, problems: Problems
) -> TaskFeatures | None:
    """A class's features: the scenario's, or those of the pipeline's class of its name
    (a scenario adds only the simulated world, so it may not give that class others)."""
    known = pipeline.classes.get(spec.name)
    if known is None:
        if spec.features is None:
            problems.add(
                f"{loc}.features",
                f"pipeline {pipeline.name} has no class {spec.name!r}; give its features here",
            )
        return spec.features
    if spec.features is not None and spec.features != known.features:
        problems.add(
            f"{loc}.features",
            f"pipeline {pipeline.name} gives class {spec.name!r} other features; leave them "
            "out here",
        )
        return None
    return known.features


def _evidence_counts(
    spec: TaskClassSpec,
    scenario: ScenarioSpec,
    pool: CellPool,
    plan: tuple[str, ...],
    loc: str,
    problems: Problems,
) -> dict[str, int]:
    """Evidence items per retrieval cell of the plan: the class's count for the cell, else
    for its role, else the scenario's (cell, then role)."""
    counts: dict[str, int] = {}
    for name in plan:
        role = pool.cells[name].role
        if role not in RETRIEVAL_ROLES:
            continue
        lookups = (
            (spec.evidence, name),
            (spec.evidence, role.value),
            (scenario.evidence, name),
            (scenario.evidence, role.value),
        )
        count = next((table[key] for table, key in lookups if key in table), None)
        if count is not None:
            counts[name] = count
        else:
            problems.add(
                f"{loc}.evidence",
                f"no evidence count for cell {name!r}; set evidence.{name} or "
                f"evidence.{role.value} here or at the top level",
            )
    return counts


def _check_cells(table: Mapping[str, float], pool: CellPool, loc: str, problems: Problems) -> None:
    for name in table:
        if name not in pool.cells:
            problems.add(f"{loc}.{name}", f"no cell {name!r} in the pool ({', '.join(pool.cells)})")


def _check_evidence_keys(
    table: Mapping[str, int], pool: CellPool, loc: str, problems: Problems
) -> None:
    roles = {r.value for r in Role}
    for key in table:
        if key not in pool.cells and key not in roles:
            problems.add(f"{loc}.{key}", f"{key!r} is neither a cell of the pool nor a role")
