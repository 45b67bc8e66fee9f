"""Speed of the policy core: paper-mode selection and backup, scalar and vectorised.

The graph is filled so that every node is past the confidence threshold and most edges have
been tried: selection then runs the full UCB path, never the cheap prior.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from schemas.records import StepStatus, TaskFeatures, TrajectoryState, VisitedEdge
from services.policy import (
    PolicyGraph,
    PolicySetup,
    backup,
    candidate_actions,
    decide,
    select,
    select_batch,
    signature_of,
)
from services.policy.cells import skip_action
from services.policy.trajectory import start_state

#: Figures for the paper's reference implementation in plain Python on this machine class,
#: as quoted in the project's issue tracker (not measured by this benchmark).
REFERENCE_DECISIONS_PER_S = 60_000.0
REFERENCE_EDGE_UPDATES_PER_S = 1_100_000.0


@dataclass(frozen=True)
class PolicyBenchResult:
    candidates: int
    nodes: int
    select_decisions_per_s: float
    batch_select_decisions_per_s: float
    router_decide_per_s: float
    backup_edge_updates_per_s: float
    trajectory_backup_edge_updates_per_s: float

    @property
    def ratios(self) -> dict[str, float]:
        return {
            "select_vs_reference": self.select_decisions_per_s / REFERENCE_DECISIONS_PER_S,
            "batch_select_vs_reference": self.batch_select_decisions_per_s
            / REFERENCE_DECISIONS_PER_S,
            "backup_vs_reference": self.backup_edge_updates_per_s / REFERENCE_EDGE_UPDATES_PER_S,
            "trajectory_backup_vs_reference": self.trajectory_backup_edge_updates_per_s
            / REFERENCE_EDGE_UPDATES_PER_S,
        }

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "ratios": self.ratios,
            "reference": {
                "decisions_per_s": REFERENCE_DECISIONS_PER_S,
                "edge_updates_per_s": REFERENCE_EDGE_UPDATES_PER_S,
            },
        }


def _rate(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def _filled_graph(
    signatures: list[str], actions: list[str], rng: np.random.Generator
) -> PolicyGraph:
    graph = PolicyGraph(capacity=len(signatures))
    edges = [
        (s, a, bool(rng.random() < 0.05)) for s in signatures for a in actions if rng.random() < 0.9
    ]
    repeat = 6
    graph.backup(
        graph.batch(
            edges * repeat,
            rng.random(len(edges) * repeat).tolist(),
            rng.integers(0, 4_000, len(edges) * repeat).tolist(),
        )
    )
    return graph


def run_policy_bench(
    *,
    candidates: int = 16,
    nodes: int = 1_000,
    decisions: int = 100_000,
    batch: int = 4_096,
    edge_updates: int = 1_000_000,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> PolicyBenchResult:
    rng = np.random.default_rng(seed)
    invokes = [f"cell{i}" for i in range(candidates - candidates // 4)]
    actions = invokes + [skip_action(a) for a in invokes[: candidates - len(invokes)]]
    signatures = [
        f"v1|evidence_heavy|1{i % 64:06b}|c{i % 11}.u{i // 11 % 11}.r5.e1|n={i}"
        for i in range(nodes)
    ]
    graph = _filled_graph(signatures, actions, rng)
    picks = rng.integers(0, nodes, decisions).tolist()

    progress("scalar selection")

    def scalar() -> None:
        for i in picks:
            select(graph, signatures[i], actions)

    select_rate = _rate(decisions, scalar)

    progress("batched selection")
    rows = np.array([graph.find_row(s) for s in signatures], dtype=np.int64)
    cols = np.array([graph.find_col(a) for a in actions], dtype=np.int64)
    is_skip = np.array([a.startswith("skip:") for a in actions])
    chunks = [rng.integers(0, nodes, batch) for _ in range(max(1, decisions // batch))]

    def batched() -> None:
        width = len(actions)
        for chunk in chunks:
            select_batch(
                graph,
                rows[chunk],
                np.broadcast_to(cols, (len(chunk), width)),
                np.broadcast_to(is_skip, (len(chunk), width)),
            )

    batch_rate = _rate(len(chunks) * batch, batched)

    progress("router decide")
    setup = PolicySetup()
    state = start_state(
        task_id="bench",
        trajectory_id="bench",
        goal="benchmark",
        features=TaskFeatures(evidence_availability=0.9, verification_need=0.7),
        setup=setup,
    )
    warm = PolicyGraph()
    signature = signature_of(state, setup)
    options = candidate_actions(state, setup.pool)
    warm.backup(
        warm.batch(
            [(signature, a, False) for a in options] * 2,
            rng.random(2 * len(options)).tolist(),
            [0.0] * (2 * len(options)),
        )
    )
    decide_count = max(1_000, decisions // 10)

    def decide_loop() -> None:
        for _ in range(decide_count):
            decide(state, warm, setup)

    decide_rate = _rate(decide_count, decide_loop)

    progress("batched backup")
    edge_batch = graph.batch(
        [
            (signatures[i], actions[j], False)
            for i, j in zip(
                rng.integers(0, nodes, 10_000).tolist(),
                rng.integers(0, len(actions), 10_000).tolist(),
                strict=True,
            )
        ],
        rng.random(10_000).tolist(),
        rng.integers(0, 4_000, 10_000).tolist(),
    )
    big = type(edge_batch)(
        *(
            np.tile(getattr(edge_batch, f), edge_updates // 10_000)
            for f in ("rows", "cols", "rewards", "tokens", "failed")
        )
    )
    backup_rate = _rate(len(big), lambda: graph.backup(big))

    progress("trajectory backup")
    trajectories = _trajectories(signatures, actions, rng, count=20_000, length=7)
    traj_edges = sum(len(t.visited) for t, _ in trajectories)

    def trajectory_backup() -> None:
        backup(graph, trajectories)

    traj_rate = _rate(traj_edges, trajectory_backup)
    return PolicyBenchResult(
        candidates, nodes, select_rate, batch_rate, decide_rate, backup_rate, traj_rate
    )


def _trajectories(
    signatures: list[str], actions: list[str], rng: np.random.Generator, count: int, length: int
) -> list[tuple[TrajectoryState, float]]:
    base = start_state(
        task_id="bench",
        trajectory_id="bench",
        goal="benchmark",
        features=TaskFeatures(),
        setup=PolicySetup(),
    )
    out = []
    for t in range(count):
        visited = [
            VisitedEdge(
                step=k,
                signature=signatures[int(rng.integers(len(signatures)))],
                action=actions[int(rng.integers(len(actions)))],
                propensity=1.0,
                status=StepStatus.SUCCEEDED,
                tokens=int(rng.integers(0, 3_000)),
            )
            for k in range(length)
        ]
        out.append(
            (
                base.model_copy(update={"visited": visited, "trajectory_id": f"b{t}"}),
                float(rng.random()),
            )
        )
    return out
