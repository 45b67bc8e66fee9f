"""`agensbus policy`: explain reproduces the paper's selection rule exactly (scores computed by
hand here), inspect prints what a policy prefers (the aggregation is tested on its own in
test_policy_analysis), validate and every error path exit 2 with a one-line message and no
traceback."""

import json
import math
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from schemas.records import FoldSpec
from services.cli.policy import policy
from services.policy import PolicyGraph
from services.runtime.policy_files import save_policy
from tests.unit.support_policy_doc import doc_example

SIG = "v1|straightforward|1000000|c1.u9.r5.e1"
Edges = dict[str, dict[str, float]]


def edge(visits: int, mean: float = 0.0, failures: int = 0) -> dict[str, float]:
    return {"visits": visits, "mean_reward": mean, "failures": failures}


def write_policy(tmp_path: Path, nodes: list[tuple[str, int, Edges]], **top: object) -> Path:
    document = {
        "format": "agensbus.policy/1",
        "nodes": [{"signature": s, "visits": n, "edges": e} for s, n, e in nodes],
        **top,
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(policy, list(args), env={"COLUMNS": "200"})


def explain(path: Path, candidates: str, signature: str = SIG) -> dict[str, Any]:
    result = run(
        "explain", str(path), "--signature", signature, "--candidates", candidates, "--json"
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def paper_c(n_node: int, c_min: float = 0.5, c0: float = 1.4, half: float = 50.0) -> float:
    return max(c_min, c0 * 2 ** (-n_node / half))


def paper_score(
    n_node: int, n: int, f: int, mean: float, *, c: float | None = None, lam: float = 0.5
) -> tuple[float, float, float]:
    """(score, bonus, penalty) by the paper's rule, written out independently of the code."""
    c = paper_c(n_node) if c is None else c
    log = math.log(n_node + 1)
    if n > 0:
        bonus = c * math.sqrt(log / n)
        penalty = lam * f / (n + f)
        return mean + bonus - penalty, bonus, penalty
    if f > 0:
        bonus = c * math.sqrt(log / f)
        return -lam + bonus, bonus, lam
    return math.inf, math.inf, 0.0


def as_float(value: float | None) -> float:
    return math.inf if value is None else value


def assert_scores(data: dict[str, Any], expected: dict[str, tuple[float, float, float]]) -> None:
    assert [s["action"] for s in data["scores"]] == list(expected)
    for row in data["scores"]:
        score, bonus, penalty = expected[row["action"]]
        for got, want in ((row["score"], score), (row["bonus"], bonus), (row["penalty"], penalty)):
            if math.isinf(want):
                assert got is None  # +inf is written as null
            else:
                assert got == pytest.approx(want, abs=1e-9)


# --- explain: the paper's rule --------------------------------------------------------------


def test_ucb_scores_and_argmax_match_the_paper(tmp_path: Path) -> None:
    edges = {"a": edge(3, 0.6, 1), "b": edge(2, 0.4), "skip:c": edge(0, 0.0, 2)}
    path = write_policy(tmp_path, [(SIG, 8, edges)])

    data = explain(path, "a,b,skip:c")

    expected = {
        "a": paper_score(8, 3, 1, 0.6),
        "b": paper_score(8, 2, 0, 0.4),
        "skip:c": paper_score(8, 0, 2, 0.0),
    }
    assert_scores(data, expected)
    best = max(expected, key=lambda a: expected[a][0])
    assert data["action"] == best
    assert data["reason"] == "graph_recommendation"
    assert data["propensity"] == 1.0
    assert data["node_visits"] == 8
    assert data["exploration_c"] == pytest.approx(paper_c(8), abs=1e-12)
    assert data["prior_acts"] is False
    rows = {s["action"]: s for s in data["scores"]}
    assert (rows["a"]["mean"], rows["a"]["visits"], rows["a"]["failures"]) == (0.6, 3, 1)
    assert (rows["skip:c"]["visits"], rows["skip:c"]["failures"]) == (0, 2)


def test_a_never_tried_candidate_scores_inf_and_the_first_one_wins(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, 6, {"a": edge(6, 0.99)})])

    data = explain(path, "a,d,e")

    assert data["action"] == "d"
    assert data["index"] == 1
    assert data["reason"] == "untried_action"
    assert [s["score"] for s in data["scores"]][1:] == [None, None]
    assert data["scores"][0]["score"] == pytest.approx(paper_score(6, 6, 0, 0.99)[0], abs=1e-9)


@pytest.mark.parametrize(("order", "winner"), [("x,y", "x"), ("y,x", "y")])
def test_ties_go_to_candidate_order(tmp_path: Path, order: str, winner: str) -> None:
    path = write_policy(tmp_path, [(SIG, 10, {"x": edge(5, 0.5), "y": edge(5, 0.5)})])
    data = explain(path, order)
    assert data["scores"][0]["score"] == data["scores"][1]["score"]
    assert (data["action"], data["reason"]) == (winner, "graph_recommendation")


@pytest.mark.parametrize(
    ("node_visits", "action", "reason"),
    [
        (4, "a", "rule_based_prior"),
        (5, "b", "graph_recommendation"),
    ],
)
def test_below_five_visits_the_prior_acts(
    tmp_path: Path, node_visits: int, action: str, reason: str
) -> None:
    # b is far better, but below the threshold the first candidate that is not a skip acts.
    edges = {"skip:a": edge(0, 0.0, 1), "a": edge(1, 0.0), "b": edge(node_visits - 2, 1.0)}
    path = write_policy(tmp_path, [(SIG, node_visits, edges)])

    data = explain(path, "skip:a,a,b")

    assert (data["action"], data["reason"]) == (action, reason)
    assert data["prior_acts"] is (node_visits < 5)
    # The scores are reported either way, by the same formula.
    expected = {
        "skip:a": paper_score(node_visits, 0, 1, 0.0),
        "a": paper_score(node_visits, 1, 0, 0.0),
        "b": paper_score(node_visits, node_visits - 2, 0, 1.0),
    }
    assert_scores(data, expected)
    assert max(expected, key=lambda a: expected[a][0]) == "b"


def test_a_signature_absent_from_the_policy_uses_the_prior_and_says_so(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, 50, {"a": edge(50, 0.2)})])
    absent = "v1|straightforward|1100000|c1.u8.r5.e1"

    data = explain(path, "skip:b,b,a", signature=absent)

    assert data["signature_in_policy"] is False
    assert data["node_visits"] == 0
    assert (data["action"], data["reason"]) == ("b", "rule_based_prior")
    assert data["exploration_c"] == pytest.approx(1.4)
    assert any("not in the policy" in note for note in data["notes"])
    assert all(s["score"] is None for s in data["scores"])


def test_the_file_selection_constants_are_used(tmp_path: Path) -> None:
    selection = {
        "confidence_threshold": 2,
        "c_min": 0.1,
        "c_initial": 2.0,
        "c_half_life": 10.0,
        "failure_lambda": 1.0,
    }
    edges = {"a": edge(1, 0.3, 1), "b": edge(0, 0.0, 2)}
    path = write_policy(tmp_path, [(SIG, 3, edges)], selection=selection)

    data = explain(path, "a,b")

    c = paper_c(3, c_min=0.1, c0=2.0, half=10.0)
    assert data["exploration_c"] == pytest.approx(c, abs=1e-12)
    assert data["prior_acts"] is False  # 3 >= threshold 2
    assert_scores(
        data,
        {
            "a": paper_score(3, 1, 1, 0.3, c=c, lam=1.0),
            "b": paper_score(3, 0, 2, 0.0, c=c, lam=1.0),
        },
    )


def test_c_bottoms_out_at_half(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, 1000, {"a": edge(900, 0.4, 10), "b": edge(90, 0.5)})])
    data = explain(path, "a,b")
    assert data["exploration_c"] == 0.5
    assert_scores(
        data,
        {"a": paper_score(1000, 900, 10, 0.4, c=0.5), "b": paper_score(1000, 90, 0, 0.5, c=0.5)},
    )


def test_fixed_mode_always_takes_the_first_invoke(tmp_path: Path) -> None:
    edges = {"a": edge(50, 0.0), "b": edge(50, 1.0)}
    path = write_policy(tmp_path, [(SIG, 100, edges)], selection={"mode": "fixed"})
    data = explain(path, "skip:a,a,b")
    assert (data["action"], data["reason"]) == ("a", "fixed_pipeline")


def test_a_learned_graph_is_explained_from_its_saved_file(tmp_path: Path) -> None:
    sig = "v1|evidence_heavy|1100000|c1.u8.r5.e1|task_class=C4"
    graph = PolicyGraph()
    rewards = {"memory": [0.2, 0.6, 0.7], "skip:memory": [0.9, 0.5]}
    observed = [(sig, a, False) for a, rs in rewards.items() for _ in rs] + [(sig, "memory", True)]
    flat = [r for rs in rewards.values() for r in rs] + [0.0]
    graph.backup(graph.batch(observed, flat, [100.0] * len(flat)))
    path = tmp_path / "learned.json"
    save_policy(path, graph.to_document(fold=FoldSpec(extra_keys=["task_class"])))

    data = explain(path, "memory,skip:memory", signature=sig)

    assert data["node_visits"] == 6
    assert_scores(
        data,
        {"memory": paper_score(6, 3, 1, 0.5), "skip:memory": paper_score(6, 2, 0, 0.7)},
    )
    assert data["scores"][0]["mean"] == pytest.approx(0.5, abs=1e-12)


def test_the_documented_worked_example_is_what_explain_prints(tmp_path: Path) -> None:
    path = tmp_path / "example.json"
    path.write_text(doc_example())
    doc = Path(__file__).resolve().parents[2] / "docs" / "policy-format.md"
    table = dict(
        re.findall(
            r"^\| `([^`]+)` \| \d+ \| \d+ \| `.*= (-?[\d.]+)` \|$",
            doc.read_text(encoding="utf-8"),
            re.M,
        )
    )
    assert set(table) == {"planner", "memory", "skip:planner"}

    data = explain(
        path,
        "planner,memory,skip:planner",
        signature="v1|straightforward|1000000|c1.u9.r5.e1|task_class=C1",
    )

    for row in data["scores"]:
        assert f"{row['score']:.4f}" == table[row["action"]]
    assert (data["action"], data["reason"]) == ("skip:planner", "graph_recommendation")


def test_the_text_output_shows_scores_choice_and_reason(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, 9, {"a": edge(4, 0.7, 1), "b": edge(4, 0.2)})])
    result = run("explain", str(path), "--signature", SIG, "--candidates", "b,a,skip:a")
    assert result.exit_code == 0, result.output
    out = result.output
    score_a = paper_score(9, 4, 1, 0.7)[0]
    assert re.search(rf"\b2\s+a\s+{score_a:.4f}\s+0\.7000\s+\S+\s+0\.1000\s+4\s+1", out)
    # skip:a was never tried: +inf beats every finite score.
    assert re.search(r"▶ 3\s+skip:a\s+inf\s+-\s+inf", out)
    assert "chosen     skip:a  (candidate 3)" in out
    assert "reason     untried_action" in out
    assert f"= {paper_c(9):.4f}" in out


# --- explain: errors ------------------------------------------------------------------------

FOLDED = "v1|straightforward|1000000|c1.u9.r5.e1|task_class=C1"
EXPLAIN_ERRORS = {
    "unparsable signature": (SIG[:-3], "a", "not a signature"),
    "unknown regime": ("v1|weird|1000000|c1.u9.r5.e1|task_class=C1", "a", "unknown regime"),
    "fold keys missing": (SIG, "a", "carries keys [], the policy's fold lists ['task_class']"),
    "fold keys renamed": (SIG + "|klass=C1", "a", "carries keys ['klass']"),
    "fold version": (FOLDED.replace("v1", "v2"), "a", "fold version 2"),
    "bucket above range": (FOLDED.replace("c1.", "c11."), "a", "bucket 11 is above 10"),
    "not canonical": (FOLDED.replace("c1.", "c01."), "a", "is not canonical"),
    "empty candidates": (FOLDED, "", "--candidates is empty"),
    "blank candidates": (FOLDED, " ", "--candidates is empty"),
    "empty entry": (FOLDED, "a,,b", "an empty entry"),
    "trailing comma": (FOLDED, "a,", "an empty entry"),
    "bad syntax": (FOLDED, "a,solver..x", "'solver..x' is not an action id"),
    "bare skip": (FOLDED, "a,skip:", "'skip:' is not an action id"),
    "skip of a variant": (
        FOLDED,
        "a,skip:solver.concise",
        "'skip:solver.concise' is not an action id",
    ),
    "duplicates": (FOLDED, "a,b,a", "a listed more than once"),
    "only skips while the prior acts": (FOLDED, "skip:a,skip:b", "only skips"),
}


@pytest.fixture
def folded_policy(tmp_path: Path) -> Path:
    # N = 3 < 5: the prior acts at FOLDED.
    return write_policy(
        tmp_path, [(FOLDED, 3, {"a": edge(3, 0.5)})], fold={"extra_keys": ["task_class"]}
    )


def assert_user_error(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1  # one line


@pytest.mark.parametrize(
    ("signature", "candidates", "message"), EXPLAIN_ERRORS.values(), ids=EXPLAIN_ERRORS.keys()
)
def test_explain_rejects_bad_input_with_one_line(
    folded_policy: Path, signature: str, candidates: str, message: str
) -> None:
    result = run(
        "explain", str(folded_policy), "--signature", signature, "--candidates", candidates
    )
    assert_user_error(result, message)


def test_only_skips_are_fine_once_ucb_acts(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, 5, {"skip:a": edge(5, 0.5)})])
    data = explain(path, "skip:a,skip:b")
    assert (data["action"], data["reason"]) == ("skip:b", "untried_action")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read policy file"),
        ("{oops", "is not JSON"),
        ('{"format": "x"}', "format: 'x'"),
    ],
)
def test_explain_rejects_unusable_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    result = run("explain", str(path), "--signature", SIG, "--candidates", "a")
    assert_user_error(result, message)
    assert str(path) in result.output


# --- inspect and validate -------------------------------------------------------------------


def _sig(regime: str, mask: str, task_class: str) -> str:
    return f"v1|{regime}|{mask}|c1.u9.r5.e1|task_class={task_class}"


@pytest.fixture
def small_policy(tmp_path: Path) -> Path:
    nodes = [
        (_sig("straightforward", "1000000", "C1"), 4, {"a": edge(2, 0.5), "b": edge(1, 0.9, 1)}),
        (_sig("straightforward", "1100000", "C1"), 6, {"a": edge(4, 0.8), "b": edge(0, 0.0, 2)}),
        (_sig("straightforward", "1000000", "C2"), 1, {"a": edge(1, 0.3)}),
        (_sig("ambiguous", "1000000", "C1"), 3, {"c": edge(3, 0.2)}),
    ]
    return write_policy(
        tmp_path, nodes, tenant="acme", version=4, fold={"extra_keys": ["task_class"]}
    )


def inspect_json(path: Path, *extra: str) -> dict[str, Any]:
    result = run("inspect", str(path), "--json", *extra)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_inspect_summarises_the_policy(small_policy: Path) -> None:
    summary = inspect_json(small_policy)["summary"]
    assert (summary["tenant"], summary["version"]) == ("acme", 4)
    assert (summary["nodes"], summary["edges"], summary["actions"]) == (4, 6, 3)
    assert summary["total_visits"] == 14
    assert summary["selection"]["confidence_threshold"] == 5
    assert summary["fold"]["extra_keys"] == ["task_class"]


def test_inspect_json_carries_each_groups_ranked_actions(small_policy: Path) -> None:
    # The aggregation itself is tested in test_policy_analysis; this is its rendering.
    groups = inspect_json(small_policy)["groups"]
    assert [(g["regime"], g["keys"]) for g in groups] == [
        ("straightforward", {"task_class": "C1"}),
        ("straightforward", {"task_class": "C2"}),
        ("ambiguous", {"task_class": "C1"}),
    ]
    first = groups[0]
    assert (first["nodes"], first["visits"], first["actions_total"]) == (2, 10, 2)
    assert [a["action"] for a in first["actions"]] == ["b", "a"]
    assert first["actions"][1] == {
        "action": "a",
        "visits": 6,
        "failures": 0,
        "mean_reward": pytest.approx(0.7, abs=1e-12),
        "failure_rate": 0.0,
        "greedy_nodes": 1,
    }
    assert groups[2]["actions"][0]["failure_rate"] == 0.0


def test_inspect_filters_by_regime_and_limits_rows(small_policy: Path) -> None:
    data = inspect_json(small_policy, "--regime", "ambiguous")
    assert [g["regime"] for g in data["groups"]] == ["ambiguous"]
    top = inspect_json(small_policy, "--top", "1")["groups"][0]
    assert ([a["action"] for a in top["actions"]], top["actions_total"]) == (["b"], 2)


def test_inspect_prints_readable_tables(small_policy: Path) -> None:
    result = run("inspect", str(small_policy), "--top", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"tenant\s+acme", out)
    assert re.search(r"total_visits\s+14", out)
    assert "straightforward · task_class=C1: 2 nodes, 10 visits" in out
    assert re.search(r"1\s+b\s+1/2\s+0\.9000\s+1\s+3\s+0\.750", out)
    assert "1 more action (--top 0 shows all)" in out
    assert "ambiguous · task_class=C1: 1 nodes, 3 visits" in out


def test_inspect_says_when_a_regime_has_no_nodes(small_policy: Path) -> None:
    result = run("inspect", str(small_policy), "--regime", "high_risk")
    assert result.exit_code == 0
    assert "no nodes for regime high_risk" in result.output


def test_validate_prints_ok_and_counts(small_policy: Path) -> None:
    result = run("validate", str(small_policy))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"OK {small_policy}: agensbus.policy/3, tenant acme, version 4: "
        "4 nodes, 6 edges, 3 actions, 14 visits\n"
    )


def test_validate_and_inspect_reject_a_bad_file(tmp_path: Path) -> None:
    path = write_policy(tmp_path, [(SIG, -1, {})])
    for command in ("validate", "inspect"):
        result = run(command, str(path))
        assert_user_error(result, f"{path} is not a valid policy")


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["explain", "inspect", "validate"])
def test_help_explains_every_option_and_its_default(name: str) -> None:
    command = policy.commands[name]
    result = run(name, "--help")
    assert result.exit_code == 0
    assert command.help
    # click rewraps the docstring; compare words, not lines.
    assert " ".join(command.help.split("\n")[0].split()) in " ".join(result.output.split())
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert param.help, f"{name} {param.opts} has no help"
        told = param.required or param.show_default or "default" in param.help.lower()
        assert told, f"{name} {param.opts} does not say its default"
