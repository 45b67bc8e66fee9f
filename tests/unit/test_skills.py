"""Skill cards: parsing, every kind of bad card (the message names the file and the
problem), user cards adding to and replacing shipped ones, the shipped set, and the
``agensbus skills`` commands."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.records import Role
from services.cli import cli
from services.policy import Cell, Variant, make_pool
from services.skills import SkillError, Skills, load_skills, output_of, parse_card, read_cards
from services.skills.load import SHIPPED_DIR
from tests.unit.support_skills import card_text, write_card

GOOD = """---
name: solver-terse
description: Answers in one line.
role: solver
protocol: terse
output: solver_output
---
Answer in one line.
"""


def test_a_card_parses_into_its_fields_and_body() -> None:
    card = parse_card(GOOD, "x/SKILL.md")
    assert (card.name, card.role, card.protocol, card.output) == (
        "solver-terse",
        Role.SOLVER,
        "terse",
        "solver_output",
    )
    assert card.body == "Answer in one line."
    assert card.key == (Role.SOLVER, "terse")
    assert card.source == "x/SKILL.md"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Just instructions.\n", "no front matter"),
        ("---\nname: planner\n", "not closed"),
        ("---\nname: [planner\n---\nbody\n", "not valid YAML at line 2"),
        ("---\n- a list\n---\nbody\n", "must be a mapping"),
        (card_text(colour="blue"), "unknown field(s) colour"),
        (card_text(description=None), "missing field(s) description"),
        (card_text(role="oracle"), "unknown role 'oracle'"),
        (card_text(body="   "), "body (the instructions after the front matter) is empty"),
        (card_text(output="critic_output"), "'critic_output' does not match role planner"),
        (card_text(output="plan"), "'plan' is not an output schema; role planner"),
        (card_text(name="'Big Name'"), "name 'Big Name' must be lowercase"),
        (card_text(protocol="a.b"), "protocol 'a.b' must be lowercase"),
        (card_text(description="''"), "field description must be a non-empty string"),
    ],
)
def test_a_bad_card_names_the_file_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(SkillError) as raised:
        parse_card(text, "cards/bad/SKILL.md")
    message = str(raised.value)
    assert message.startswith("skill card cards/bad/SKILL.md: ")
    assert problem in message
    assert "\n" not in message  # one line for the CLI and the worker's start


def test_every_role_and_paper_protocol_has_a_shipped_card() -> None:
    skills = load_skills()
    for role in Role:
        card = skills.card(role)
        assert card.output == output_of(role) and len(card.body) > 200, card.name
    for protocol in ("concise", "chain_of_thought", "evidence_first"):
        assert skills.card(Role.SOLVER, protocol).source.startswith(str(SHIPPED_DIR))
    # One card per role and per protocol, nothing else.
    assert len(skills.cards) == len(Role) + 3


def test_user_cards_add_protocols_and_replace_shipped_cards_by_name(tmp_path: Path) -> None:
    write_card(tmp_path, "terse", GOOD)
    replaced = write_card(
        tmp_path,
        "critic",
        card_text("Be harsh.", name="critic", role="critic", output="critic_output"),
    )
    skills = load_skills(tmp_path)
    assert skills.card(Role.SOLVER, "terse").body == "Answer in one line."
    critic = skills.card(Role.CRITIC)
    assert (critic.body, critic.source) == ("Be harsh.", str(replaced))
    assert skills.instructions(Role.SOLVER, "terse") == [
        skills.card(Role.SOLVER).body,
        "Answer in one line.",
    ]
    # The shipped set is untouched for the next reader.
    assert load_skills().card(Role.CRITIC).body != "Be harsh."


def test_duplicate_names_in_one_directory_are_an_error(tmp_path: Path) -> None:
    first = write_card(tmp_path, "a", GOOD)
    second = write_card(tmp_path, "b", GOOD)
    with pytest.raises(SkillError) as raised:
        load_skills(tmp_path)
    assert str(raised.value) == (
        f"skill card {second}: duplicate name 'solver-terse', also in {first}"
    )


def test_a_second_card_for_the_same_protocol_must_take_the_shipped_name(tmp_path: Path) -> None:
    path = write_card(
        tmp_path,
        "mine",
        card_text(
            "Short.", name="my-concise", role="solver", protocol="concise", output="solver_output"
        ),
    )
    with pytest.raises(SkillError) as raised:
        load_skills(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"skill card {path}: card 'my-concise' instructs protocol concise")
    assert "give it the name 'solver-concise' to replace it" in message


def test_replacing_a_role_card_with_a_protocol_card_leaves_the_role_without_one(
    tmp_path: Path,
) -> None:
    path = write_card(
        tmp_path,
        "memory",
        card_text("Recall.", name="memory", role="memory", protocol="deep", output="memory_output"),
    )
    with pytest.raises(SkillError) as raised:
        load_skills(tmp_path)
    assert str(raised.value).startswith(f"skill card {path}: no card left for role memory")


def test_a_directory_without_cards_or_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match=r"holds no SKILL\.md file"):
        read_cards(tmp_path)
    with pytest.raises(SkillError, match="does not exist"):
        read_cards(tmp_path / "nope")


def test_a_pool_protocol_without_a_card_is_an_error() -> None:
    solver = Cell(
        "solver", Role.SOLVER, (Variant("solver", "concise"), Variant("solver", "socratic"))
    )
    pool = make_pool([solver], ["solver"])
    with pytest.raises(SkillError) as raised:
        load_skills().check(pool)
    assert str(raised.value).startswith("skill cards: no card for protocol socratic of role solver")
    load_skills().check(
        make_pool([Cell("solver", Role.SOLVER, (Variant("solver", "concise"),))], ["solver"])
    )


def test_merging_needs_every_role() -> None:
    only = [parse_card(card_text(), "p/SKILL.md")]
    with pytest.raises(SkillError, match="no card left for role memory"):
        Skills.merged(only)


# --- the CLI -------------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["skills", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_skills_list_shows_shipped_and_user_cards(tmp_path: Path) -> None:
    code, out = invoke("list")
    assert code == 0
    assert "solver-evidence-first" in out and "solver.evidence_first" in out
    assert "shipped" in out
    path = write_card(tmp_path, "terse", GOOD)
    code, out = invoke("list", "--skills-dir", str(tmp_path))
    assert code == 0 and "solver.terse" in out and str(path) in out


def test_skills_show_prints_the_card() -> None:
    code, out = invoke("show", "verifier")
    assert code == 0
    assert "role: verifier" in out and "output: verifier_output" in out
    assert load_skills().card(Role.VERIFIER).body in out
    code, out = invoke("show", "oracle")
    assert code == 2 and "no skill card named 'oracle'" in out


def test_skills_validate_reports_counts_or_the_bad_file(tmp_path: Path) -> None:
    code, out = invoke("validate")
    assert (code, out.strip()) == (
        0,
        f"{len(Role) + 3} skill cards valid ({len(Role) + 3} shipped)",
    )
    write_card(tmp_path, "terse", GOOD)
    code, out = invoke("validate", "--skills-dir", str(tmp_path))
    assert code == 0 and f"1 from {tmp_path}" in out
    bad = write_card(tmp_path, "bad", card_text(role="oracle"))
    result = CliRunner().invoke(
        cli, ["skills", "validate"], env={"AGENSBUS_SKILLS_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert f"skill card {bad}: unknown role 'oracle'" in result.output
    assert "Traceback" not in result.output
