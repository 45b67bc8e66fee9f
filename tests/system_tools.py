"""The programs the tests drive besides Python: scripts/system-tools.txt names each with its
Debian package, and scripts/setup.sh installs them. A missing one fails the test that needs
it and says how to install it: a skipped test would count a check that never ran."""

import shutil
from pathlib import Path

import pytest

TABLE = Path(__file__).resolve().parents[1] / "scripts" / "system-tools.txt"


def debian_packages() -> dict[str, str]:
    """Command -> the Debian package that has it."""
    rows = [line.split() for line in TABLE.read_text().splitlines()]
    return {row[0]: row[1] for row in rows if row and not row[0].startswith("#")}


def system_tool(name: str) -> str:
    """The path of the program ``name``; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: bash scripts/setup.sh installs it "
            f"(Debian package {debian_packages()[name]})",
            pytrace=False,
        )
    return path
