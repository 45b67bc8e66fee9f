"""The documented policy file: the complete example in docs/policy-format.md, which the
tests load and feed to the CLI so that the documentation cannot drift from the code."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-format.md"


def doc_example() -> str:
    """The JSON block under 'A complete example' in docs/policy-format.md."""
    section = DOC.read_text(encoding="utf-8").split("## A complete example", 1)[1]
    match = re.search(r"```json\n(.*?)```", section, re.S)
    assert match is not None, "docs/policy-format.md lost its example"
    return match.group(1)
