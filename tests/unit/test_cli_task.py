"""`agensbus task explain`: the paper's regime rules at their exact boundaries, the plan, the
fixed pipeline, the first signature and candidates, and clear errors for bad features."""

import itertools
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from schemas.records import TaskFeatures
from services.cli.task import task
from services.policy import detect_regime

PLAN = [
    "planner",
    "memory",
    "web_search_primary",
    "web_search_secondary",
    "solver",
    "verifier",
    "evaluator",
]
SOLVERS = [
    f"solver.{p}@{m}"
    for p in ("chain_of_thought", "concise", "evidence_first")
    for m in ("balanced", "fast", "strong")
]


def run(*args: str) -> Result:
    return CliRunner().invoke(task, ["explain", *args], env={"COLUMNS": "200"})


def explain(features: dict[str, Any], *extra: str) -> dict[str, Any]:
    result = run("--features", json.dumps(features), "--json", *extra)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


@pytest.mark.parametrize(
    ("features", "regime", "rule"),
    [
        ({"contradiction_risk": 0.7}, "straightforward", None),
        ({"contradiction_risk": 0.71}, "contradictory", "contradiction_risk 0.71 > 0.7"),
        ({"ambiguity_level": 0.7}, "straightforward", None),
        ({"ambiguity_level": 0.71}, "ambiguous", "ambiguity_level 0.71 > 0.7"),
        (
            {"evidence_availability": 0.71, "verification_need": 0.61},
            "evidence_heavy",
            "evidence_availability 0.71 > 0.7 and verification_need 0.61 > 0.6",
        ),
        ({"evidence_availability": 0.7, "verification_need": 0.61}, "straightforward", None),
        ({"evidence_availability": 0.71, "verification_need": 0.6}, "straightforward", None),
        ({"verification_need": 0.8}, "straightforward", None),
        ({"verification_need": 0.81}, "high_risk", "verification_need 0.81 > 0.8"),
        # First match wins: an earlier rule shadows a later one.
        (
            {"evidence_availability": 0.9, "verification_need": 0.9},
            "evidence_heavy",
            "evidence_availability 0.9 > 0.7 and verification_need 0.9 > 0.6",
        ),
        (
            {"contradiction_risk": 0.71, "ambiguity_level": 1.0},
            "contradictory",
            "contradiction_risk 0.71 > 0.7",
        ),
    ],
)
def test_regime_rules_at_their_boundaries(
    features: dict[str, float], regime: str, rule: str | None
) -> None:
    data = explain(features)
    assert data["regime"] == regime
    assert data["rule"] == rule
    assert data["signature"].startswith(f"v1|{regime}|")


def test_shadowed_rules_are_marked_as_matching() -> None:
    data = explain({"contradiction_risk": 0.9, "verification_need": 0.9})
    matched = [r["regime"] for r in data["rules"] if r["matched"]]
    assert matched == ["contradictory", "high_risk"]
    result = run("--features", '{"contradiction_risk": 0.9, "verification_need": 0.9}')
    assert "fired" in result.output
    assert "yes, but an earlier rule fired" in result.output


def _paper_detector(f: TaskFeatures) -> str:
    # The paper's if-chain written out independently of the rules table.
    if f.contradiction_risk > 0.7:
        return "contradictory"
    if f.ambiguity_level > 0.7:
        return "ambiguous"
    if f.evidence_availability > 0.7 and f.verification_need > 0.6:
        return "evidence_heavy"
    if f.verification_need > 0.8:
        return "high_risk"
    return "straightforward"


def test_the_rules_table_is_the_papers_if_chain() -> None:
    values = (0.0, 0.6, 0.61, 0.7, 0.71, 0.8, 0.81)
    names = ("contradiction_risk", "ambiguity_level", "evidence_availability", "verification_need")
    for combo in itertools.product(values, repeat=len(names)):
        features = TaskFeatures(**dict(zip(names, combo, strict=True)))
        assert detect_regime(features) == _paper_detector(features), combo


def test_plan_pipeline_signature_and_candidates_of_a_fresh_task() -> None:
    data = explain({})
    assert [c["cell"] for c in data["plan"]] == PLAN
    solver = data["plan"][4]
    assert (solver["role"], solver["variants"]) == ("solver", SOLVERS)
    assert data["plan"][5]["variants"] == ["verifier@balanced", "verifier@fast"]
    assert data["fixed_pipeline"] == [
        "planner",
        "memory",
        "web_search_primary",
        "web_search_secondary",
        "solver.chain_of_thought@balanced",
        "verifier@balanced",
        "evaluator",
    ]
    # Beliefs start at correctness 0.1, uncertainty 0.9, contradiction 0.5, evidence 0.1.
    assert data["signature"] == "v1|straightforward|1000000|c1.u9.r5.e1"
    # verifier and evaluator need a draft: not legal yet. Five legal cells, so skips too.
    legal = ["planner", "memory", "web_search_primary", "web_search_secondary"]
    assert data["candidates"] == [*legal, *SOLVERS, *(f"skip:{c}" for c in [*legal, "solver"])]


def test_task_class_is_reported_but_not_folded_by_default() -> None:
    data = explain({"ambiguity_level": 0.9}, "--task-class", "C3")
    assert data["task_class"] == "C3"
    assert data["signature"] == "v1|ambiguous|1000000|c1.u9.r5.e1"
    result = run("--features", '{"ambiguity_level": 0.9}', "--task-class", "C3")
    assert "leaves task_class out" in result.output


def test_features_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "features.json"
    path.write_text('{"verification_need": 0.95}')
    result = run("--features", f"@{path}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["regime"] == "high_risk"


def test_the_text_output_tells_the_story() -> None:
    result = run("--features", '{"contradiction_risk": 0.71}')
    assert result.exit_code == 0, result.output
    out = result.output
    assert "contradictory  (contradiction_risk 0.71 > 0.7)" in out
    assert "solver.evidence_first@strong" in out
    assert "planner → memory → web_search_primary" in out
    assert "initial signature   v1|contradictory|1000000|c1.u9.r5.e1" in out
    assert (
        "agensbus policy explain POLICY_FILE --signature 'v1|contradictory|1000000|c1.u9.r5.e1'"
        in out
    )


def assert_user_error(result: Result, *messages: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for message in messages:
        assert message in result.output


@pytest.mark.parametrize(
    ("features", "messages"),
    [
        ("{ambiguity: 1}", ["--features is not JSON"]),
        ("[0.5]", ["must be a JSON object", "got a list"]),
        (
            '{"ambiguity_level": 1.5, "contradiction_risk": -0.1}',
            [
                "ambiguity_level: Input should be less than or equal to 1",
                "contradiction_risk: Input should be greater than or equal to 0",
            ],
        ),
        ('{"ambiguity": 0.5}', ["ambiguity: Extra inputs are not permitted"]),
        ('{"ambiguity_level": "0.5"}', ["ambiguity_level: Input should be a valid number"]),
        ('{"ambiguity_level": true}', ["ambiguity_level: Input should be a valid number"]),
    ],
)
def test_bad_features_are_rejected_listing_each_problem(features: str, messages: list[str]) -> None:
    assert_user_error(run("--features", features), *messages)


def test_an_unreadable_features_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert_user_error(run("--features", f"@{path}"), f"cannot read --features file {path}")


def test_bad_json_in_a_features_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"ambiguity_level": 2}')
    assert_user_error(run("--features", f"@{path}"), f"--features file {path} is not valid")


def test_a_bad_task_class_is_rejected() -> None:
    assert_user_error(run("--features", "{}", "--task-class", "two words"), "--task-class")


def test_help_explains_every_option_and_its_default() -> None:
    command = task.commands["explain"]
    result = run("--help")
    assert result.exit_code == 0
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert param.help, f"{param.opts} has no help"
        assert param.opts[0] in result.output
        told = param.required or param.show_default or "default" in param.help.lower()
        assert told, f"{param.opts} does not say its default"
