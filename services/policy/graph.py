"""The policy graph: per signature visits, per (signature, action) edge statistics.

Storage is columnar and dense: one row per signature, one column per action, numpy arrays
for each statistic. Selection reads a row; backup updates many cells at once with one
vectorised Chan merge, so the same code serves one trajectory or a batch of thousands.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas.policy_file import (
    ClassRecord,
    EdgeRecord,
    NodeRecord,
    PathRecord,
    PolicyDocument,
    StreamRecord,
)
from schemas.records import FoldSpec, RewardConfig, SelectionConfig
from services.policy.bulk import collector_paused
from services.policy.floor import ClassFloor
from services.policy.signature import Signature
from services.policy.stats import EdgeStats, RunningStat, chan_merge

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EdgeBatch:
    """Edge observations to back up: parallel arrays, one entry per visited edge.
    ``counts_visit`` marks the entries that count a visit of their node (all when None);
    ``weights`` weigh each entry's reward (the judge's confidence; all 1 when None);
    ``retries`` are each entry's retries, summed into its edge when given."""

    rows: I64
    cols: I64
    rewards: F64
    tokens: F64
    failed: npt.NDArray[np.bool_]
    counts_visit: npt.NDArray[np.bool_] | None = None
    weights: F64 | None = None
    retries: F64 | None = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class PolicyGraph:
    """Mutable statistics of a learned policy. Not thread-safe; one owner mutates it."""

    def __init__(self, actions: Iterable[str] = (), *, capacity: int = 64) -> None:
        self._action_cols: dict[str, int] = {}
        self._action_names: list[str] = []
        self._node_rows: dict[str, int] = {}
        self._node_names: list[str] = []
        width = 8
        self.node_visits: I64 = np.zeros(capacity, dtype=np.int64)
        self.visits: I64 = np.zeros((capacity, width), dtype=np.int64)
        self.failures: I64 = np.zeros((capacity, width), dtype=np.int64)
        # The summed weight of an edge's rewards: its count for the reward mean and M2.
        # Equal to ``visits`` while every reward weighs 1 (the paper).
        self.weight: F64 = np.zeros((capacity, width))
        self.mean_reward: F64 = np.zeros((capacity, width))
        self.reward_m2: F64 = np.zeros((capacity, width))
        self.token_mean: F64 = np.zeros((capacity, width))
        self.token_m2: F64 = np.zeros((capacity, width))
        # Retries summed over an edge's visits, completed and failed; kept only by a learner
        # that backs up expected retries (``RewardConfig.expected_retries``), else all 0.
        self.retries: F64 = np.zeros((capacity, width))
        # Per task class, the judged quality on and off its fixed pipeline (the class floor).
        self.classes: dict[str, ClassFloor] = {}
        for action in actions:
            self.action_col(action)

    # --- shape -------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._node_names)

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self._action_names)

    @property
    def signatures(self) -> tuple[str, ...]:
        return tuple(self._node_names)

    @property
    def edge_count(self) -> int:
        n, a = self.node_count, len(self._action_names)
        return int(np.count_nonzero((self.visits[:n, :a] + self.failures[:n, :a]) > 0))

    @property
    def total_node_visits(self) -> int:
        return int(self.node_visits[: self.node_count].sum())

    def _columns(self) -> tuple[str, ...]:
        return (
            "visits",
            "failures",
            "weight",
            "mean_reward",
            "reward_m2",
            "token_mean",
            "token_m2",
            "retries",
        )

    def _grow(self, rows: int, cols: int) -> None:
        cap_rows, cap_cols = self.visits.shape
        new_rows = max(cap_rows, rows)
        new_cols = max(cap_cols, cols)
        if new_rows == cap_rows and new_cols == cap_cols:
            return
        if new_rows > cap_rows:
            new_rows = max(new_rows, 2 * cap_rows)
        if new_cols > cap_cols:
            new_cols = max(new_cols, 2 * cap_cols)
        visits = np.zeros(new_rows, dtype=np.int64)
        visits[:cap_rows] = self.node_visits
        self.node_visits = visits
        for name in self._columns():
            old = getattr(self, name)
            new = np.zeros((new_rows, new_cols), dtype=old.dtype)
            new[:cap_rows, :cap_cols] = old
            setattr(self, name, new)

    def action_col(self, action: str) -> int:
        """The column of ``action``, adding it when new."""
        col = self._action_cols.get(action)
        if col is None:
            col = len(self._action_names)
            self._grow(self.visits.shape[0], col + 1)
            self._action_cols[action] = col
            self._action_names.append(action)
        return col

    def node_row(self, signature: str) -> int:
        """The row of ``signature``, adding it when new."""
        row = self._node_rows.get(signature)
        if row is None:
            row = len(self._node_names)
            self._grow(row + 1, self.visits.shape[1])
            self._node_rows[signature] = row
            self._node_names.append(signature)
        return row

    def find_row(self, signature: str) -> int | None:
        return self._node_rows.get(signature)

    def find_col(self, action: str) -> int | None:
        return self._action_cols.get(action)

    # --- reading -------------------------------------------------------------------------

    def visits_of(self, signature: str) -> int:
        row = self._node_rows.get(signature)
        return 0 if row is None else int(self.node_visits[row])

    def edge(self, signature: str, action: str) -> EdgeStats:
        row = self._node_rows.get(signature)
        col = self._action_cols.get(action)
        if row is None or col is None:
            return EdgeStats()
        return EdgeStats(
            visits=int(self.visits[row, col]),
            mean_reward=float(self.mean_reward[row, col]),
            reward_m2=float(self.reward_m2[row, col]),
            token_mean=float(self.token_mean[row, col]),
            token_m2=float(self.token_m2[row, col]),
            failures=int(self.failures[row, col]),
        )

    def expected_retries(self, signature: str, action: str) -> float | None:
        """Mean retries per visit (completed or failed) of an edge, None before its first
        visit; 0 when retries are not kept (``EdgeBatch.retries`` never given)."""
        row = self._node_rows.get(signature)
        col = self._action_cols.get(action)
        if row is None or col is None:
            return None
        n = int(self.visits[row, col]) + int(self.failures[row, col])
        return float(self.retries[row, col]) / n if n else None

    def edges_of(self, signature: str) -> dict[str, EdgeStats]:
        """Every edge of a node that has been visited or has failed."""
        return {
            a: e for a in self._action_names if (e := self.edge(signature, a)).visits or e.failures
        }

    # --- learning ------------------------------------------------------------------------

    def batch(
        self,
        edges: Sequence[tuple[str, str, bool]],
        rewards: Sequence[float],
        tokens: Sequence[float],
        *,
        counts_visit: Sequence[bool] | None = None,
        weights: Sequence[float] | None = None,
        retries: Sequence[float] | None = None,
    ) -> EdgeBatch:
        """Resolve (signature, action, failed) triples into rows and columns."""
        known_rows, known_cols = self._node_rows.get, self._action_cols.get
        rows = [known_rows(s) for s, _, _ in edges]
        cols = [known_cols(a) for _, a, _ in edges]
        if None in rows or None in cols:  # new nodes or actions: add them, in order
            rows = [
                self.node_row(s) if r is None else r
                for r, (s, _, _) in zip(rows, edges, strict=True)
            ]
            cols = [
                self.action_col(a) if c is None else c
                for c, (_, a, _) in zip(cols, edges, strict=True)
            ]
        return EdgeBatch(
            np.array(rows, dtype=np.int64),
            np.array(cols, dtype=np.int64),
            np.asarray(rewards, dtype=np.float64),
            np.asarray(tokens, dtype=np.float64),
            np.array([f for _, _, f in edges], dtype=np.bool_),
            None if counts_visit is None else np.array(counts_visit, dtype=np.bool_),
            None if weights is None else np.asarray(weights, dtype=np.float64),
            None if retries is None else np.asarray(retries, dtype=np.float64),
        )

    def backup(self, batch: EdgeBatch, *, recency_floor: float = 0.0) -> None:
        """Count every visit at its node; fold rewards and tokens of completed visits into
        their edges; count failed visits as failures (they carry no reward).

        ``recency_floor`` > 0 moves each updated mean at least ``1 - (1-floor)^k`` of the
        way to the mean of its ``k`` new observations, so old evidence fades; counts stay
        exact (they drive exploration) and M2 stays Chan's (it is reported, not used)."""
        if len(batch) == 0:
            return
        width = self.visits.shape[1]
        flat = batch.rows * width + batch.cols
        if recency_floor == 0.0 and len(batch) <= _SMALL_GROUPING:
            cells = flat.tolist()
            if len(set(cells)) == len(cells):  # one trajectory visits each edge once
                self._backup_distinct(batch, cells)
                return
        visiting = batch.rows if batch.counts_visit is None else batch.rows[batch.counts_visit]
        uniq_rows, _, row_counts = _grouped(visiting)
        self.node_visits[uniq_rows] += row_counts
        if batch.retries is not None:
            np.add.at(self.retries.reshape(-1), flat, batch.retries)
        if batch.failed.any():
            failed_cells, _, failed_counts = _grouped(flat[batch.failed])
            self.failures.reshape(-1)[failed_cells] += failed_counts
        ok = ~batch.failed
        if not ok.any():
            return
        cells, inverse, counts_i = _grouped(flat[ok])
        counts: F64 = counts_i.astype(np.float64)
        weights = None if batch.weights is None else batch.weights[ok]
        reward_weight: F64 = (
            counts if weights is None else np.bincount(inverse, weights=weights).astype(np.float64)
        )
        self._absorb(
            cells,
            counts,
            reward_weight,
            *_sample_moments(inverse, reward_weight, batch.rewards[ok], weights),
            *_sample_moments(inverse, counts, batch.tokens[ok]),
            recency_floor=recency_floor,
        )

    def _backup_distinct(self, batch: EdgeBatch, cells: list[int]) -> None:
        """``backup`` without a recency floor of entries in distinct cells, in Python floats.
        Each cell is then a group of one, and this runs the vectorised path's IEEE
        operations on it in the same order (the sums of a group of one start from 0.0, as
        ``np.bincount``'s do), so the numbers agree to the bit; numpy's cost per call is
        what dominates a handful of entries."""
        node_visits = self.node_visits
        rows = batch.rows.tolist()
        if batch.counts_visit is not None:
            counted = batch.counts_visit.tolist()
            rows = [row for row, counts in zip(rows, counted, strict=True) if counts]
        for row in rows:
            node_visits[row] += 1
        visits, failures = self.visits.reshape(-1), self.failures.reshape(-1)
        weight, retries = self.weight.reshape(-1), self.retries.reshape(-1)
        mean_reward, reward_m2 = self.mean_reward.reshape(-1), self.reward_m2.reshape(-1)
        token_mean, token_m2 = self.token_mean.reshape(-1), self.token_m2.reshape(-1)
        weights = None if batch.weights is None else batch.weights.tolist()
        tries = None if batch.retries is None else batch.retries.tolist()
        rewards, tokens = batch.rewards.tolist(), batch.tokens.tolist()
        for i, (cell, failed) in enumerate(zip(cells, batch.failed.tolist(), strict=True)):
            if tries is not None:
                retries[cell] = retries.item(cell) + tries[i]
            if failed:
                failures[cell] += 1
                continue
            reward = rewards[i]
            if weights is None:
                n_b, weighted = 1.0, reward
            else:
                n_b, weighted = 0.0 + weights[i], weights[i] * reward
            mean_b = (0.0 + weighted) / (n_b if n_b > 0 else 1.0)
            deviation = reward - mean_b
            square = (
                deviation * deviation if weights is None else weights[i] * deviation * deviation
            )
            n_a = weight.item(cell)
            mean_reward[cell], reward_m2[cell] = _chan_one(
                n_a, mean_reward.item(cell), reward_m2.item(cell), n_b, mean_b, 0.0 + square
            )
            t_mean = (0.0 + tokens[i]) / 1.0
            t_deviation = tokens[i] - t_mean
            token_mean[cell], token_m2[cell] = _chan_one(
                float(visits.item(cell)),
                token_mean.item(cell),
                token_m2.item(cell),
                1.0,
                t_mean,
                0.0 + t_deviation * t_deviation,
            )
            weight[cell] = n_a + n_b
            visits[cell] += 1

    def _absorb(
        self,
        cells: I64,
        counts: F64,
        r_weight: F64,
        r_mean: F64,
        r_m2: F64,
        t_mean: F64,
        t_m2: F64,
        failures: I64 | None = None,
        *,
        recency_floor: float = 0.0,
    ) -> None:
        visits = self.visits.reshape(-1)
        weight = self.weight.reshape(-1)
        # Rewards merge by weight (a weighted Chan merge), tokens, measured exactly, by count.
        for mean_name, m2_name, n_a, n_b, mean_b, m2_b in (
            ("mean_reward", "reward_m2", weight[cells], r_weight, r_mean, r_m2),
            ("token_mean", "token_m2", visits[cells].astype(np.float64), counts, t_mean, t_m2),
        ):
            mean_col = getattr(self, mean_name).reshape(-1)
            m2_col = getattr(self, m2_name).reshape(-1)
            old_mean = mean_col[cells]
            _, mean_col[cells], m2_col[cells] = chan_merge(
                n_a, old_mean, m2_col[cells], n_b, mean_b, m2_b
            )
            if recency_floor > 0.0:
                total = n_a + n_b
                share = n_b / np.where(total > 0, total, 1.0)
                step = np.maximum(share, 1.0 - (1.0 - recency_floor) ** counts)
                mean_col[cells] = old_mean + step * (mean_b - old_mean)
        weight[cells] += r_weight
        visits[cells] += counts.astype(np.int64)
        if failures is not None:
            self.failures.reshape(-1)[cells] += failures

    def merge(self, other: "PolicyGraph", *, weight: float = 1.0) -> None:
        """Add ``other``'s statistics into this graph (exact union when weight is 1).

        ``weight`` scales the other graph's counts (a prior strength for warm starts);
        means and the variance estimate are kept.
        """
        if weight <= 0:
            raise ValueError("merge weight must be positive")
        for name, floor in other.classes.items():
            prior = floor.scaled(weight)
            self.classes[name] = self.classes.get(name, ClassFloor()).merge(prior)
        n, width = other.node_count, len(other._action_names)
        if n == 0:
            return
        seen = (other.visits[:n, :width] + other.failures[:n, :width]) > 0
        # Row-major: the edges by signature, then by action, as the graph meets them.
        row_b, col_b = np.nonzero(seen)
        # Adding rows and columns may reallocate this graph's arrays: index them only after.
        rows = np.array([self.node_row(s) for s in other._node_names], dtype=np.int64)
        names = other._action_names
        col_of = {j: self.action_col(names[j]) for j in dict.fromkeys(col_b.tolist())}
        cols = np.array([col_of[j] for j in col_b.tolist()], dtype=np.int64)
        self.node_visits[rows] += np.round(other.node_visits[:n] * weight).astype(np.int64)
        if row_b.size == 0:
            return
        n_b = other.visits[row_b, col_b].astype(np.float64)
        f_b = other.failures[row_b, col_b]
        scaled = np.round(n_b * weight)
        visited = n_b > 0
        ratio = np.divide(scaled, n_b, out=np.zeros_like(n_b), where=visited)
        # w_b / n_b is exactly 1 while every reward weighed 1
        w_b = other.weight[row_b, col_b]
        per_visit = np.divide(w_b, n_b, out=np.zeros_like(n_b), where=visited)
        failures = np.round(f_b * weight).astype(np.int64)
        at = (rows[row_b], cols)
        self._absorb(
            at[0] * self.visits.shape[1] + at[1],
            scaled,
            scaled * per_visit,
            other.mean_reward[row_b, col_b],
            other.reward_m2[row_b, col_b] * ratio,
            other.token_mean[row_b, col_b],
            other.token_m2[row_b, col_b] * ratio,
            failures,
        )
        # the edge's mean retries per visit is kept, like its reward mean
        share = (scaled + failures) / (n_b + f_b)
        self.retries[at] += other.retries[row_b, col_b] * share

    def relabeled(self, rename: Callable[[str], str]) -> "PolicyGraph":
        """A copy with every signature renamed; nodes that then coincide merge exactly."""
        out = PolicyGraph(self._action_names, capacity=max(1, self.node_count))
        width_b = len(self._action_names)
        for signature, row_b in self._node_rows.items():
            row = out.node_row(rename(signature))
            out.node_visits[row] += self.node_visits[row_b]
            seen = (self.visits[row_b, :width_b] + self.failures[row_b, :width_b]) > 0
            cols = np.flatnonzero(seen)
            out._absorb(
                row * out.visits.shape[1] + cols,
                self.visits[row_b, cols].astype(np.float64),
                self.weight[row_b, cols],
                self.mean_reward[row_b, cols],
                self.reward_m2[row_b, cols],
                self.token_mean[row_b, cols],
                self.token_m2[row_b, cols],
                self.failures[row_b, cols],
            )
            out.retries[row, cols] += self.retries[row_b, cols]
        out.classes = {name: floor.merge(ClassFloor()) for name, floor in self.classes.items()}
        return out

    # --- the policy file -----------------------------------------------------------------

    def to_nodes(self) -> list[NodeRecord]:
        """One record per node, its edges those visited or failed, in row and column order.
        Each statistic is read with one gather: reading a million cells one at a time costs
        more than building their records."""
        with collector_paused():
            return self._nodes()

    def _nodes(self) -> list[NodeRecord]:
        n, width = self.node_count, len(self._action_names)
        rows, cols = np.nonzero((self.visits[:n, :width] != 0) | (self.failures[:n, :width] != 0))
        visits = self.visits[rows, cols]
        weight = self.weight[rows, cols]
        records = [
            EdgeRecord(
                visits=v,
                weight=None if same else w,
                mean_reward=mean,
                reward_m2=m2,
                token_mean=t_mean,
                token_m2=t_m2,
                failures=f,
                retries=r or None,
            )
            for v, w, same, mean, m2, t_mean, t_m2, f, r in zip(
                visits.tolist(),
                weight.tolist(),
                (weight == visits).tolist(),
                self.mean_reward[rows, cols].tolist(),
                self.reward_m2[rows, cols].tolist(),
                self.token_mean[rows, cols].tolist(),
                self.token_m2[rows, cols].tolist(),
                self.failures[rows, cols].tolist(),
                self.retries[rows, cols].tolist(),
                strict=True,
            )
        ]
        names = [self._action_names[c] for c in cols.tolist()]
        ends = np.cumsum(np.bincount(rows, minlength=n)).tolist()
        nodes, start = [], 0
        for signature, node_visits, end in zip(
            self._node_names, self.node_visits[:n].tolist(), ends, strict=True
        ):
            edges = dict(zip(names[start:end], records[start:end], strict=True))
            nodes.append(NodeRecord(signature=signature, visits=node_visits, edges=edges))
            start = end
        return nodes

    def to_document(
        self,
        *,
        tenant: str = "default",
        version: int = 0,
        fold: FoldSpec | None = None,
        selection: SelectionConfig | None = None,
        reward: RewardConfig | None = None,
    ) -> PolicyDocument:
        return PolicyDocument(
            tenant=tenant,
            version=version,
            fold=fold or FoldSpec(),
            selection=selection or SelectionConfig(),
            reward=reward or RewardConfig(),
            nodes=self.to_nodes(),
            classes={
                name: ClassRecord(
                    baseline=_record(f.baseline),
                    deviated=_record(f.deviated),
                    paths=[
                        PathRecord(actions=sorted(key), count=s.count, mean=s.mean, m2=s.m2)
                        for key, s in f.paths.items()
                    ],
                )
                for name, f in self.classes.items()
            },
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "PolicyGraph":
        """Load a policy document's JSON, validated once into records on the way."""
        with collector_paused():
            return cls.from_document(PolicyDocument.model_validate_json(raw))

    @classmethod
    def from_document(cls, document: PolicyDocument) -> "PolicyGraph":
        """Load a validated document; signatures must parse and match its fold."""
        graph = cls(capacity=max(64, len(document.nodes)))
        expected_keys = tuple(document.fold.extra_keys)
        rows: list[int] = []
        cols: list[int] = []
        stats: list[EdgeRecord] = []
        for node in document.nodes:
            signature = Signature.parse(node.signature)
            if signature.text != node.signature:
                raise ValueError(
                    f"node {node.signature!r} is not in canonical form "
                    f"(expected {signature.text!r})"
                )
            top = round(1.0 / document.fold.granularity)
            if max(signature.buckets) > top:
                raise ValueError(
                    f"node {node.signature!r} has a bucket above {top}, the largest at "
                    f"granularity {document.fold.granularity}"
                )
            if signature.version != document.fold.version:
                raise ValueError(
                    f"node {node.signature!r} has fold version {signature.version}, "
                    f"the file's fold is version {document.fold.version}"
                )
            keys = tuple(k for k, _ in signature.extra)
            if keys != expected_keys:
                raise ValueError(
                    f"node {node.signature!r} carries keys {list(keys)}, "
                    f"the file's fold lists {list(expected_keys)}"
                )
            row = graph.node_row(node.signature)
            graph.node_visits[row] = node.visits
            rows += [row] * len(node.edges)
            cols += [graph.action_col(action) for action in node.edges]
            stats += node.edges.values()
        graph._load_edges(rows, cols, stats)
        graph.classes = {
            name: ClassFloor(
                _stream(c.baseline),
                _stream(c.deviated),
                {frozenset(p.actions): _stream(p) for p in c.paths},
            )
            for name, c in document.classes.items()
        }
        return graph

    def _load_edges(
        self, row_list: list[int], col_list: list[int], edges: Sequence[EdgeRecord]
    ) -> None:
        """Write each edge's statistics into its (row, column), one scatter per statistic."""
        rows = np.array(row_list, dtype=np.int64)
        cols = np.array(col_list, dtype=np.int64)
        visits = [e.visits for e in edges]
        self.visits[rows, cols] = visits
        self.failures[rows, cols] = [e.failures for e in edges]
        self.weight[rows, cols] = [
            v if e.weight is None else e.weight for v, e in zip(visits, edges, strict=True)
        ]
        self.mean_reward[rows, cols] = [e.mean_reward for e in edges]
        self.reward_m2[rows, cols] = [e.reward_m2 for e in edges]
        self.token_mean[rows, cols] = [e.token_mean for e in edges]
        self.token_m2[rows, cols] = [e.token_m2 for e in edges]
        self.retries[rows, cols] = [e.retries or 0.0 for e in edges]


def _record(stat: RunningStat) -> StreamRecord:
    return StreamRecord(count=stat.count, mean=stat.mean, m2=stat.m2)


def _stream(record: StreamRecord) -> RunningStat:
    return RunningStat(record.count, record.mean, record.m2)


#: Up to this many entries a dict groups faster than np.unique's sort: the learner backs up
#: one trajectory (a handful of edges) at a time.
_SMALL_GROUPING = 64


def _grouped(keys: I64) -> tuple[I64, npt.NDArray[np.intp], I64]:
    """(distinct keys, each entry's group, entries per group), as ``np.unique`` with
    ``return_inverse`` and ``return_counts`` gives them except that a small input lists its
    groups in order of first appearance. Every use treats the groups independently and sums
    within a group in entry order, so both orders give the same numbers to the bit."""
    if len(keys) > _SMALL_GROUPING:
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return uniq, inverse, counts
    index: dict[int, int] = {}
    groups = [index.setdefault(k, len(index)) for k in keys.tolist()]
    inverse = np.array(groups, dtype=np.intp)
    return (
        np.fromiter(index, dtype=np.int64, count=len(index)),
        inverse,
        np.bincount(inverse, minlength=len(index)).astype(np.int64),
    )


def _chan_one(
    n_a: float, mean_a: float, m2_a: float, n_b: float, mean_b: float, m2_b: float
) -> tuple[float, float]:
    """(mean, M2) of ``chan_merge``'s array branch for one cell, operation for operation
    (its scalar branch groups ``delta * n_b / n`` differently, so it may differ in the
    last bit)."""
    n = n_a + n_b
    if not n > 0:
        return 0.0, 0.0
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


def _sample_moments(
    inverse: npt.NDArray[np.intp], totals: F64, values: F64, weights: F64 | None = None
) -> tuple[F64, F64]:
    """Per-group mean and M2 of ``values`` grouped by ``inverse``, each value weighed by
    ``weights`` (1 when None); ``totals`` are the groups' summed weights."""
    weighted = values if weights is None else weights * values
    means: F64 = np.bincount(inverse, weights=weighted) / np.where(totals > 0, totals, 1.0)
    deviations = values - means[inverse]
    squares = deviations * deviations if weights is None else weights * deviations * deviations
    m2: F64 = np.bincount(inverse, weights=squares).astype(np.float64)
    return means, m2
