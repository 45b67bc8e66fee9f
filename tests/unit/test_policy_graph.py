"""Mergeable statistics: merge(a, b) equals the statistics of the union."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.policy import PolicyGraph
from services.policy.stats import EdgeStats, RunningStat

values = st.lists(st.floats(-5, 5, allow_nan=False), max_size=40)


def _direct(xs: list[float]) -> tuple[int, float, float]:
    if not xs:
        return 0, 0.0, 0.0
    mean = sum(xs) / len(xs)
    return len(xs), mean, sum((x - mean) ** 2 for x in xs)


def _stream(xs: list[float]) -> RunningStat:
    s = RunningStat()
    for x in xs:
        s.add(x)
    return s


@given(values, values)
def test_running_stat_merge_equals_union(a: list[float], b: list[float]) -> None:
    merged = _stream(a).merge(_stream(b))
    n, mean, m2 = _direct(a + b)
    assert merged.count == n
    assert merged.mean == pytest.approx(mean, abs=1e-9)
    assert merged.m2 == pytest.approx(m2, abs=1e-7)


rewards_and_tokens = st.lists(
    st.tuples(
        st.floats(-1, 1, allow_nan=False), st.floats(0, 20_000, allow_nan=False), st.booleans()
    ),
    max_size=30,
)


def _edge(obs: list[tuple[float, float, bool]]) -> EdgeStats:
    e = EdgeStats()
    for reward, tokens, failed in obs:
        if failed:
            e.fail()
        else:
            e.observe(reward, tokens)
    return e


@given(rewards_and_tokens, rewards_and_tokens)
def test_edge_merge_equals_union(
    a: list[tuple[float, float, bool]], b: list[tuple[float, float, bool]]
) -> None:
    merged = _edge(a).merge(_edge(b))
    union = _edge(a + b)
    assert merged.visits == union.visits
    assert merged.failures == union.failures
    ok = [(r, t) for r, t, f in a + b if not f]
    _, r_mean, r_m2 = _direct([r for r, _ in ok])
    _, t_mean, t_m2 = _direct([t for _, t in ok])
    assert merged.mean_reward == pytest.approx(r_mean, abs=1e-9)
    assert merged.reward_m2 == pytest.approx(r_m2, abs=1e-7)
    assert merged.token_mean == pytest.approx(t_mean, rel=1e-9, abs=1e-6)
    assert merged.token_m2 == pytest.approx(t_m2, rel=1e-7, abs=1e-3)


edge_obs = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        st.sampled_from(["a", "b", "skip:c"]),
        st.floats(-1, 1, allow_nan=False),
        st.integers(0, 9_000),
        st.booleans(),
    ),
    max_size=40,
)


def _graph(obs: list[tuple[str, str, float, int, bool]]) -> PolicyGraph:
    g = PolicyGraph()
    g.backup(
        g.batch(
            [(s, a, f) for s, a, _, _, f in obs],
            [r for *_, r, _, _ in obs],
            [t for *_, t, _ in obs],
        )
    )
    return g


@settings(max_examples=60)
@given(edge_obs, edge_obs)
def test_graph_merge_equals_graph_of_the_union(
    a: list[tuple[str, str, float, int, bool]], b: list[tuple[str, str, float, int, bool]]
) -> None:
    merged = _graph(a)
    merged.merge(_graph(b))
    union = _graph(a + b)
    assert set(merged.signatures) == set(union.signatures)
    for sig in union.signatures:
        assert merged.visits_of(sig) == union.visits_of(sig)
        for action in ("a", "b", "skip:c"):
            m, u = merged.edge(sig, action), union.edge(sig, action)
            assert (m.visits, m.failures) == (u.visits, u.failures)
            assert m.mean_reward == pytest.approx(u.mean_reward, abs=1e-9)
            assert m.reward_m2 == pytest.approx(u.reward_m2, abs=1e-7)
            assert m.token_mean == pytest.approx(u.token_mean, rel=1e-9, abs=1e-6)


@settings(max_examples=60)
@given(edge_obs)
def test_one_batch_equals_one_update_at_a_time(
    obs: list[tuple[str, str, float, int, bool]],
) -> None:
    batched = _graph(obs)
    sequential = PolicyGraph()
    for item in obs:
        sequential.backup(sequential.batch([(item[0], item[1], item[4])], [item[2]], [item[3]]))
    for sig in batched.signatures:
        for action in ("a", "b", "skip:c"):
            x, y = batched.edge(sig, action), sequential.edge(sig, action)
            assert (x.visits, x.failures) == (y.visits, y.failures)
            assert x.mean_reward == pytest.approx(y.mean_reward, abs=1e-9)
            assert x.reward_m2 == pytest.approx(y.reward_m2, abs=1e-7)


def test_backup_counts_node_visits_failures_and_welford_moments() -> None:
    g = PolicyGraph()
    g.backup(
        g.batch(
            [("s", "a", False), ("s", "a", False), ("s", "b", True), ("t", "a", False)],
            [1.0, 0.0, 0.7, 0.4],
            [100, 300, 50, 10],
        )
    )
    assert g.visits_of("s") == 3
    assert g.visits_of("t") == 1
    a = g.edge("s", "a")
    assert (a.visits, a.mean_reward, a.reward_m2) == (2, 0.5, 0.5)
    assert (a.token_mean, a.token_m2) == (200.0, 20_000.0)
    b = g.edge("s", "b")
    assert (b.visits, b.failures, b.mean_reward) == (0, 1, 0.0)
    assert g.edge_count == 3


def test_graph_grows_past_its_capacity_and_keeps_statistics() -> None:
    g = PolicyGraph(capacity=2)
    sigs = [f"v1|straightforward|1000000|c{i}.u0.r0.e0" for i in range(11)]
    actions = [f"act{i}" for i in range(20)]
    g.backup(
        g.batch(
            [(s, a, False) for s in sigs for a in actions],
            [float(i) for i in range(len(sigs) * len(actions))],
            [1.0] * (len(sigs) * len(actions)),
        )
    )
    assert g.node_count == 11
    assert g.edge("v1|straightforward|1000000|c10.u0.r0.e0", "act19").mean_reward == 219.0
    assert g.edge(sigs[0], "act0").mean_reward == 0.0
    assert g.edge(sigs[0], "act1").mean_reward == 1.0


def test_document_round_trip_is_exact() -> None:
    g = _graph(
        [
            ("v1|ambiguous|1000000|c1.u9.r5.e1", "a", 0.25, 900, False),
            ("v1|ambiguous|1000000|c1.u9.r5.e1", "a", 0.75, 100, False),
            ("v1|ambiguous|1000000|c1.u9.r5.e1", "skip:c", 0.1, 0, True),
        ]
    )
    back = PolicyGraph.from_document(g.to_document())
    assert back.to_document() == g.to_document()
    e = back.edge("v1|ambiguous|1000000|c1.u9.r5.e1", "a")
    assert (e.visits, e.mean_reward, e.reward_m2, e.token_mean) == (2, 0.5, 0.125, 500.0)


def test_from_document_rejects_a_signature_of_another_fold() -> None:
    g = _graph([("v1|ambiguous|1000000|c1.u9.r5.e1|task_class=C1", "a", 0.5, 1, False)])
    with pytest.raises(ValueError, match="carries keys"):
        PolicyGraph.from_document(g.to_document())


def test_weighted_merge_scales_counts_and_keeps_means() -> None:
    source = _graph([("s", "a", 1.0, 10, False)] * 5 + [("s", "a", 0.0, 10, False)] * 5)
    target = PolicyGraph()
    target.merge(source, weight=0.2)
    e = target.edge("s", "a")
    assert e.visits == 2
    assert target.visits_of("s") == 2
    assert e.mean_reward == pytest.approx(0.5)
    # the variance estimate survives the scaling: M2/(n) stays 0.25
    assert e.reward_m2 / e.visits == pytest.approx(2.5 / 10)
    with pytest.raises(ValueError):
        target.merge(source, weight=0)


def test_empty_batch_is_a_no_op() -> None:
    g = PolicyGraph()
    g.backup(g.batch([], [], []))
    assert g.node_count == 0
    assert math.isclose(float(np.sum(g.mean_reward)), 0.0)
