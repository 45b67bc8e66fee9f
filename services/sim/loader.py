"""Finding and reading scenario files: a shipped name (``security-advisories``) or a path."""

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from services.sim.scenario import Scenario, ScenarioProblems, build_scenario
from services.sim.spec import ScenarioSpec

_SHIPPED = resources.files("services.sim") / "scenarios"
_SUFFIXES = (".yaml", ".yml")


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and each problem."""


def shipped_scenarios() -> tuple[str, ...]:
    return tuple(
        sorted(
            entry.name.rsplit(".", 1)[0]
            for entry in _SHIPPED.iterdir()
            if entry.name.endswith(_SUFFIXES)
        )
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.is_file():
        return parse_scenario(_read(path), str(path))
    name = str(name_or_path)
    if name in shipped_scenarios():
        shipped = _SHIPPED / f"{name}.yaml"
        return parse_scenario(shipped.read_text(encoding="utf-8"), name)
    if path.suffix in _SUFFIXES or len(path.parts) > 1:
        raise ScenarioError(f"scenario file {path} does not exist")
    known = ", ".join(shipped_scenarios())
    raise ScenarioError(
        f"unknown scenario {name!r}; shipped scenarios: {known} (or give a path to a .yaml file)"
    )


def parse_scenario(text: str, source: str) -> Scenario:
    """Parse and validate scenario YAML; ``source`` names it in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{source} is not YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source} must hold a mapping of scenario fields at the top level")
    try:
        spec = ScenarioSpec.model_validate(data)
        return build_scenario(spec, source)
    except ValidationError as error:
        problems = [
            (".".join(str(p) for p in e["loc"]) or "(top level)", e["msg"]) for e in error.errors()
        ]
    except ScenarioProblems as error:
        problems = error.problems
    lines = "\n".join(f"  {loc}: {message}" for loc, message in problems)
    raise ScenarioError(f"{source} is not a valid scenario:\n{lines}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read scenario file {path}: {error}") from None
