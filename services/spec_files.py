"""The project's YAML spec files (pipelines, scenarios): a shipped name or a path, parsed and
validated with every problem reported at once, one line each, as ``file: location: message``.

Shared by the pipeline and scenario loaders so that both read files, name shipped ones and
word their problems the same way.
"""

from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

SUFFIXES = (".yaml", ".yml")


class SpecProblems(ValueError):
    """Everything wrong with a spec that validated field by field, as (location, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        self.problems = problems


class Problems:
    """Collects (location, message) pairs while a spec is built, each once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, loc: str, message: str) -> None:
        if (loc, message) not in self.items:
            self.items.append((loc, message))

    def extend(self, prefix: str, problems: list[tuple[str, str]]) -> None:
        for loc, message in problems:
            self.add(f"{prefix}.{loc}" if prefix else loc, message)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecProblems(self.items)


class SpecFileError(ValueError):
    """A spec file that cannot be used. The message is one line per problem, each naming the
    file; ``kind`` ("pipeline", "scenario") words the messages of the loaders."""

    kind = "spec"
    #: Whether the message lists problems inside the file (else: the file itself is amiss).
    listed = False

    @classmethod
    def listing(cls, source: str, problems: list[tuple[str, str]]) -> "SpecFileError":
        error = cls("\n".join(f"{source}: {loc}: {message}" for loc, message in problems))
        error.listed = True
        return error


E = TypeVar("E", bound=SpecFileError)


def validation_problems(error: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]) or "(top level)", e["msg"]) for e in error.errors()]


def parse_spec(
    text: str, source: str, model: type[M], build: Callable[[M], T], error: type[E]
) -> T:
    """Parse ``text`` as YAML, validate it as ``model`` and ``build`` it; raises ``error``
    listing every problem (``build`` reports its own by raising :class:`SpecProblems`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as yaml_error:
        mark = getattr(yaml_error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        reason = getattr(yaml_error, "problem", None) or str(yaml_error)
        raise error.listing(source, [(where, f"not YAML: {' '.join(reason.split())}")]) from None
    if not isinstance(data, dict):
        raise error.listing(
            source, [("(top level)", f"must hold a mapping of {error.kind} fields")]
        )
    try:
        return build(model.model_validate(data))
    except ValidationError as invalid:
        problems = validation_problems(invalid)
    except SpecProblems as inconsistent:
        problems = inconsistent.problems
    raise error.listing(source, problems) from None


class SpecLibrary:
    """Where the shipped spec files of one kind live, and how a name or a path is found."""

    def __init__(self, package: str, directory: str, error: type[SpecFileError]) -> None:
        self.root: Traversable = resources.files(package) / directory
        self.error = error

    def names(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                entry.name.rsplit(".", 1)[0]
                for entry in self.root.iterdir()
                if entry.name.endswith(SUFFIXES)
            )
        )

    def locate(self, name_or_path: str | Path, relative_to: Path | None = None) -> tuple[str, str]:
        """The text and source name of a shipped file (a bare name) or a file (anything
        with a suffix or a directory part; relative paths start at ``relative_to``)."""
        kind = self.error.kind
        text = str(name_or_path)
        path = Path(name_or_path)
        if path.suffix in SUFFIXES or len(path.parts) > 1:
            if relative_to is not None and not path.is_absolute():
                path = relative_to / path
            if not path.is_file():
                raise self.error(f"{kind} file {path} does not exist")
            return read_text(path, self.error), str(path)
        if text in self.names():
            return (self.root / f"{text}.yaml").read_text(encoding="utf-8"), text
        if path.is_file():
            return read_text(path, self.error), str(path)
        known = ", ".join(self.names())
        raise self.error(
            f"unknown {kind} {text!r}; shipped {kind}s: {known} (or give a path to a .yaml file)"
        )


def read_text(path: Path, error: type[SpecFileError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"cannot read {error.kind} file {path}: {problem}") from None
