"""Resolve a validated pipeline spec into the domain's :class:`Pipeline`, reporting every
inconsistency at once."""

from collections.abc import Sequence

from schemas.records import Regime
from services.pipeline.spec import CellSpec, PipelineSpec, PoolSpec
from services.policy.cells import Cell, CellPool, Variant, make_pool
from services.policy.pipeline import Pipeline, TaskClassInfo
from services.spec_files import Problems


def build_pipeline(spec: PipelineSpec, source: str) -> Pipeline:
    """The pipeline of ``spec``; raises SpecProblems listing every inconsistency."""
    problems = Problems()
    pool = build_pool(spec, problems, spec.protected)
    classes: dict[str, TaskClassInfo] = {}
    for i, entry in enumerate(spec.classes):
        if entry.name in classes:
            problems.add(f"classes.{i}.name", f"class {entry.name!r} is defined twice")
            continue
        classes[entry.name] = TaskClassInfo(entry.name, entry.description, entry.features)
    problems.raise_if_any()
    assert pool is not None  # no problems, so the pool was built
    return Pipeline(spec.name, spec.description, source, pool, spec.budget, classes)


def build_pool(
    spec: PoolSpec, problems: Problems, protected: Sequence[str] = ()
) -> CellPool | None:
    """The pool of ``spec``'s cells and plans (``None``, with problems added, if it has
    none or they do not fit together)."""
    before = len(problems.items)
    cells = _cells(spec.cells or [], problems)
    names = [c.name for c in cells]
    for i, name in enumerate(protected):
        if name not in names:
            problems.add(f"protected.{i}", f"no cell {name!r} in the pipeline ({', '.join(names)})")
    if spec.plans is not None and Regime.STRAIGHTFORWARD not in spec.plans:
        missing = [r.value for r in Regime if r not in spec.plans]
        if missing:
            problems.add(
                "plans",
                f"no plan for {', '.join(missing)} and no straightforward plan for them to "
                "fall back on",
            )
    plans = spec.plans if spec.plans is not None else spec.plan or []
    try:
        pool = make_pool(cells, plans, (p for p in protected if p in names))
    except ValueError as error:
        problems.add("plans" if spec.plans is not None else "plan", str(error))
        return None
    return None if len(problems.items) > before else pool


def _cells(specs: list[CellSpec], problems: Problems) -> list[Cell]:
    """The cells, each once, so that plans and protected cells are checked against them even
    when a cell has problems of its own."""
    cells: list[Cell] = []
    seen: set[str] = set()
    for i, cell in enumerate(specs):
        if cell.name in seen:
            problems.add(f"cells.{i}.name", f"cell {cell.name!r} is defined twice")
            continue
        seen.add(cell.name)
        variants = tuple(Variant(cell.name, v.protocol, v.model) for v in cell.variants) or (
            Variant(cell.name),
        )
        actions = [v.action for v in variants]
        for action in sorted({a for a in actions if actions.count(a) > 1}):
            problems.add(f"cells.{i}.variants", f"variant {action!r} is listed twice")
        if cell.default is not None:
            if cell.default not in actions:
                problems.add(
                    f"cells.{i}.default",
                    f"{cell.default!r} is not a variant of {cell.name} ({', '.join(actions)})",
                )
            else:
                # The default leads: the rule-based prior and the fixed pipeline run it.
                first = actions.index(cell.default)
                variants = (variants[first], *variants[:first], *variants[first + 1 :])
        cells.append(Cell(cell.name, cell.role, variants))
    return cells
