"""Shared evidence: empirical-Bayes shrinkage of class nodes towards their class and regime."""

import numpy as np
import pytest

from schemas.records import FoldSpec, SelectionConfig
from services.policy.graph import PolicyGraph
from services.policy.selection import exploration_constant, select, select_batch
from services.policy.shrinkage import coarse_visits, shared_estimates

SKIP = "skip:verifier"
VERIFY = "verifier@balanced"
ACTIONS = [VERIFY, SKIP]
SHARED = SelectionConfig(share_evidence=True, untried_score=0.9, c_min=0.0, c_initial=0.0)


def node(task_class: str, buckets: str = "c3.u7.r5.e4") -> str:
    return f"v1|straightforward|1011000|{buckets}|task_class={task_class}"


def feed(graph: PolicyGraph, signature: str, action: str, rewards: list[float]) -> None:
    edges = [(signature, action, False)] * len(rewards)
    graph.backup(graph.batch(edges, rewards, [1000.0] * len(rewards)))


def frequent_world() -> PolicyGraph:
    """Three frequent classes on which the skip pays and the verifier costs a little."""
    graph = PolicyGraph(ACTIONS)
    for name in ("F1", "F2", "F3"):
        feed(graph, node(name), SKIP, [0.55, 0.65] * 15)
        feed(graph, node(name), VERIFY, [0.5, 0.6] * 5)
    return graph


def test_a_class_with_no_evidence_borrows_what_agreeing_classes_know() -> None:
    graph = frequent_world()
    estimate = shared_estimates(graph, node("N1", "c9.u0.r0.e0"), ACTIONS)
    assert estimate.mean[1] == pytest.approx(0.6, abs=0.03)
    assert estimate.mean[1] > estimate.mean[0]
    # the classes agree, so the prior stands for all their evidence
    assert estimate.weight[1] == pytest.approx(90.0)


def test_a_rare_class_whose_results_differ_keeps_its_own_at_its_other_nodes() -> None:
    graph = frequent_world()
    feed(graph, node("R1"), SKIP, [0.05, 0.1])
    elsewhere = shared_estimates(graph, node("R1", "c2.u8.r5.e1"), ACTIONS)
    assert elsewhere.mean[1] < 0.3
    # a node of another new class still reads the frequent classes
    stranger = shared_estimates(graph, node("N1", "c2.u8.r5.e1"), ACTIONS)
    assert stranger.mean[1] > 0.5


def test_select_leaves_the_skip_a_rare_class_has_seen_fail() -> None:
    graph = frequent_world()
    fresh = node("R1", "c2.u8.r5.e1")
    feed(graph, node("F1", "c2.u8.r5.e1"), SKIP, [0.6] * 6)
    assert coarse_visits(graph, fresh) == 6
    assert select(graph, fresh, ACTIONS, SHARED).action == SKIP
    feed(graph, node("R1"), SKIP, [0.05, 0.1])
    assert select(graph, fresh, ACTIONS, SHARED).action == VERIFY


def test_exploration_decays_with_the_visits_the_estimates_draw_on() -> None:
    graph = frequent_world()
    decaying = SHARED.model_copy(update={"c_initial": 0.5, "c_min": 0.05, "c_half_life": 20.0})
    alone = select(graph, node("R1", "c0.u0.r0.e0"), ACTIONS, decaying)
    shared = select(graph, node("R1"), ACTIONS, decaying)
    assert coarse_visits(graph, node("R1")) == 120  # the three frequent classes' visits
    assert alone.exploration_c == pytest.approx(exploration_constant(0, decaying))
    assert shared.exploration_c == pytest.approx(exploration_constant(120, decaying))


def test_shards_merge_into_the_estimates_of_one_graph() -> None:
    whole = frequent_world()
    feed(whole, node("R1"), SKIP, [0.05, 0.1])
    left, right = frequent_world(), PolicyGraph()
    feed(right, node("R1"), SKIP, [0.05, 0.1])
    left.merge(right)
    target = node("R1", "c2.u8.r5.e1")
    a, b = shared_estimates(whole, target, ACTIONS), shared_estimates(left, target, ACTIONS)
    np.testing.assert_allclose(a.mean, b.mean)
    np.testing.assert_allclose(a.weight, b.weight)


def test_the_policy_file_keeps_the_estimates_and_the_switch() -> None:
    graph = frequent_world()
    feed(graph, node("R1"), SKIP, [0.05, 0.1])
    document = graph.to_document(fold=FoldSpec(extra_keys=["task_class"]), selection=SHARED)
    loaded = PolicyGraph.from_document(
        type(document).model_validate_json(document.model_dump_json())
    )
    target = node("R1", "c2.u8.r5.e1")
    np.testing.assert_allclose(
        shared_estimates(graph, target, ACTIONS).mean,
        shared_estimates(loaded, target, ACTIONS).mean,
    )
    assert document.selection.share_evidence


def test_a_signature_of_no_family_reads_its_own_edges_only() -> None:
    graph = PolicyGraph(ACTIONS)
    feed(graph, "s1", SKIP, [0.2, 0.4])
    feed(graph, "s2", SKIP, [0.9, 0.9])
    estimate = shared_estimates(graph, "s1", ACTIONS)
    assert estimate.mean[1] == pytest.approx(0.3)
    assert estimate.weight.tolist() == [0.0, 2.0]


def test_select_batch_refuses_shared_evidence() -> None:
    graph = frequent_world()
    rows = np.array([0], dtype=np.int64)
    cols = np.array([[0, 1]], dtype=np.int64)
    with pytest.raises(ValueError, match="shared-evidence"):
        select_batch(graph, rows, cols, np.array([[False, True]]), SHARED)
