"""The graph's column-wise paths: the small-batch grouping of a backup, and the policy
document read and written one statistic at a time, give the same numbers to the bit."""

import gc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.policy_file import EdgeRecord
from services.policy import PolicyGraph
from services.policy import graph as graph_module
from services.policy.graph import EdgeBatch, _grouped
from services.runtime.codec import encode

SIGNATURES = [f"v1|ambiguous|1000000|c{i}.u9.r5.e1" for i in range(4)]
ACTIONS = ["a", "b", "skip:c"]


@given(st.lists(st.integers(0, 12), max_size=graph_module._SMALL_GROUPING))
def test_small_grouping_finds_the_groups_np_unique_finds(keys: list[int]) -> None:
    array = np.array(keys, dtype=np.int64)
    uniq, inverse, counts = _grouped(array)
    expected, expected_counts = np.unique(array, return_counts=True)
    assert uniq[inverse].tolist() == keys
    assert dict(zip(uniq.tolist(), counts.tolist(), strict=True)) == dict(
        zip(expected.tolist(), expected_counts.tolist(), strict=True)
    )


def _random_batch(graph: PolicyGraph, rng: np.random.Generator, size: int) -> EdgeBatch:
    edges = [
        (str(rng.choice(SIGNATURES)), str(rng.choice(ACTIONS)), bool(rng.random() < 0.2))
        for _ in range(size)
    ]
    return graph.batch(
        edges,
        rng.normal(0.4, 0.3, size).tolist(),
        rng.integers(0, 3_000, size).tolist(),
        counts_visit=(rng.random(size) < 0.7).tolist(),
        weights=rng.random(size).tolist(),
        retries=rng.integers(0, 3, size).tolist(),
    )


def _arrays(graph: PolicyGraph) -> list[bytes]:
    names = ("node_visits", "visits", "failures", "weight", "mean_reward", "reward_m2")
    names += ("token_mean", "token_m2", "retries")
    return [getattr(graph, name).tobytes() for name in names]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("recency_floor", [0.0, 0.3])
def test_a_small_backup_equals_the_sorting_one_to_the_bit(
    seed: int, recency_floor: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, graph_module._SMALL_GROUPING, 12).tolist()
    graphs = []
    for threshold in (graph_module._SMALL_GROUPING, -1):  # the dict, then np.unique
        monkeypatch.setattr(graph_module, "_SMALL_GROUPING", threshold)
        graph, draws = PolicyGraph(), np.random.default_rng(seed + 100)
        for size in sizes:
            graph.backup(_random_batch(graph, draws, size), recency_floor=recency_floor)
        graphs.append(graph)
    assert _arrays(graphs[0]) == _arrays(graphs[1])


def _filled(rng: np.random.Generator) -> PolicyGraph:
    graph = PolicyGraph()
    for _ in range(5):
        graph.backup(_random_batch(graph, rng, 30))
    return graph


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1))
def test_to_nodes_writes_every_tried_edge_as_the_graph_reads_it(seed: int) -> None:
    graph = _filled(np.random.default_rng(seed))
    nodes = graph.to_nodes()
    assert [n.signature for n in nodes] == list(graph.signatures)
    for node in nodes:
        assert node.visits == graph.visits_of(node.signature)
        expected = {}
        for action in graph.actions:
            e = graph.edge(node.signature, action)
            if e.visits == 0 and e.failures == 0:
                continue
            row, col = graph.find_row(node.signature), graph.find_col(action)
            weight = float(graph.weight[row, col])
            expected[action] = EdgeRecord(
                visits=e.visits,
                weight=None if weight == e.visits else weight,
                mean_reward=e.mean_reward,
                reward_m2=e.reward_m2,
                token_mean=e.token_mean,
                token_m2=e.token_m2,
                failures=e.failures,
                retries=float(graph.retries[row, col]) or None,
            )
        assert node.edges == expected


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1))
def test_from_document_restores_every_statistic_to_the_bit(seed: int) -> None:
    graph = _filled(np.random.default_rng(seed))
    back = PolicyGraph.from_document(graph.to_document())
    n, width = graph.node_count, len(graph.actions)
    assert back.signatures == graph.signatures
    assert back.actions == graph.actions
    for name in ("visits", "failures", "weight", "mean_reward", "reward_m2", "token_mean"):
        assert (
            getattr(back, name)[:n, :width].tobytes() == getattr(graph, name)[:n, :width].tobytes()
        )
    assert back.token_m2[:n, :width].tobytes() == graph.token_m2[:n, :width].tobytes()
    assert back.retries[:n, :width].tobytes() == graph.retries[:n, :width].tobytes()
    assert back.node_visits[:n].tolist() == graph.node_visits[:n].tolist()


def test_from_json_validates_once_and_loads_the_graph() -> None:
    graph = _filled(np.random.default_rng(7))
    document = graph.to_document()

    assert PolicyGraph.from_json(encode(document)).to_document() == document
    assert gc.isenabled()  # the collector paused for the load is running again
    with pytest.raises(ValidationError):
        PolicyGraph.from_json(b'{"nodes": [{"signature": "v1|x", "visits": -1}]}')
    assert gc.isenabled()


def _distinct_batch(
    graph: PolicyGraph, rng: np.random.Generator, optional: tuple[bool, bool, bool]
) -> EdgeBatch:
    """A trajectory's shape: each (signature, action) at most once."""
    weighted, counted, retried = optional
    cells = [(s, a) for s in SIGNATURES for a in ACTIONS]
    picked = rng.choice(len(cells), int(rng.integers(1, len(cells))), replace=False).tolist()
    size = len(picked)
    return graph.batch(
        [(*cells[i], bool(rng.random() < 0.2)) for i in picked],
        rng.normal(0.4, 0.3, size).tolist(),
        rng.integers(0, 3_000, size).tolist(),
        counts_visit=(rng.random(size) < 0.7).tolist() if counted else None,
        weights=rng.random(size).tolist() if weighted else None,
        retries=rng.integers(0, 3, size).tolist() if retried else None,
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "optional", [(False, False, False), (True, True, True), (True, False, True)]
)
def test_a_backup_of_distinct_edges_in_floats_equals_the_vectorised_one_to_the_bit(
    seed: int, optional: tuple[bool, bool, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs = []
    for threshold in (graph_module._SMALL_GROUPING, -1):  # floats, then numpy throughout
        monkeypatch.setattr(graph_module, "_SMALL_GROUPING", threshold)
        graph, draws = PolicyGraph(), np.random.default_rng(seed)
        for _ in range(15):
            graph.backup(_distinct_batch(graph, draws, optional))
        graphs.append(graph)
    assert graphs[0].edge_count > 0
    assert _arrays(graphs[0]) == _arrays(graphs[1])
