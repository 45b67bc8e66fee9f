"""Confidence-weighted backup: a reward of judge confidence w adds w to its edge's count and
w x reward to its sum, and weighted statistics merge exactly like unweighted ones."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.policy_file import PolicyDocument
from schemas.records import RewardConfig
from services.policy import PolicyGraph, backup
from services.policy.arms import arm_named
from services.sim import load_scenario
from services.sim.engine import Engine

SIG, ACTIONS = "v1|straightforward|1000000|c1.u9.r5.e1", ("a", "b")

# (action, reward, weight): completed visits of one node's edges.
observations = st.lists(
    st.tuples(
        st.sampled_from(ACTIONS),
        st.floats(-1, 1, allow_nan=False),
        st.floats(0.05, 1, allow_nan=False),
    ),
    max_size=30,
)


def graph_of(obs: list[tuple[str, float, float]], *, weighted: bool = True) -> PolicyGraph:
    graph = PolicyGraph()
    batch = graph.batch(
        [(SIG, a, False) for a, _, _ in obs],
        [r for _, r, _ in obs],
        [100.0] * len(obs),
        weights=[w for _, _, w in obs] if weighted else None,
    )
    graph.backup(batch)
    return graph


@given(observations, observations)
def test_weighted_merge_equals_the_weighted_statistics_of_the_union(
    a: list[tuple[str, float, float]], b: list[tuple[str, float, float]]
) -> None:
    merged = graph_of(a)
    merged.merge(graph_of(b))
    for action in ACTIONS:
        mine = [(r, w) for x, r, w in a + b if x == action]
        if not mine:
            continue
        rewards, weights = np.array(mine).T
        total = weights.sum()
        mean = float((weights * rewards).sum() / total)
        m2 = float((weights * (rewards - mean) ** 2).sum())
        row, col = merged.find_row(SIG), merged.find_col(action)
        assert row is not None and col is not None
        assert merged.visits[row, col] == len(mine)
        assert merged.weight[row, col] == pytest.approx(total, abs=1e-12)
        assert merged.mean_reward[row, col] == pytest.approx(mean, abs=1e-9)
        assert merged.reward_m2[row, col] == pytest.approx(m2, abs=1e-9)
        # Tokens are measured, not judged: they stay unweighted.
        assert merged.token_mean[row, col] == 100.0


@given(observations, observations)
def test_with_every_weight_one_it_is_the_unweighted_backup_exactly(
    a: list[tuple[str, float, float]], b: list[tuple[str, float, float]]
) -> None:
    ones_a = [(x, r, 1.0) for x, r, _ in a]
    ones_b = [(x, r, 1.0) for x, r, _ in b]
    weighted, plain = graph_of(ones_a), graph_of(a, weighted=False)
    weighted.merge(graph_of(ones_b))
    plain.merge(graph_of(b, weighted=False))
    for name in ("visits", "weight", "mean_reward", "reward_m2", "token_mean", "token_m2"):
        assert np.array_equal(getattr(weighted, name), getattr(plain, name)), name
    assert weighted.to_document() == plain.to_document()


def test_the_policy_file_carries_the_weight_and_old_files_still_load() -> None:
    graph = graph_of([("a", 1.0, 0.25), ("a", 0.0, 1.0), ("b", 0.5, 1.0)])
    document = graph.to_document()
    (node,) = document.nodes
    assert node.edges["a"].weight == 1.25 and node.edges["a"].mean_reward == pytest.approx(0.2)
    assert node.edges["b"].weight is None  # every reward weighed 1: the file is the paper's
    assert PolicyGraph.from_document(document).to_document() == document
    old = document.model_dump(mode="json")
    del old["nodes"][0]["edges"]["a"]["weight"]
    loaded = PolicyGraph.from_document(PolicyDocument.model_validate(old))
    assert loaded.weight[0, loaded.find_col("a")] == 2.0  # the visits


def test_backup_weighs_each_trajectory_by_its_confidence_only_when_switched_on() -> None:
    scenario = load_scenario("security-advisories")
    arm = arm_named("paper+confidence_weighted")
    engine = Engine(scenario, arm.setup(scenario, 0), seed=0, reward=arm.reward)
    record = next(engine.epoch(1))
    state, confidence = record.state, record.judgement.confidence
    assert 0.0 < confidence < 1.0
    weighted = PolicyGraph()
    backup(weighted, [(state, 0.7)], arm.reward, [confidence])
    plain = PolicyGraph()
    backup(plain, [(state, 0.7)], RewardConfig(), [confidence])
    completed = plain.visits > 0
    assert np.allclose(weighted.weight[completed], confidence)
    assert np.array_equal(plain.weight, plain.visits.astype(float))
    # The engine backed the same trajectory up with the judge's confidence.
    assert np.allclose(engine.graph.weight[engine.graph.visits > 0], confidence)
    with pytest.raises(ValueError, match="confidences"):
        backup(PolicyGraph(), [(state, 0.7)], arm.reward)
