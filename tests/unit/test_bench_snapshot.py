"""``agensbus bench snapshot``: its graph, and a round trip that gives the graph back."""

from services.bench.snapshot import (
    FOLD,
    bench_graph,
    run_snapshot_bench,
    snapshot_bytes,
)
from services.policy import PolicyGraph


def test_the_bench_graph_has_the_edges_asked_for_in_whole_nodes() -> None:
    graph = bench_graph(100)

    assert graph.edge_count == 112  # 7 nodes of 16 actions
    assert graph.node_count == 7
    assert graph.to_document(fold=FOLD).nodes[0].edges["cell1"].weight is not None


def test_a_snapshot_round_trip_gives_the_input_graph_back() -> None:
    graph = bench_graph(500, seed=3)

    back = PolicyGraph.from_json(snapshot_bytes(graph))

    assert back.to_document(fold=FOLD) == graph.to_document(fold=FOLD)


def test_the_bench_reports_its_figures_against_the_target() -> None:
    result = run_snapshot_bench(64)

    assert (result.edges, result.nodes, result.round_trip_equal) == (64, 4, True)
    assert result.bytes > 0
    figures = result.as_dict()
    assert figures["target_s"] == 2.0
    assert figures["ratios"]["snapshot_vs_target"] == result.snapshot_s / 2.0
