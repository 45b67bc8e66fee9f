"""The dependencies declared in pyproject.toml and the versions the tests run with: the lock
(constraints.txt) is exactly what is installed, the core carries none of the extras, and the
dev extra carries all of them; the installed agensbus has the entry points pyproject.toml
declares."""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from services.cli._extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_tests_run_on_the_versions_constraints_txt_pins() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/constraints.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_core_carries_no_extra_and_dev_carries_every_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    core = {Requirement(line).name.lower() for line in PROJECT["dependencies"]}
    for extra in EXTRAS:
        packages = {Requirement(line).name.lower() for line in extras[extra]}
        assert not core & packages, extra
    (own,) = [r for r in map(Requirement, extras["dev"]) if r.name == PROJECT["name"]]
    assert own.extras == set(extras) - {"dev"}
