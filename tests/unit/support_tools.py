"""A small corpus for the tool cells: security advisories and notes written into a documents
directory (with a file the reader must skip), its passage index, and a SearxNG answer."""

from pathlib import Path
from typing import Any

from services.worker.openai.testing import Reply
from services.worker.tools.documents import read_documents
from services.worker.tools.retrieval import PassageIndex

ADVISORIES = {
    "vendors/acme/ACME-2025-01.md": """# ACME-2025-01: Heap overflow in the Acme image decoder

Affected versions: Acme Viewer 3.0 through 3.4.2. Fixed in 3.4.3.

CVSS 3.1 base score 8.8 (AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H).

## Mitigation

Disable thumbnail previews until the update is installed.
""",
    "vendors/zen/ZEN-7.md": """# ZEN-7: Session fixation in Zen Portal

Zen Portal 2.x accepts a session identifier chosen by the client before login.

## Mitigation

Upgrade to Zen Portal 2.9, which rotates the session identifier at login.
""",
    "notes/glossary.txt": """Glossary

Session fixation: an attacker makes the victim use a session id the attacker knows.

Heap overflow: a write past the end of a buffer allocated on the heap.
""",
    "notes/ignored.json": '{"not": "a document"}',
}


def corpus(directory: Path, documents: dict[str, str] = ADVISORIES) -> Path:
    for name, text in documents.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def index_of(directory: Path) -> PassageIndex:
    passages, documents = read_documents(directory)
    return PassageIndex(passages, documents, str(directory))


def searxng_answer(*results: dict[str, Any]) -> Reply:
    return Reply(body={"query": "q", "number_of_results": len(results), "results": list(results)})
