"""A document directory as passages: the unit the memory cell retrieves and cites.

Splitting is pure: paragraphs (blank-line separated) are packed into passages of at most
``PASSAGE_CHARS``; a Markdown heading starts a new passage, and a paragraph too long for
one is cut between words. Reading the directory is the small I/O edge beside it.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PASSAGE_CHARS = 1200
SUFFIXES = (".md", ".txt")


class ToolConfigError(ValueError):
    """A tool's configuration cannot work (a documents_dir without documents, a search
    provider without its URL); the worker does not start."""


@dataclass(frozen=True, slots=True)
class Passage:
    #: The document's path relative to the documents directory, as evidence cites it.
    source: str
    text: str
    #: The document's title (its first heading or line), indexed with every passage so
    #: that a passage deep in a document is still found by what the document is about.
    title: str = ""

    @property
    def indexed(self) -> str:
        return f"{self.source} {self.title}\n{self.text}"

    @property
    def evidence(self) -> str:
        return f"[{self.source}] {self.text}"


def split_passages(text: str, max_chars: int = PASSAGE_CHARS) -> list[str]:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    pieces = [piece for block in blocks for piece in _pieces(block, max_chars)]
    return _packed(pieces, "\n\n", max_chars, starts_anew=lambda piece: piece.startswith("#"))


def title_of(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.lstrip("#").strip()


def document_passages(source: str, text: str, max_chars: int = PASSAGE_CHARS) -> list[Passage]:
    title = title_of(text)
    return [Passage(source, piece, title) for piece in split_passages(text, max_chars)]


def _pieces(block: str, max_chars: int) -> list[str]:
    if len(block) <= max_chars:
        return [block]
    return _packed(block.split(), " ", max_chars)


def _packed(
    items: list[str],
    separator: str,
    max_chars: int,
    starts_anew: Callable[[str], bool] = lambda _: False,
) -> list[str]:
    """``items`` joined by ``separator`` into runs of at most ``max_chars`` (an item longer
    than that stands alone); an item for which ``starts_anew`` holds begins a new run."""
    runs: list[str] = []
    current = ""
    for item in items:
        if current and (starts_anew(item) or len(current) + len(separator) + len(item) > max_chars):
            runs.append(current)
            current = item
        else:
            current = f"{current}{separator}{item}" if current else item
    if current:
        runs.append(current)
    return runs


def read_documents(directory: Path) -> tuple[list[Passage], int]:
    """The passages of every *.md and *.txt file under ``directory`` (recursively, in path
    order) and how many documents they came from; raises :class:`ToolConfigError`."""
    where = f"documents_dir {directory}"
    if not directory.is_dir():
        raise ToolConfigError(f"{where}: no such directory")
    passages: list[Passage] = []
    documents = 0
    for path in sorted(p for p in directory.rglob("*") if p.suffix.lower() in SUFFIXES):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise ToolConfigError(f"{where}: cannot read {path} ({error.strerror})") from None
        found = document_passages(path.relative_to(directory).as_posix(), text)
        if found:
            documents += 1
            passages.extend(found)
    if not passages:
        raise ToolConfigError(
            f"{where}: holds no documents (non-empty {' or '.join('*' + s for s in SUFFIXES)} "
            "files, searched recursively)"
        )
    return passages, documents
