"""The oracle: the best plan per task class, and the regret of a trajectory against it.

A *path* is what a trajectory ends up invoking: at most one variant per plan cell, and for
each cell that informs the draft whether it ran before the solver (it counts) or after it
(it costs but no longer counts). Nothing else about the order changes what a path costs or
earns. Which paths are reachable follows from the router's own rules (``candidate_actions``),
explored here assuming no step fails.

A path's expected hybrid reward accounts for failures: each invoked variant succeeds
(within ``max_retries`` retries) with ``1 - p^(R+1)``; cells that need a draft (verifier,
critic, synthesizer, evaluator) run only if a solver succeeded. The expected quality is
exact over every success pattern; the cost term is taken at the expected token count.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from schemas.records import Budget, Handoff, RewardConfig, Role, StepStatus, TrajectoryState
from services.policy import (
    PAPER_REWARD,
    CellPool,
    candidate_actions,
    hybrid_reward,
    parse_action,
)
from services.sim.scenario import F64, FEEDS_DRAFT, I64, Scenario, TaskClass

#: In a chosen path: a cell the trajectory never decided on (it ended before, by failure).
UNDECIDED = -2

#: Bound on outcomes x success patterns x cells held in memory at once.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True, slots=True)
class Paths:
    """Paths of one class: ``index[i, slot]`` is the invoked variant or -1, ``late[i, slot]``
    whether that cell ran after the draft was written."""

    index: I64
    late: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass(frozen=True, eq=False)
class ClassOracle:
    """Every reachable path of one class with its expected quality, tokens, retries and
    reward."""

    task_class: TaskClass
    paths: Paths
    quality: F64
    tokens: F64
    retries: F64
    reward: F64
    _expect: "_Expectation"

    @property
    def best(self) -> int:
        return int(np.argmax(self.reward))

    @property
    def best_reward(self) -> float:
        return float(self.reward[self.best])

    def actions(self, row: int) -> tuple[str, ...]:
        """The invoke actions of path ``row`` in plan order."""
        variants = self.task_class.variants
        return tuple(
            variants[slot][v].action for slot, v in enumerate(self.paths.index[row]) if v >= 0
        )

    def value(self, chosen: Paths) -> float:
        """Expected reward of one chosen path; cells marked UNDECIDED are completed in the
        best reachable way, so a trajectory is never charged for choices it did not make."""
        index, late = chosen.index[0], chosen.late[0]
        free = index == UNDECIDED
        consistent = (free | ((self.paths.index == index) & (self.paths.late == late))).all(axis=1)
        if consistent.any():
            return float(self.reward[consistent].max())
        # Only failures lead off the reachable set (e.g. work after a failed evaluator).
        return float(self._expect(Paths(np.where(free, -1, index)[None], late[None]))[3][0])

    def regret(self, state: TrajectoryState) -> float:
        return self.best_reward - self.value(chosen_path(self.task_class, state))


class Oracle:
    """Per-class oracles of a scenario, enumerated once per class on first use."""

    def __init__(
        self, scenario: Scenario, reward: RewardConfig = PAPER_REWARD, *, allow_skip: bool = True
    ) -> None:
        self.scenario = scenario
        self.reward = reward
        self.allow_skip = allow_skip
        self._classes: dict[str, ClassOracle] = {}
        self._paths: dict[tuple[str, ...], Paths] = {}

    def for_class(self, name: str) -> ClassOracle:
        if name not in self._classes:
            task_class = self.scenario.task_class(name)
            expect = _Expectation(task_class, self.scenario.max_retries, self.reward)
            # Reachability depends on the plan only, so classes of one regime share it.
            paths = self._paths.get(task_class.plan)
            if paths is None:
                paths = reachable_paths(
                    task_class,
                    self.scenario.pool,
                    allow_skip=self.allow_skip,
                    budget=self.scenario.pipeline.budget,
                )
                self._paths[task_class.plan] = paths
            quality, tokens, retries, reward = expect(paths)
            self._classes[name] = ClassOracle(
                task_class, paths, quality, tokens, retries, reward, expect
            )
        return self._classes[name]

    def regret(self, state: TrajectoryState) -> float:
        return self.for_class(self.scenario.task_class(state.task_class).name).regret(state)


def chosen_path(task_class: TaskClass, state: TrajectoryState) -> Paths:
    """The path a trajectory chose: the variant it invoked per plan cell (whether or not it
    succeeded), -1 for cells it skipped or left out by finishing, UNDECIDED for cells it
    never reached because it ended without the evaluator saying done. A draft-informing
    cell is late when it was invoked after a solver."""
    index = np.full(len(task_class.plan), -1 if state.done else UNDECIDED, dtype=np.int64)
    late = np.zeros(len(task_class.plan), dtype=np.bool_)
    for cell in state.skipped:
        index[task_class.plan.index(cell)] = -1
    solver_step: int | None = None
    for edge in sorted(state.visited, key=lambda e: e.step):
        if edge.status is StepStatus.SKIPPED:
            continue
        slot, variant = task_class.locate(edge.action)
        index[slot] = variant
        late[slot] = bool(task_class.feeds[slot]) and solver_step is not None
        if task_class.drafts[slot] and solver_step is None:
            solver_step = edge.step
    return Paths(index[None], late[None])


def reachable_paths(
    task_class: TaskClass,
    pool: CellPool,
    *,
    allow_skip: bool = True,
    budget: Budget | None = None,
) -> Paths:
    """Every path the router can produce for this class when nothing fails."""
    base = TrajectoryState(
        task_id="oracle",
        trajectory_id="oracle",
        regime=task_class.regime,
        task_class=task_class.name,
        features=task_class.features,
        plan=list(task_class.plan),
        handoff=Handoff(goal=task_class.description),
        budget=budget or Budget(),
    )
    drafted = base.handoff.model_copy(update={"draft_answer": "draft"})
    roles = dict(zip(task_class.plan, task_class.roles, strict=True))
    feeds = {name for name, role in roles.items() if role in FEEDS_DRAFT}
    Cells = frozenset[str]

    @cache
    def moves(invoked: Cells, skipped: Cells) -> frozenset[tuple[bool, str]]:
        """Legal (is_skip, cell) moves; empty when the trajectory is over."""
        finished = any(roles[c] is Role.EVALUATOR for c in invoked)
        if finished or len(invoked) + len(skipped) >= base.budget.max_steps:
            return frozenset()
        state = base.model_copy(
            update={
                "invoked": sorted(invoked),
                "skipped": sorted(skipped),
                "handoff": drafted if has_draft(invoked) else base.handoff,
            }
        )
        return frozenset(
            parse_action(a) for a in candidate_actions(state, pool, allow_skip=allow_skip)
        )

    def has_draft(invoked: Cells) -> bool:
        return any(roles[c] is Role.SOLVER for c in invoked)

    @cache
    def walk(invoked: Cells, skipped: Cells, late: Cells) -> frozenset[tuple[Cells, Cells]]:
        legal = moves(invoked, skipped)
        if not legal:
            return frozenset({(invoked, late)})
        ends: set[tuple[Cells, Cells]] = set()
        for is_skip, cell in legal:
            if is_skip:
                ends |= walk(invoked, skipped | {cell}, late)
            else:
                now_late = late | {cell} if has_draft(invoked) and cell in feeds else late
                ends |= walk(invoked | {cell}, skipped, now_late)
        return frozenset(ends)

    index: list[list[int]] = []
    late: list[list[bool]] = []
    for cells, late_cells in sorted(walk(frozenset(), frozenset(), frozenset()), key=_order):
        flags = [name in late_cells for name in task_class.plan]
        for row in _variant_rows(task_class, cells):
            index.append(row)
            late.append(flags)
    size = (len(index), len(task_class.plan))
    return Paths(
        np.array(index, dtype=np.int64).reshape(size), np.array(late, dtype=np.bool_).reshape(size)
    )


def _order(end: tuple[frozenset[str], frozenset[str]]) -> tuple[list[str], list[str]]:
    return sorted(end[0]), sorted(end[1])


def _variant_rows(task_class: TaskClass, cells: frozenset[str]) -> Iterator[list[int]]:
    """Every assignment of a variant to each invoked cell (-1 elsewhere)."""
    rows: list[list[int]] = [[]]
    for name, variants in zip(task_class.plan, task_class.variants, strict=True):
        choices = range(len(variants)) if name in cells else (-1,)
        rows = [[*row, v] for row in rows for v in choices]
    yield from rows


class _Expectation:
    """Expected quality, tokens, retries and reward of paths of one class."""

    def __init__(self, task_class: TaskClass, max_retries: int, reward: RewardConfig) -> None:
        self.task_class = task_class
        self.reward_config = reward
        shape = task_class.gains.shape
        # Index -1 (the last column) stands for "not invoked": never runs, costs nothing.
        self.success = np.zeros(shape)
        self.tokens = np.zeros(shape)
        self.extra_attempts = np.zeros(shape)
        for slot, variants in enumerate(task_class.variants):
            for index, variant in enumerate(variants):
                costs = task_class.costs[variant.action]
                p = costs.failure
                attempts = sum(p**k for k in range(max_retries + 1))
                self.success[slot, index] = 1.0 - p ** (max_retries + 1)
                per_attempt = costs.tokens_in.mean + (1.0 - p) * costs.tokens_out.mean
                self.tokens[slot, index] = per_attempt * attempts
                self.extra_attempts[slot, index] = attempts - 1.0
        size = len(task_class.plan)
        self.patterns = (np.arange(1 << size)[:, None] >> np.arange(size)) & 1 == 1

    def __call__(self, paths: Paths) -> tuple[F64, F64, F64, F64]:
        slots = np.arange(paths.index.shape[1])
        success = self.success[slots, paths.index]
        drafts = self.task_class.drafts
        draft_prob = 1.0 - np.prod(np.where(drafts, 1.0 - success, 1.0), axis=1)
        runs = np.where(self.task_class.needs_draft, draft_prob[:, None], 1.0)
        tokens = (runs * self.tokens[slots, paths.index]).sum(axis=1)
        retries = (runs * self.extra_attempts[slots, paths.index]).sum(axis=1)
        # Quality depends only on what counts; many paths share that, so compute it once.
        counted, inverse = np.unique(
            np.where(paths.late, -1, paths.index), axis=0, return_inverse=True
        )
        quality = np.concatenate(list(self._quality(counted)))[inverse.reshape(-1)]
        config = self.reward_config
        rewards = np.array(
            [
                hybrid_reward(q, t, 0, config) - config.retry_penalty * r
                for q, t, r in zip(quality.tolist(), tokens.tolist(), retries.tolist(), strict=True)
            ]
        )
        return quality, tokens, retries, rewards

    def _quality(self, counted: I64) -> Iterator[F64]:
        """Expected latent quality, exact over every success pattern of the counted cells;
        cells needing a draft take effect only in patterns where a solver succeeded."""
        task_class = self.task_class
        patterns = self.patterns
        has_draft = (patterns & task_class.drafts).any(axis=1)
        effective = patterns & (~task_class.needs_draft | has_draft[:, None])
        slots = np.arange(counted.shape[1])
        step = max(1, _CHUNK_ELEMENTS // patterns.size)
        for start in range(0, len(counted), step):
            chunk = counted[start : start + step]
            p = self.success[slots, chunk][:, None, :]
            probability = np.prod(np.where(patterns[None], p, 1.0 - p), axis=2)
            succeeded = np.where(effective[None], chunk[:, None, :], -1)
            yield (probability * task_class.quality(succeeded)).sum(axis=1)
