"""Reading and writing policy files (``agensbus.policy/3``; ``/1`` and ``/2`` files read as ``/3``).
Never pickle: a policy is plain JSON."""

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from schemas.policy_file import POLICY_FORMAT, READABLE_FORMATS, PolicyDocument
from services.policy.graph import PolicyGraph


class PolicyFileError(ValueError):
    """A policy file that cannot be used; the message names the file and the problem."""


def load_graph(path: str | Path) -> tuple[PolicyDocument, PolicyGraph]:
    """Read and validate a policy file (every node signature must parse and match the
    file's fold) and build its graph."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise PolicyFileError(f"cannot read policy file {source}: {error.strerror}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PolicyFileError(f"{source} is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PolicyFileError(
            f"{source} is not an {POLICY_FORMAT} document, nor an earlier one it reads "
            f"({', '.join(READABLE_FORMATS[:-1])}) (format: {found!r})"
        )
    try:
        document = PolicyDocument.model_validate(data)
        graph = PolicyGraph.from_document(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        raise PolicyFileError(f"{source} is not a valid policy: {problems}") from None
    except ValueError as error:
        raise PolicyFileError(f"{source} is not a valid policy: {error}") from None
    return document, graph


def load_policy(path: str | Path) -> PolicyDocument:
    return load_graph(path)[0]


def save_policy(path: str | Path, document: PolicyDocument) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a policy."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = document.model_dump_json(indent=2)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
