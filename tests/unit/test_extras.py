"""The core install works without the optional extras: run where their packages cannot be
imported, every service builds, and each command that needs an extra stops with one line
that names it (exit 2) before it starts anything."""

import importlib.metadata
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.cli._extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]

#: Runs in a fresh interpreter: the extras' top-level modules fail to import, as they do
#: where they are not installed, then the code given after it runs.
WITHOUT_EXTRAS = textwrap.dedent(
    """
    import sys

    BLOCKED = {blocked!r}


    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None


    sys.meta_path.insert(0, NotInstalled())
    """
).format(blocked=sorted(module for modules in EXTRAS.values() for module in modules))


def without_extras(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + textwrap.dedent(code), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_blocker_hides_the_extras_modules() -> None:
    done = without_extras("import matplotlib")
    assert done.returncode == 1 and "No module named 'matplotlib'" in done.stderr


def test_every_service_and_the_cli_build_without_the_extras() -> None:
    done = without_extras(
        """
        import importlib, pkgutil
        import schemas, services.policy, services.runtime, services.sim
        from services.runtime.settings import Settings
        from services.learner import app as learner
        from services.router import app as router
        from services.worker import app as worker
        from services.judge import app as judge
        import services.cli

        for package in (schemas, services.policy, services.runtime, services.sim):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(module.name)
        settings = Settings(kafka_bootstrap="127.0.0.1:9")
        for service in (
            router.build(settings),
            worker.build(settings),
            judge.build(settings),
            learner.build(settings),
        ):
            print(service.name)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["router", "worker", "judge", "learner"]


RUN_CLI = """
from services.cli import main

sys.argv[0] = "agensbus"
main()
"""

#: Command -> the extra it needs. Those that write a report name it ``out``.
COMMANDS: dict[tuple[str, ...], str] = {
    ("demo", "--epochs", "1", "--out", "out"): "reports",
    ("bench", "learning", "--seeds", "1", "--epochs", "1", "--out", "out"): "reports",
    ("worker", "--worker-backend", "openai", "--kafka-bootstrap", "127.0.0.1:9"): "openai",
    (
        "worker",
        "--role",
        "judge",
        "--worker-backend",
        "openai",
        "--kafka-bootstrap",
        "127.0.0.1:9",
    ): "openai",
    ("router", "--otel-endpoint", "http://127.0.0.1:9", "--kafka-bootstrap", "127.0.0.1:9"): (
        "tracing"
    ),
}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_that_needs_an_extra_names_it_in_one_line(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    extra = COMMANDS[command]
    done = without_extras(RUN_CLI, *command, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.endswith(
        f"needs the {extra} extra ({EXTRAS[extra][0]} is not installed): "
        f"pip install 'agensbus[{extra}]'"
    ), line
    assert list(tmp_path.iterdir()) == [], "it stopped before writing anything"


def test_each_extra_module_comes_from_a_package_of_that_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        listed = {canonicalize_name(Requirement(line).name) for line in extras[extra]}
        for module in modules:
            packages = {canonicalize_name(name) for name in distributions[module]}
            assert packages & listed, f"{module} is not from a package of the {extra} extra"
