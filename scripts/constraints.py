"""Write constraints.txt: every package agensbus[dev] pulls in, pinned at the version installed
here, where the tests pass. ``--check`` only compares, and exits 1 naming what differs; it
also fails when the installed agensbus lacks an entry point pyproject.toml declares.

Run it after a change to the dependencies in pyproject.toml, once the tests pass:

    python3 scripts/constraints.py
"""

import argparse
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
#: What the lock covers: the core, and through it every extra.
EXTRA = "dev"

HEADER = """\
# The versions the tests pass with: every package agensbus[dev] pulls in. Written by
# `python3 scripts/constraints.py` (see there); scripts/setup.sh and infra/Dockerfile install
# with `-c constraints.txt`, which pins what is installed and adds nothing else.
"""


def project_requirements(extra: str) -> list[Requirement]:
    """The core requirements and those of ``extra``, with the project's references to its
    own extras (``agensbus[reports]``) expanded."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    name = canonicalize_name(project["name"])
    extras: dict[str, list[str]] = project["optional-dependencies"]
    found: list[Requirement] = []
    pending = [*project["dependencies"], *extras[extra]]
    while pending:
        requirement = Requirement(pending.pop())
        if canonicalize_name(requirement.name) == name:
            pending.extend(line for wanted in requirement.extras for line in extras[wanted])
        elif requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(requirement)
    return found


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution the roots need here."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = list(roots)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"constraints: {requirement} is not installed; run bash scripts/setup.sh")
        versions[name] = distribution.version
        for line in distribution.requires or []:
            needed = Requirement(line)
            wanted = [{"extra": extra} for extra in ["", *requirement.extras]]
            if needed.marker is None or any(needed.marker.evaluate(env) for env in wanted):
                pending.append(needed)
    return versions


def stale_entry_points() -> list[str]:
    """The entry points (console scripts included) pyproject.toml declares that the installed
    agensbus does not have as declared: an install made from an older checkout, whose
    services would not find their own backends."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    declared = {
        (group, name, value)
        for group, table in [
            ("console_scripts", project.get("scripts", {})),
            *project.get("entry-points", {}).items(),
        ]
        for name, value in table.items()
    }
    try:
        installed = metadata.distribution(project["name"]).entry_points
    except metadata.PackageNotFoundError:
        return sorted(f"{group}:{name}" for group, name, _ in declared)
    have = {(e.group, e.name, e.value) for e in installed}
    return sorted(f"{group}:{name}" for group, name, value in declared - have)


def render(versions: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={versions[name]}\n" for name in sorted(versions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    wanted = render(closure(project_requirements(EXTRA)))
    if not parser.parse_args().check:
        CONSTRAINTS.write_text(wanted)
        return
    stale = stale_entry_points()
    if stale:
        sys.exit(
            f"the installed agensbus lacks entry points of pyproject.toml ({', '.join(stale)}): "
            "run bash scripts/setup.sh"
        )
    have = CONSTRAINTS.read_text() if CONSTRAINTS.exists() else ""
    if have != wanted:
        diff = sorted(set(wanted.splitlines()) ^ set(have.splitlines()))
        sys.exit(
            "constraints.txt is not the installed closure of agensbus[dev] "
            f"(differs in {', '.join(diff)}): run bash scripts/setup.sh, or after changing "
            "the dependencies, python3 scripts/constraints.py"
        )


if __name__ == "__main__":
    main()
