"""Document corpora shipped with scenarios: the documents real cells retrieve from, and the
question each task of the scenario asks.

A corpus lives in ``services/sim/corpora/<scenario name>/``: a ``tasks.yaml`` naming its
documents directory and listing, per task class, one question (with a reference answer
for humans and the documents that hold it) per task index. Task ``e001-C3-0002`` asks the
third question of class C3, in every epoch. The simulated backend never reads the text, so
a corpus changes no simulated number; it gives real models something to answer.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas._types import Name, Text
from services.sim.scenario import Scenario

_SHIPPED = resources.files("services.sim") / "corpora"
TASKS_FILE = "tasks.yaml"
#: Documents are Markdown files; a document's id is its file name without ``.md``.
DOCUMENT_SUFFIX = ".md"

DocumentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class CorpusError(ValueError):
    """A corpus that cannot be used; the message names the file and each problem."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusTask(_Spec):
    question: Text = Field(min_length=1)
    answer: str = Field(min_length=1)
    sources: tuple[DocumentId, ...] = Field(min_length=1)


class _TasksFile(_Spec):
    scenario: Name
    documents: str = Field(min_length=1)
    classes: dict[Name, tuple[CorpusTask, ...]] = Field(min_length=1)


@dataclass(frozen=True)
class Corpus:
    """``documents_dir`` holds the documents (what ``AGENSBUS_DOCUMENTS_DIR`` names for the
    real cells); ``tasks`` the questions per task class, by task index."""

    scenario: str
    documents_dir: Path
    tasks: Mapping[str, tuple[CorpusTask, ...]]

    def task(self, task_class: str, index: int) -> CorpusTask:
        return self.tasks[task_class][index]

    def documents(self) -> tuple[str, ...]:
        return document_ids(self.documents_dir)


def document_ids(directory: Path) -> tuple[str, ...]:
    return tuple(
        sorted(p.stem for p in directory.iterdir() if p.suffix == DOCUMENT_SUFFIX and p.is_file())
    )


def corpus_for(scenario: Scenario) -> Corpus | None:
    """The shipped corpus of ``scenario`` (by its name), checked against its task classes;
    None when no corpus ships for it."""
    root = _SHIPPED / scenario.name
    if not root.is_dir():
        return None
    # Shipped package data are plain files (the package is never imported from a zip), and
    # the cells need a real directory to index.
    corpus = load_corpus(Path(str(root)))
    check_against(corpus, scenario, Path(str(root)) / TASKS_FILE)
    return corpus


def load_corpus(root: Path) -> Corpus:
    """Read and check ``root/tasks.yaml`` and its documents directory."""
    path = root / TASKS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"cannot read corpus file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise CorpusError(f"{path} is not YAML: {' '.join(str(error).split())}") from None
    try:
        spec = _TasksFile.model_validate(data)
    except ValidationError as error:
        lines = "\n".join(
            f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in error.errors()
        )
        raise CorpusError(f"{path} is not a valid corpus task file:\n{lines}") from None
    documents_dir = (root / spec.documents).resolve()
    if not documents_dir.is_dir():
        raise CorpusError(f"{path}: documents directory {documents_dir} does not exist")
    known = set(document_ids(documents_dir))
    if not known:
        raise CorpusError(f"{path}: documents directory {documents_dir} holds no *.md files")
    problems = [
        f"  classes.{name}.{index}.sources: no document {source}{DOCUMENT_SUFFIX} "
        f"in {documents_dir}"
        for name, tasks in spec.classes.items()
        for index, task in enumerate(tasks)
        for source in task.sources
        if source not in known
    ]
    if problems:
        raise CorpusError(f"{path} cites missing documents:\n" + "\n".join(problems))
    return Corpus(spec.scenario, documents_dir, spec.classes)


def check_against(corpus: Corpus, scenario: Scenario, source: Path) -> None:
    """Every task of every epoch of ``scenario`` has its question (a scenario with fewer
    tasks per class asks each class's first questions), and every class is the scenario's."""
    problems = []
    if corpus.scenario != scenario.name:
        problems.append(f"  scenario: {corpus.scenario!r}, not {scenario.name!r}")
    for name, task_class in scenario.classes.items():
        have = len(corpus.tasks.get(name, ()))
        if have < task_class.count:
            problems.append(
                f"  classes.{name}: {have} questions for the class's {task_class.count} tasks"
            )
    problems += [
        f"  classes.{name}: the scenario has no task class {name}"
        for name in corpus.tasks
        if name not in scenario.classes
    ]
    if problems:
        raise CorpusError(
            f"{source} does not fit scenario {scenario.name}:\n" + "\n".join(problems)
        )
