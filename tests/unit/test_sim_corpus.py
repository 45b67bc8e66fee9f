"""The shipped document corpus: it fits its scenario, its advisories hang together (every
CVSS score recomputed from its vector), the loader explains what is wrong with a bad one,
and the demo's tasks ask its questions without changing a simulated number."""

import dataclasses
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from services.demo.tasks import epoch_submissions
from services.policy.arms import policy_setup
from services.sim.corpus import Corpus, CorpusError, check_against, corpus_for, load_corpus
from services.sim.engine import Engine
from services.sim.loader import load_scenario
from services.sim.scenario import Scenario

SCENARIO = "security-advisories"
ADVISORY_PREFIXES = ("QSA", "BMSA", "TWSB", "CRN-SA", "OSA", "PETREL-SA", "FLSN", "HCSIRT")
_REFERENCE = re.compile(r"\b(?:" + "|".join(ADVISORY_PREFIXES) + r")-\d{4}-\d{2,4}\b")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(SCENARIO)


@pytest.fixture(scope="module")
def corpus(scenario: Scenario) -> Corpus:
    found = corpus_for(scenario)
    assert found is not None
    return found


# --- CVSS v3.1 base score, from the specification's formulas (a check, not a library) ---

_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}


def _round_up(value: float) -> float:
    """The specification's Roundup: the smallest one-decimal number >= value, computed on
    integers so that float noise (e.g. 4.000000001) does not bump it."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (math.floor(scaled / 10_000) + 1) / 10


def cvss31_base(vector: str) -> float:
    metrics = dict(part.split(":") for part in vector.split("/")[1:])
    changed = metrics["S"] == "C"
    privileges = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}
    iss = 1 - math.prod(1 - _CIA[metrics[m]] for m in ("C", "I", "A"))
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = (
        8.22
        * _AV[metrics["AV"]]
        * _AC[metrics["AC"]]
        * privileges[metrics["PR"]]
        * _UI[metrics["UI"]]
    )
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _round_up(min(total, 10.0))


def rating(score: float) -> str:
    for floor, name in ((9.0, "Critical"), (7.0, "High"), (4.0, "Medium"), (0.1, "Low")):
        if score >= floor:
            return name
    return "None"


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
    ],
)
def test_the_cvss_check_reproduces_published_scores(vector: str, score: float) -> None:
    # Well-known vector/score pairs of the CVSS v3.1 specification's calculator.
    assert cvss31_base(vector) == score


# --- the shipped corpus ----------------------------------------------------------------


def test_the_corpus_has_a_question_for_every_task_of_its_scenario(
    scenario: Scenario, corpus: Corpus
) -> None:
    assert corpus.scenario == scenario.name
    for name, task_class in scenario.classes.items():
        questions = [corpus.task(name, i).question for i in range(task_class.count)]
        assert len(set(questions)) == task_class.count, f"{name} repeats a question"
    assert set(corpus.tasks) == set(scenario.classes)


def advisory_fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"^- ([A-Za-z ]+[a-z0-9.]*): (.+)$", text, re.MULTILINE))


def test_every_advisory_is_complete_and_its_score_matches_its_vector(corpus: Corpus) -> None:
    scored = 0
    for document in corpus.documents():
        text = (corpus.documents_dir / f"{document}.md").read_text()
        assert text.startswith(f"# {document}: "), document
        if document.startswith("REF-"):
            continue
        fields = advisory_fields(text)
        assert fields.get("Advisory") == document
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", fields["Published"]), document
        assert re.search(
            r"FVE-20\d\d-\d{5}", fields.get("Identifier", "") + fields.get("Identifiers", "")
        ), document
        if "CVSS v3.1" not in fields:  # distribution notices list packages, not scores
            assert document.startswith("FLSN-"), document
            continue
        match = re.fullmatch(r"(\d+\.\d) \((CVSS:3\.1/[A-Z:/]+)\)", fields["CVSS v3.1"])
        assert match is not None, document
        score = float(match[1])
        assert cvss31_base(match[2]) == score, document
        assert fields["Severity"] == rating(score), document
        assert "Affected versions" in fields and ("Fixed in" in fields or "Not fixed" in fields)
        scored += 1
    assert scored > 0


def test_advisories_cite_only_documents_of_the_corpus(corpus: Corpus) -> None:
    known = set(corpus.documents())
    for document in known:
        text = (corpus.documents_dir / f"{document}.md").read_text()
        cited = set(_REFERENCE.findall(text))
        assert cited <= known, (document, cited - known)


def test_a_scenario_without_a_corpus_has_none() -> None:
    assert corpus_for(load_scenario("distributed-systems")) is None


# --- the loader's errors ---------------------------------------------------------------


@pytest.fixture
def copy(corpus: Corpus, tmp_path: Path) -> Path:
    """A writable copy of the shipped corpus."""
    root = tmp_path / "corpus"
    shutil.copytree(corpus.documents_dir.parent, root)
    return root


def edit(root: Path, change: dict[str, object]) -> None:
    path = root / "tasks.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(change)
    path.write_text(yaml.safe_dump(data))


def test_the_copy_loads(copy: Path, corpus: Corpus) -> None:
    loaded = load_corpus(copy)
    assert loaded.tasks == corpus.tasks and loaded.documents() == corpus.documents()


def test_a_cited_document_must_exist(copy: Path) -> None:
    (copy / "documents" / "QSA-2025-0003.md").unlink()
    with pytest.raises(CorpusError) as error:
        load_corpus(copy)
    message = str(error.value)
    assert str(copy / "tasks.yaml") in message and "no document QSA-2025-0003.md" in message
    assert "classes.C1.0.sources" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"documents": "missing"}, "documents directory"),
        ({"classes": {"C1": [{"question": "q", "answer": "a", "sources": []}]}}, "C1.0.sources"),
        ({"classes": {"C1": [{"question": "q", "answer": "a"}]}}, "C1.0.sources: Field required"),
        ({"oops": 1}, "oops: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_task_file_names_the_problem(
    copy: Path, change: dict[str, object], expected: str
) -> None:
    edit(copy, change)
    with pytest.raises(CorpusError, match=re.escape(expected)):
        load_corpus(copy)


def test_a_task_file_that_is_not_yaml(copy: Path) -> None:
    (copy / "tasks.yaml").write_text("classes: [unclosed\n")
    with pytest.raises(CorpusError, match="is not YAML"):
        load_corpus(copy)


def test_the_corpus_must_fit_the_scenario(copy: Path, scenario: Scenario) -> None:
    data = yaml.safe_load((copy / "tasks.yaml").read_text())
    data["classes"]["C2"] = data["classes"]["C2"][:3]
    data["classes"]["C9"] = data["classes"]["C1"]
    (copy / "tasks.yaml").write_text(yaml.safe_dump(data))
    corpus = load_corpus(copy)
    with pytest.raises(CorpusError) as error:
        check_against(corpus, scenario, copy / "tasks.yaml")
    message = str(error.value)
    assert "classes.C2: 3 questions for the class's 8 tasks" in message
    assert "classes.C9: the scenario has no task class C9" in message
    # A scenario with fewer tasks per class asks the first questions: that fits.
    fewer = dataclasses.replace(
        scenario,
        classes={
            name: dataclasses.replace(c, count=min(c.count, 3))
            for name, c in scenario.classes.items()
            if name != "C9"
        },
    )
    del data["classes"]["C9"]
    (copy / "tasks.yaml").write_text(yaml.safe_dump(data))
    check_against(load_corpus(copy), fewer, copy / "tasks.yaml")


# --- the demo's tasks --------------------------------------------------------------------


def test_the_demo_tasks_ask_the_corpus_questions(scenario: Scenario, corpus: Corpus) -> None:
    plain = epoch_submissions(scenario, 3, 2)
    asked = epoch_submissions(scenario, 3, 2, corpus=corpus)
    assert [e.task_id for e in asked] == [e.task_id for e in plain]
    for event, before in zip(asked, plain, strict=True):
        assert event.model_dump(exclude={"goal", "produced_at"}) == before.model_dump(
            exclude={"goal", "produced_at"}
        )
        assert before.goal == scenario.classes[before.task_class or ""].description
        index = int(event.task_id.rsplit("-", 1)[1])
        assert event.goal == corpus.task(event.task_class or "", index).question
    first = epoch_submissions(scenario, 3, 2, corpus=corpus, per_class=1)
    assert [e.task_id for e in first] == [e.task_id for e in asked if e.task_id.endswith("-0000")]
    assert sorted(e.task_class or "" for e in first) == sorted(scenario.classes)


def test_the_simulated_world_never_reads_the_question(scenario: Scenario, corpus: Corpus) -> None:
    """Every class asking a corpus question instead of its description: the same numbers."""
    asking = dataclasses.replace(
        scenario,
        classes={
            name: dataclasses.replace(c, description=corpus.task(name, 0).question)
            for name, c in scenario.classes.items()
        },
    )
    reports = [Engine(s, policy_setup(s, "paper"), seed=0).run(2) for s in (scenario, asking)]
    assert reports[0] == reports[1]
