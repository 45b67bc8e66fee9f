"""``agensbus bench snapshot``: how long a large policy takes to snapshot and to restore.

Snapshot is the learner's path: graph to PolicyDocument to JSON bytes. Restore is a router's
or a restarted learner's: bytes validated into a document once, document loaded into a graph.
The graph is built directly in its arrays (a backup of a million edges would be the bench):
nodes of fold ``FOLD`` with every action tried, statistics drawn at random.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from schemas.records import FoldSpec
from services.policy.cells import skip_action
from services.policy.graph import PolicyGraph
from services.runtime.codec import encode

#: The issue's target for snapshotting and for restoring a 1M-edge policy.
TARGET_S = 2.0
#: Actions per node: 12 invokes and 4 skips, about a wide plan's candidates.
INVOKES = 12
SKIPS = 4
#: The fold of the bench's signatures: a node key ``n`` makes each signature distinct.
FOLD = FoldSpec(extra_keys=["n"])

T = TypeVar("T")


@dataclass(frozen=True)
class SnapshotBenchResult:
    edges: int
    nodes: int
    bytes: int
    snapshot_s: float
    restore_s: float
    #: CPU seconds of this process: what other processes on the machine change least.
    snapshot_cpu_s: float
    restore_cpu_s: float
    round_trip_equal: bool

    @property
    def ratios(self) -> dict[str, float]:
        """Each time over the target: below 1 meets it."""
        return {
            "snapshot_vs_target": self.snapshot_s / TARGET_S,
            "restore_vs_target": self.restore_s / TARGET_S,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"target_s": TARGET_S, "ratios": self.ratios}


def bench_actions() -> list[str]:
    invokes = [f"cell{i}" for i in range(INVOKES)]
    return invokes + [skip_action(a) for a in invokes[:SKIPS]]


def bench_signature(i: int) -> str:
    """The canonical signature of node ``i`` under ``FOLD``."""
    c, u, r, e = i % 11, i // 11 % 11, i // 121 % 11, i // 1331 % 11
    return f"v1|evidence_heavy|1{i % 64:06b}|c{c}.u{u}.r{r}.e{e}|n={i}"


def bench_graph(edges: int, seed: int = 0) -> PolicyGraph:
    """A graph of ``edges`` edges (rounded up to whole nodes), every one visited at least
    once, some failed, the reward weights fractional on every other edge."""
    actions = bench_actions()
    width = len(actions)
    nodes = max(1, -(-edges // width))
    graph = PolicyGraph(actions, capacity=nodes)
    for i in range(nodes):
        graph.node_row(bench_signature(i))
    rng = np.random.default_rng(seed)
    shape = (nodes, width)
    visits = rng.integers(1, 200, shape)
    graph.visits[:nodes, :width] = visits
    graph.failures[:nodes, :width] = rng.integers(0, 3, shape)
    graph.node_visits[:nodes] = visits.sum(axis=1)
    fractional = np.arange(nodes * width).reshape(shape) % 2 == 1
    graph.weight[:nodes, :width] = np.where(fractional, visits * 0.75, visits)
    graph.mean_reward[:nodes, :width] = rng.random(shape)
    graph.reward_m2[:nodes, :width] = rng.random(shape) * visits
    graph.token_mean[:nodes, :width] = rng.random(shape) * 4_000
    graph.token_m2[:nodes, :width] = rng.random(shape) * 1e6 * visits
    return graph


def snapshot_bytes(graph: PolicyGraph) -> bytes:
    return encode(graph.to_document(fold=FOLD))


def _timed(run: Callable[[], T]) -> tuple[T, float, float]:
    """``run()``, its wall-clock seconds and its CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_snapshot_bench(edges: int, seed: int = 0) -> SnapshotBenchResult:
    graph = bench_graph(edges, seed)
    raw, snapshot_s, snapshot_cpu_s = _timed(lambda: snapshot_bytes(graph))
    graph_back, restore_s, restore_cpu_s = _timed(lambda: PolicyGraph.from_json(raw))
    return SnapshotBenchResult(
        edges=graph.edge_count,
        nodes=graph.node_count,
        bytes=len(raw),
        snapshot_s=snapshot_s,
        restore_s=restore_s,
        snapshot_cpu_s=snapshot_cpu_s,
        restore_cpu_s=restore_cpu_s,
        # outside the timings: the restored graph writes the very same bytes
        round_trip_equal=snapshot_bytes(graph_back) == raw,
    )
