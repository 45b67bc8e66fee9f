"""Finding and reading scenario files: a shipped name (``security-advisories``) or a path."""

from pathlib import Path

from services.sim.scenario import Scenario, ScenarioError, build_scenario
from services.sim.spec import ScenarioSpec
from services.spec_files import SpecLibrary, parse_spec

__all__ = ["ScenarioError", "load_scenario", "parse_scenario", "shipped_scenarios"]

_LIBRARY = SpecLibrary("services.sim", "scenarios", ScenarioError)


def shipped_scenarios() -> tuple[str, ...]:
    return _LIBRARY.names()


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name, or a scenario file by path."""
    text, source = _LIBRARY.locate(name_or_path)
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str) -> Scenario:
    """Parse and validate scenario YAML; ``source`` names it in every problem line, and a
    pipeline path in it starts at ``source``'s directory."""
    return parse_spec(
        text, source, ScenarioSpec, lambda spec: build_scenario(spec, source), ScenarioError
    )
