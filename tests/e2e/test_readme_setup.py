"""The README's two commands, from a fresh clone: its set-up line and its test line are the
ones .ci/run runs (with the checks between them), and the set-up run again on a machine it
has set up (CI has, before these tests) is a no-op that exits 0."""

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What .ci/run runs between the set-up and the tests, in this order.
CHECKS = [
    "ruff check services schemas tests scripts",
    "mypy",
    "python3 -m schemas.generate --check",
]


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed tree only, as a new user gets it."""
    target = tmp_path_factory.mktemp("fresh") / "agensbus"
    git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target), cwd=ROOT)
    return target


def readme_commands(readme: str) -> list[str]:
    """The commands of the README's "Set up and test" block, without their comments."""
    section = readme.split("## Set up and test", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def ci_commands(script: str) -> list[str]:
    """What .ci/run runs, past its shell options and the change to the repository root."""
    lines = [line.strip() for line in script.splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    preamble = ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    assert commands[:2] == preamble
    return commands[2:]


def test_readme_parsers_read_the_commands_only() -> None:
    readme = "x\n## Set up and test\n\n```bash\na b   # set up\n\nc  # test\n```\n## y\n"
    assert readme_commands(readme) == ["a b", "c"]
    script = '#!/bin/sh\n# hi\nset -euo pipefail\ncd "$(dirname "$0")/.."\n\na\n# b\nc\n'
    assert ci_commands(script) == ["a", "c"]


def test_ci_runs_the_readme_set_up_then_the_checks_then_the_readme_tests(clone: Path) -> None:
    set_up, tests = readme_commands((clone / "README.md").read_text())
    assert set_up == "bash scripts/setup.sh"
    assert tests == "python3 -m pytest -q"
    assert ci_commands((clone / ".ci" / "run").read_text()) == [set_up, *CHECKS, tests]


def stub(directory: Path, name: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho 'the set-up ran {name} again' >&2\nexit 97\n")
    path.chmod(0o755)


def editable_target() -> str | None:
    return importlib.metadata.distribution("agensbus").read_text("direct_url.json")


def test_the_readme_set_up_run_again_in_a_fresh_clone_does_nothing(
    clone: Path, tmp_path: Path
) -> None:
    # Anything it would install fails here: apt-get and sudo are stubs that exit 97, and pip
    # has no index to build or fetch from.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("apt-get", "sudo"):
        stub(stubs, name)
    (tmp_path / "no-wheels").mkdir()
    env = {
        **os.environ,
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path / "no-wheels"),
        # The clone's code is what Python imports (the editable install points at the
        # checkout CI set up, not at this clone).
        "PYTHONPATH": str(clone),
    }
    (set_up, _) = readme_commands((clone / "README.md").read_text())
    before = editable_target()
    done = subprocess.run(
        ["bash", "-c", set_up], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "setup: system tools: all found",
        "setup: Python packages: installed as constraints.txt pins them",
        "setup: Kafka jars: in place",
        "setup: done; run the tests with: python3 -m pytest -q",
    ], done.stdout + done.stderr
    assert editable_target() == before
    assert git("status", "--porcelain", cwd=clone) == ""


def test_the_clone_links_to_no_file_outside_it(clone: Path) -> None:
    # A new user has the clone only: every relative link of its Markdown must land inside.
    broken = []
    for page in [clone / "README.md", *sorted((clone / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(clone.resolve()) or not resolved.exists():
                broken.append(f"{page.relative_to(clone)}: {target}")
    assert broken == []
