"""Cells, their variants (skill protocol x model) and the activation plans per regime.

A *cell* is one slot of a pipeline (``planner``, ``solver``, ``web_search_primary``...). It has a
role, which fixes its preconditions and belief update, and one or more variants. The first
variant is the cell's default: it is what the fixed pipeline and the rule-based prior run.
"""

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.records import Regime, Role

SKIP_PREFIX = "skip:"


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of running a cell. ``action`` is its id in the policy graph."""

    cell: str
    protocol: str | None = None
    model: str | None = None

    @property
    def action(self) -> str:
        text = self.cell
        if self.protocol:
            text += f".{self.protocol}"
        if self.model:
            text += f"@{self.model}"
        return text


@dataclass(frozen=True, slots=True)
class Cell:
    name: str
    role: Role
    variants: tuple[Variant, ...]

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"cell {self.name!r} has no variants")
        strays = [v.action for v in self.variants if v.cell != self.name]
        if strays:
            raise ValueError(f"variants {strays} do not belong to cell {self.name!r}")

    @property
    def default(self) -> Variant:
        return self.variants[0]


def skip_action(cell: str) -> str:
    return SKIP_PREFIX + cell


def parse_action(action: str) -> tuple[bool, str]:
    """Split an action id into (is_skip, cell name)."""
    if action.startswith(SKIP_PREFIX):
        return True, action[len(SKIP_PREFIX) :]
    return False, action.split("@", 1)[0].split(".", 1)[0]


@dataclass(frozen=True)
class CellPool:
    """The cells a deployment can run, the ordered plan for each regime, and the cells no
    policy may skip (``protected``: a legal step never offers ``skip:X`` for them)."""

    cells: Mapping[str, Cell]
    plans: Mapping[Regime, tuple[str, ...]]
    protected: frozenset[str] = frozenset()
    _variants: Mapping[str, Variant] = field(init=False, repr=False, compare=False)
    #: Candidate lists by what they depend on (``services.policy.actions``): a cache that
    #: follows from the pool, not state of it.
    memo: dict[Hashable, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for regime, plan in self.plans.items():
            missing = [c for c in plan if c not in self.cells]
            if missing:
                raise ValueError(f"plan for {regime.value} names unknown cells {missing}")
            if len(set(plan)) != len(plan):
                raise ValueError(f"plan for {regime.value} lists a cell twice")
        unknown = sorted(self.protected - set(self.cells))
        if unknown:
            raise ValueError(f"protected names unknown cells {unknown}")
        variants = {v.action: v for cell in self.cells.values() for v in cell.variants}
        object.__setattr__(self, "_variants", variants)
        object.__setattr__(self, "memo", {})

    def plan_for(self, regime: Regime) -> tuple[str, ...]:
        try:
            return self.plans[regime]
        except KeyError:
            return self.plans[Regime.STRAIGHTFORWARD]

    def variant(self, action: str) -> Variant:
        try:
            return self._variants[action]
        except KeyError:
            raise KeyError(f"unknown action {action!r}") from None

    def deviates(self, action: str) -> bool:
        """Whether the action leaves the fixed pipeline: a skip, or a variant other than
        its cell's default."""
        is_skip, cell = parse_action(action)
        return is_skip or self.cells[cell].default.action != action

    def knows(self, action: str) -> bool:
        is_skip, cell = parse_action(action)
        return cell in self.cells if is_skip else action in self._variants

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self._variants)


# --- the paper's pool --------------------------------------------------------------------

PAPER_MODELS: tuple[str, ...] = ("balanced", "fast", "strong")
"""Three model slots; the first is the default model. Real deployments map them to models."""

SOLVER_PROTOCOLS: tuple[str, ...] = ("chain_of_thought", "concise", "evidence_first")


def _single(name: str, role: Role) -> Cell:
    return Cell(name, role, (Variant(name),))


def paper_cells() -> dict[str, Cell]:
    """The paper's 16-variant pool: planner, memory, two web-search tools, nine solver
    variants (three protocols x three models), two verifiers, evaluator."""
    solver = Cell(
        "solver",
        Role.SOLVER,
        tuple(Variant("solver", p, m) for p in SOLVER_PROTOCOLS for m in PAPER_MODELS),
    )
    verifier = Cell(
        "verifier", Role.VERIFIER, tuple(Variant("verifier", None, m) for m in PAPER_MODELS[:2])
    )
    cells = [
        _single("planner", Role.PLANNER),
        _single("memory", Role.MEMORY),
        _single("web_search_primary", Role.WEB_SEARCH),
        _single("web_search_secondary", Role.WEB_SEARCH),
        solver,
        verifier,
        _single("evaluator", Role.EVALUATOR),
    ]
    return {c.name: c for c in cells}


PAPER_PLAN: tuple[str, ...] = (
    "planner",
    "memory",
    "web_search_primary",
    "web_search_secondary",
    "solver",
    "verifier",
    "evaluator",
)


def paper_pool() -> CellPool:
    """Every regime runs the same seven cells in the same order; that order is the prior."""
    return CellPool(paper_cells(), {regime: PAPER_PLAN for regime in Regime})


def fixed_pipeline(pool: CellPool, regime: Regime) -> tuple[str, ...]:
    """The paper's fixed baseline: every cell of the plan on its default variant, in order."""
    return tuple(pool.cells[c].default.action for c in pool.plan_for(regime))


def make_pool(
    cells: Iterable[Cell],
    plans: Mapping[Regime, Sequence[str]] | Sequence[str],
    protected: Iterable[str] = (),
) -> CellPool:
    """Build a pool from cells and either one plan for all regimes or a plan per regime."""
    by_name = {c.name: c for c in cells}
    if isinstance(plans, Mapping):
        table = {Regime(r): tuple(p) for r, p in plans.items()}
    else:
        table = {regime: tuple(plans) for regime in Regime}
    return CellPool(by_name, table, frozenset(protected))
