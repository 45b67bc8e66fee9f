"""Paper-mode selection: prior, UCB argmax, ties, and the batch path agreeing with it."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import DecisionReason
from schemas.records import SelectionConfig
from services.policy import PolicyGraph, select, select_batch

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"


def _observe(g: PolicyGraph, action: str, rewards: list[float], failures: int = 0) -> None:
    edges = [(SIG, action, False)] * len(rewards) + [(SIG, action, True)] * failures
    g.backup(g.batch(edges, rewards + [0.0] * failures, [0.0] * len(edges)))


def test_below_five_visits_the_prior_takes_the_first_invoke() -> None:
    g = PolicyGraph()
    _observe(g, "b", [1.0, 1.0, 1.0, 1.0])
    sel = select(g, SIG, ["skip:a", "a", "b"])
    assert (sel.action, sel.reason, sel.propensity) == ("a", DecisionReason.RULE_BASED_PRIOR, 1.0)
    assert sel.node_visits == 4
    assert sel.scores == ()


def test_an_unseen_signature_uses_the_prior() -> None:
    sel = select(PolicyGraph(), SIG, ["a", "b"])
    assert sel.action == "a"
    assert sel.reason is DecisionReason.RULE_BASED_PRIOR
    assert sel.exploration_c == pytest.approx(1.4)


def test_untried_actions_score_infinity_and_ties_go_to_candidate_order() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.9] * 5)
    sel = select(g, SIG, ["a", "b", "skip:c"])
    assert sel.action == "b"
    assert sel.reason is DecisionReason.UNTRIED_ACTION
    assert [s.score for s in sel.scores][1:] == [math.inf, math.inf]


def test_ucb_argmax_matches_hand_computation() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.5, 0.7, 0.6], failures=1)  # n=3 f=1 mean 0.6
    _observe(g, "b", [0.4, 0.4])  # n=2 mean 0.4
    _observe(g, "skip:c", [], failures=2)  # only failed
    n_node = 8
    c = 1.4 * 2 ** (-n_node / 50)
    log = math.log(n_node + 1)
    expected = {
        "a": 0.6 + c * math.sqrt(log / 3) - 0.5 * 1 / 4,
        "b": 0.4 + c * math.sqrt(log / 2),
        "skip:c": -0.5 + c * math.sqrt(log / 2),
    }
    sel = select(g, SIG, ["a", "b", "skip:c"])
    assert sel.node_visits == n_node
    assert sel.exploration_c == pytest.approx(c, abs=1e-12)
    for s in sel.scores:
        assert s.score == pytest.approx(expected[s.action], abs=1e-9)
    assert sel.action == max(expected, key=lambda k: expected[k])
    assert sel.reason is DecisionReason.GRAPH_RECOMMENDATION


def test_exact_ties_go_to_the_earlier_candidate() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.5, 0.5, 0.5])
    _observe(g, "b", [0.5, 0.5, 0.5])
    assert select(g, SIG, ["b", "a"]).action == "b"
    assert select(g, SIG, ["a", "b"]).action == "a"


def test_fixed_mode_never_adapts() -> None:
    g = PolicyGraph()
    _observe(g, "a", [0.0] * 50)
    _observe(g, "b", [1.0] * 50)
    sel = select(g, SIG, ["a", "b"], SelectionConfig(mode="fixed"))
    assert (sel.action, sel.reason) == ("a", DecisionReason.FIXED_PIPELINE)


def test_prior_needs_an_invoke_and_selection_needs_candidates() -> None:
    with pytest.raises(ValueError, match="invoke"):
        select(PolicyGraph(), SIG, ["skip:a"])
    with pytest.raises(ValueError, match="no candidate"):
        select(PolicyGraph(), SIG, [])


ACTIONS = ["a", "b", "c", "skip:a", "skip:b"]
observations = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(ACTIONS),
        st.floats(-1, 1, allow_nan=False),
        st.booleans(),
    ),
    max_size=80,
)


@settings(max_examples=80, deadline=None)
@given(observations, st.lists(st.permutations(ACTIONS), min_size=1, max_size=6), st.integers(0, 6))
def test_batch_selection_agrees_with_scalar(
    obs: list[tuple[int, str, float, bool]], orders: list[list[str]], threshold: int
) -> None:
    sigs = [f"v1|straightforward|1000000|c{i}.u0.r0.e0" for i in range(5)]
    g = PolicyGraph()
    g.backup(
        g.batch(
            [(sigs[i], a, f) for i, a, _, f in obs], [r for _, _, r, _ in obs], [0.0] * len(obs)
        )
    )
    config = SelectionConfig(confidence_threshold=threshold)
    g.action_col("never-seen-by-batch")  # a column no node has touched
    requests = [(sigs[k % 5], order[: 2 + k % 4]) for k, order in enumerate(orders * 2)]
    width = max(len(c) for _, c in requests)
    rows = np.array([g.find_row(s) if g.find_row(s) is not None else -1 for s, _ in requests])
    cols = np.full((len(requests), width), -1, dtype=np.int64)
    skips = np.zeros((len(requests), width), dtype=bool)
    for b, (_, cands) in enumerate(requests):
        for k, a in enumerate(cands):
            col = g.find_col(a)
            cols[b, k] = -2 if col is None else col
            skips[b, k] = a.startswith("skip:")
    batch = select_batch(g, rows, cols, skips, config)
    for b, (sig, cands) in enumerate(requests):
        if all(a.startswith("skip:") for a in cands):
            continue
        scalar = select(g, sig, cands, config)
        assert batch.index[b] == scalar.index
        assert batch.exploration_c[b] == pytest.approx(scalar.exploration_c, abs=1e-12)
        assert bool(batch.prior[b]) == (scalar.reason is DecisionReason.RULE_BASED_PRIOR)
        assert bool(batch.untried[b]) == (scalar.reason is DecisionReason.UNTRIED_ACTION)
