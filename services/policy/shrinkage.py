"""Shared evidence: each edge's mean shrunk towards what its class and its regime know of the
same action, with strengths learned from the data (empirical Bayes).

The graph keeps only per-signature counts (the fine level). With a fold that keys the task
class, a signature belongs to three families, read from its text: its *class* (regime and
extra keys, mask and buckets dropped), its *regime*, and its *coarse node* (the same
signature without the extra keys: the node the paper's fold would have). For one action a
node's estimate is built from the top:

1. the other nodes of its class give a class mean; it is shrunk towards the mean of the
   other classes of the regime with pseudo-count ``sigma_c^2 / tau_c^2``, where ``tau_c^2``
   is the variance of the regime's class means beyond their noise and ``sigma_c^2`` the
   pooled variance of rewards within a class;
2. the node's own mean is shrunk towards that class estimate with pseudo-count
   ``sigma_n^2 / tau_n^2``, the between-node variance of the class's nodes against the
   pooled within-node variance.

``tau^2`` is the method-of-moments estimate with every child weighed alike (a class or a
node is one draw of its parent, however often it is visited): the variance of the
children's means less their mean squared standard error, floored at 0. A rare class whose
results on an action differ from the frequent ones' raises ``tau_c^2`` and keeps its own
evidence; children that agree pool fully. A pseudo-count never exceeds the evidence it
stands for. Everything is a function of the fine counts, so merged graphs (shards, warm
starts) and policy files need nothing more.
"""

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.policy.graph import PolicyGraph
from services.policy.signature import Signature

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Family:
    """The keys a signature shares with others (itself, when its text does not parse)."""

    coarse: str
    task_class: str
    regime: str


def family_of(signature: str) -> Family:
    try:
        parsed = Signature.parse(signature)
    except ValueError:
        return Family(signature, signature, signature)
    extra = "".join(f"|{k}={v}" for k, v in parsed.extra)
    coarse = signature[: len(signature) - len(extra)]
    return Family(coarse, parsed.regime.value + extra, parsed.regime.value)


@dataclass(slots=True)
class _Index:
    """Rows of a graph by family; rows are only ever added, so it grows incrementally."""

    seen: int = 0
    coarse: dict[str, list[int]] = field(default_factory=dict)
    regime_rows: dict[str, list[int]] = field(default_factory=dict)
    regime_classes: dict[str, list[str]] = field(default_factory=dict)

    def update(self, graph: PolicyGraph) -> None:
        names = graph.signatures
        for row in range(self.seen, len(names)):
            family = family_of(names[row])
            self.coarse.setdefault(family.coarse, []).append(row)
            self.regime_rows.setdefault(family.regime, []).append(row)
            self.regime_classes.setdefault(family.regime, []).append(family.task_class)
        self.seen = len(names)


_INDEXES: "weakref.WeakKeyDictionary[PolicyGraph, _Index]" = weakref.WeakKeyDictionary()


def _index(graph: PolicyGraph) -> _Index:
    index = _INDEXES.get(graph)
    if index is None:
        index = _INDEXES[graph] = _Index()
    index.update(graph)
    return index


def coarse_visits(graph: PolicyGraph, signature: str) -> int:
    """Visits of the signature's coarse node: the sum over the classes that share it."""
    rows = _index(graph).coarse.get(family_of(signature).coarse, [])
    return int(graph.node_visits[rows].sum()) if rows else 0


@dataclass(frozen=True, slots=True)
class SharedEstimate:
    """Per candidate: the shrunk reward mean and the evidence it weighs (own weight plus
    pseudo-count; 0 where nothing in the regime has tried the action)."""

    mean: F64
    weight: F64


def shared_estimates(graph: PolicyGraph, signature: str, actions: Sequence[str]) -> SharedEstimate:
    index = _index(graph)
    family = family_of(signature)
    k = len(actions)
    rows = index.regime_rows.get(family.regime, [])
    cols = [graph.find_col(a) for a in actions]
    known = np.array([c is not None for c in cols])
    if not rows or not known.any():
        return SharedEstimate(np.zeros(k), np.zeros(k))
    row_ids = np.array(rows, dtype=np.int64)
    col_ids = np.array([c or 0 for c in cols], dtype=np.int64)
    w = np.where(known, graph.weight[row_ids[:, None], col_ids], 0.0)
    m = np.where(w > 0, graph.mean_reward[row_ids[:, None], col_ids], 0.0)
    q = np.where(w > 0, graph.reward_m2[row_ids[:, None], col_ids], 0.0)
    names = sorted(set(index.regime_classes[family.regime]))
    labels = np.array([names.index(c) for c in index.regime_classes[family.regime]])
    own_class = labels == names.index(family.task_class) if family.task_class in names else None
    own_row = graph.find_row(signature)
    is_own = row_ids == own_row if own_row is not None else np.zeros(len(rows), dtype=bool)

    # classes of the regime, each the sum of its nodes
    groups = len(names)
    w_g = np.zeros((groups, k))
    s_g = np.zeros((groups, k))
    np.add.at(w_g, labels, w)
    np.add.at(s_g, labels, w * m)
    mean_g = s_g / np.where(w_g > 0, w_g, 1.0)
    spread = w * (m - mean_g[labels]) ** 2
    m2_g = np.zeros((groups, k))
    np.add.at(m2_g, labels, q + spread)
    sigma_class = _pooled_variance(m2_g, w_g)
    tau_class = _between_variance(w_g, mean_g, sigma_class)

    w0 = w[is_own].sum(axis=0)
    s0 = (w * m)[is_own].sum(axis=0)
    mine = own_class if own_class is not None else np.zeros(len(rows), dtype=bool)
    w_class = w[mine].sum(axis=0) - w0
    s_class = (w * m)[mine].sum(axis=0) - s0
    w_rest = w.sum(axis=0) - w[mine].sum(axis=0)
    s_rest = (w * m).sum(axis=0) - (w * m)[mine].sum(axis=0)
    kappa_class = _strength(sigma_class, tau_class, w_rest)
    prior_weight = w_class + kappa_class
    prior_mean = _ratio(s_class + kappa_class * _ratio(s_rest, w_rest), prior_weight)

    # nodes of the class, each its own child
    nodes = w[mine]
    sigma_node = _pooled_variance(q[mine], nodes)
    tau_node = _between_variance(nodes, m[mine], sigma_node)
    kappa_node = _strength(sigma_node, tau_node, prior_weight)
    weight = w0 + kappa_node
    mean = _ratio(s0 + kappa_node * prior_mean, weight)
    return SharedEstimate(np.where(known, mean, 0.0), np.where(known, weight, 0.0))


def _ratio(num: F64, den: F64) -> F64:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _pooled_variance(m2: F64, weight: F64) -> F64:
    """The within-child variance pooled over children (0 where none has two rewards)."""
    dof = np.maximum(weight - 1.0, 0.0).sum(axis=0)
    return _ratio(np.where(weight > 1.0, m2, 0.0).sum(axis=0), dof)


def _between_variance(weight: F64, means: F64, noise: F64) -> F64:
    """Variance of the tried children's means beyond their noise, children weighed alike;
    0 with fewer than two tried children."""
    tried = weight > 0
    count = tried.sum(axis=0)
    centre = _ratio(np.where(tried, means, 0.0).sum(axis=0), count.astype(np.float64))
    squares = np.where(tried, (means - centre) ** 2, 0.0).sum(axis=0)
    spread = _ratio(squares, np.maximum(count - 1, 0).astype(np.float64))
    error = _ratio(np.where(tried, noise / np.where(tried, weight, 1.0), 0.0).sum(axis=0), count)
    return np.where(count >= 2, np.maximum(spread - error, 0.0), 0.0)


def _strength(noise: F64, between: F64, cap: F64) -> F64:
    """The pseudo-count ``noise / between`` of a parent, at most the evidence it holds
    (all of it where the children do not differ beyond noise)."""
    free = np.where(between > 0, noise / np.where(between > 0, between, 1.0), np.inf)
    return np.minimum(free, np.maximum(cap, 0.0))
