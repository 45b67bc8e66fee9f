"""services.policy.analysis: what `agensbus policy` reports, computed without the CLI. The
expected figures are worked out by hand from the edges each test builds."""

import math

import pytest

from schemas.events import DecisionReason
from schemas.policy_file import EdgeRecord, NodeRecord, PolicyDocument
from schemas.records import FoldSpec, Regime, SelectionConfig
from services.policy import PolicyGraph, Signature
from services.policy.analysis import (
    Z95,
    evaluation_figures,
    explain_decision,
    fold_mismatch,
    greedy_actions,
    logged_fold_mismatch,
    prior_acts,
    summarize,
    unchoosable,
)
from services.policy.ope import LoggedDecision, LoggedTrajectory, TargetPolicy, evaluate

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"
KEYED = FoldSpec(extra_keys=["task_class"])


def node(signature: str, visits: int, **edges: tuple[int, float, int]) -> NodeRecord:
    """A node whose edges are given as action=(visits, mean reward, failures)."""
    return NodeRecord(
        signature=signature,
        visits=visits,
        edges={
            a: EdgeRecord(visits=n, mean_reward=m, failures=f) for a, (n, m, f) in edges.items()
        },
    )


def graph_of(*nodes: NodeRecord) -> PolicyGraph:
    return PolicyGraph.from_document(PolicyDocument(nodes=list(nodes)))


# --- fold and prior --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "fold", "problem"),
    [
        (SIG, FoldSpec(), None),
        (SIG + "|task_class=C1", KEYED, None),
        (SIG, KEYED, "carries keys [], the policy's fold lists ['task_class']"),
        (SIG + "|klass=C1", KEYED, "carries keys ['klass']"),
        (SIG.replace("c1.", "c9."), FoldSpec(granularity=0.25), "bucket 9 is above 4"),
    ],
)
def test_fold_mismatch_names_what_does_not_fit(
    signature: str, fold: FoldSpec, problem: str | None
) -> None:
    found = fold_mismatch(Signature.parse(signature), fold)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_prior_acts_below_the_threshold_and_always_in_fixed_mode() -> None:
    paper = SelectionConfig()
    assert [prior_acts(paper, n) for n in (0, 4, 5, 50)] == [True, True, False, False]
    assert prior_acts(SelectionConfig(mode="fixed"), 1_000)


def test_only_skips_cannot_be_chosen_while_the_prior_acts() -> None:
    paper = SelectionConfig()
    assert unchoosable(["skip:a", "skip:b"], paper, 4)
    assert not unchoosable(["skip:a", "b"], paper, 4)
    assert not unchoosable(["skip:a", "skip:b"], paper, 5)


# --- explain ---------------------------------------------------------------------------------


def test_explain_scores_every_candidate_by_ucb_once_confident() -> None:
    graph = graph_of(node(SIG, 8, a=(3, 0.6, 1), b=(2, 0.4, 0)))
    ex = explain_decision(graph, SelectionConfig(), SIG, ["a", "b"])
    c = max(0.5, 1.4 * 2 ** (-8 / 50))
    score_a = 0.6 + c * math.sqrt(math.log(9) / 3) - 0.5 * 1 / 4
    score_b = 0.4 + c * math.sqrt(math.log(9) / 2)
    assert [s.score for s in ex.scores] == pytest.approx([score_a, score_b], abs=1e-12)
    assert ex.selection.action == ("a" if score_a > score_b else "b")
    assert ex.selection.reason is DecisionReason.GRAPH_RECOMMENDATION
    assert ex.in_policy and not ex.prior_acts and ex.notes == []
    assert ex.reason_text == "highest UCB score; ties go to candidate order"


def test_explain_still_scores_the_candidates_where_the_prior_acts() -> None:
    graph = graph_of(node(SIG, 3, a=(1, 0.0, 0), b=(2, 1.0, 0)))
    ex = explain_decision(graph, SelectionConfig(), SIG, ["skip:a", "a", "b"])
    assert (ex.selection.action, ex.selection.reason) == ("a", DecisionReason.RULE_BASED_PRIOR)
    assert [s.action for s in ex.scores] == ["skip:a", "a", "b"]
    assert ex.scores[0].score == math.inf  # never tried
    assert ex.reason_text.startswith("N = 3 < confidence threshold 5")
    assert ex.notes == ["scores are shown for information: below the threshold they do not act"]


def test_explain_says_when_the_signature_is_not_in_the_policy() -> None:
    ex = explain_decision(graph_of(node(SIG, 50, a=(50, 0.2, 0))), SelectionConfig(), "x", ["a"])
    assert not ex.in_policy and ex.selection.node_visits == 0
    assert any("not in the policy" in note for note in ex.notes)


def test_explain_in_fixed_mode_names_the_fixed_pipeline() -> None:
    graph = graph_of(node(SIG, 100, a=(50, 0.0, 0), b=(50, 1.0, 0)))
    ex = explain_decision(graph, SelectionConfig(mode="fixed"), SIG, ["skip:a", "a", "b"])
    assert (ex.selection.action, ex.selection.reason) == ("a", DecisionReason.FIXED_PIPELINE)
    assert ex.reason_text.startswith("selection mode is fixed")


# --- inspect ---------------------------------------------------------------------------------


def _sig(regime: str, mask: str, task_class: str) -> str:
    return f"v1|{regime}|{mask}|c1.u9.r5.e1|task_class={task_class}"


NODES = [
    node(_sig("ambiguous", "1000000", "C1"), 3, c=(3, 0.2, 0)),
    node(_sig("straightforward", "1000000", "C1"), 4, a=(2, 0.5, 0), b=(1, 0.9, 1)),
    node(_sig("straightforward", "1100000", "C1"), 6, a=(4, 0.8, 0), b=(0, 0.0, 2)),
    node(_sig("straightforward", "1000000", "C2"), 1, a=(1, 0.3, 0)),
]


def test_groups_come_per_regime_and_fold_key_in_regime_order() -> None:
    groups = summarize(NODES)
    assert [(g.regime, dict(g.keys)) for g in groups] == [
        (Regime.STRAIGHTFORWARD, {"task_class": "C1"}),
        (Regime.STRAIGHTFORWARD, {"task_class": "C2"}),
        (Regime.AMBIGUOUS, {"task_class": "C1"}),
    ]
    assert [g.regime for g in summarize(NODES, Regime.AMBIGUOUS)] == [Regime.AMBIGUOUS]
    assert summarize(NODES, Regime.HIGH_RISK) == []


def test_a_group_aggregates_its_nodes_per_action() -> None:
    first = summarize(NODES)[0]
    assert (first.nodes, first.visits) == (2, 10)
    by_action = {a.action: a for a in first.ranked()}
    a, b = by_action["a"], by_action["b"]
    # a: 2 visits at 0.5 and 4 at 0.8; greedy only at the second node.
    assert (a.visits, a.failures, a.greedy_nodes) == (6, 0, 1)
    assert a.mean_reward == pytest.approx((2 * 0.5 + 4 * 0.8) / 6, abs=1e-12)
    assert a.failure_rate == 0.0
    # b: one completed visit (0.9) and three failures; greedy at the first node.
    assert (b.visits, b.failures, b.greedy_nodes) == (1, 3, 1)
    assert (b.mean_reward, b.failure_rate) == (pytest.approx(0.9), pytest.approx(0.75))
    # Equal greedy counts: the higher mean ranks first.
    assert [x.action for x in first.ranked()] == ["b", "a"]


def test_greedy_actions_are_the_best_completed_edges_ties_included() -> None:
    assert greedy_actions(node(SIG, 9, a=(2, 0.5, 0), b=(3, 0.5, 0), c=(1, 0.1, 0))) == ["a", "b"]
    # An edge that has only failed has no mean and cannot be greedy.
    assert greedy_actions(node(SIG, 2, a=(0, 0.0, 2))) == []


def test_an_action_never_completed_has_no_mean_and_ranks_last() -> None:
    group = summarize([node(SIG, 3, a=(0, 0.0, 3), b=(1, 0.1, 0))])[0]
    ranked = group.ranked()
    assert [x.action for x in ranked] == ["b", "a"]
    assert ranked[1].mean_reward is None and ranked[1].failure_rate == 1.0


# --- off-policy evaluation -------------------------------------------------------------------


def logged(trajectory_id: str, *steps: tuple[str, str, float], reward: float) -> LoggedTrajectory:
    decisions = tuple(LoggedDecision(s, ("a", "b"), a, p) for s, a, p in steps)
    return LoggedTrajectory(trajectory_id, decisions, reward)


def test_the_first_logged_decision_off_the_fold_is_named() -> None:
    fits = logged("t1", (SIG + "|task_class=C1", "a", 1.0), reward=0.5)
    unkeyed = logged("t2", (SIG, "a", 1.0), reward=0.5)
    garbled = logged("t3", ("not a signature", "a", 1.0), reward=0.5)
    assert logged_fold_mismatch([fits], KEYED) is None
    found = logged_fold_mismatch([fits, unkeyed, garbled], KEYED)
    assert found is not None and found[0] == "t2" and "carries keys []" in found[1]
    found = logged_fold_mismatch([garbled], KEYED)
    assert found is not None and found[0] == "t3"


def test_the_figures_carry_each_estimate_and_its_95_percent_interval() -> None:
    graph = graph_of(node(SIG, 10, a=(5, 0.6, 0), b=(5, 0.2, 0)))
    log = [
        logged("t1", (SIG, "a", 0.5), reward=0.7),
        logged("t2", (SIG, "b", 0.5), reward=0.1),
        logged("t3", (SIG, "a", 0.5), reward=0.5),
    ]
    evaluation = evaluate(TargetPolicy(graph, SelectionConfig()), log)
    figures = {f.estimator: f for f in evaluation_figures(evaluation)}
    assert list(figures) == ["logged policy", "IPS", "SNIPS", "doubly robust"]
    assert figures["logged policy"].estimate == pytest.approx((0.7 + 0.1 + 0.5) / 3)
    assert figures["logged policy"].half_width is None
    ips = figures["IPS"]
    assert ips.estimate == evaluation.ips.estimate
    assert ips.half_width == pytest.approx(Z95 * evaluation.ips.standard_error)
    assert figures["SNIPS"].half_width is None
    assert f"{evaluation.snips.effective_sample_size:.1f}" in figures["SNIPS"].note
    dr = figures["doubly robust"]
    assert dr.half_width == pytest.approx(Z95 * evaluation.doubly_robust.standard_error)
