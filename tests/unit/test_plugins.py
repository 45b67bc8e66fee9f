"""Backends and judge scorers are entry points: the built-in ones are registered like any
package's, a third-party backend installed as a real distribution is found and run, and a
name nobody installed is one clear line listing those that are."""

import asyncio
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli._errors import UserError
from services.cli._settings import with_pipeline
from services.pipeline import load_pipeline
from services.runtime.plugins import BACKENDS, JUDGES, PluginConfigError, plugin_names
from services.runtime.settings import Settings
from services.sim.backend import SimulatedBackend
from services.worker.backend import make_backend
from tests.unit.support_decisions import first_decision
from tests.unit.support_judge import SCENARIO

ECHO_BACKEND = '''
from services.policy import StepResult
from services.policy.outcomes import Execution


class EchoBackend:
    """Every step succeeds and spends one token per character of the variant's id."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    async def execute(self, state, variant):
        size = len(variant.action)
        return Execution(StepResult(succeeded=True), size, size, 0.0, 1, None)

    async def start(self):
        pass

    async def stop(self):
        pass

    def readiness(self):
        return True, f"echo backend over {self.pipeline.name}"


def echo_backend(settings, pipeline):
    return EchoBackend(pipeline)
'''


@pytest.fixture
def echo_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution ``agensbus-echo`` installed the way pip would: its module and a
    dist-info directory whose entry_points.txt registers an ``echo`` backend."""
    (tmp_path / "agensbus_echo.py").write_text(ECHO_BACKEND)
    info = tmp_path / "agensbus_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agensbus-echo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
            [{BACKENDS}]
            echo = agensbus_echo:echo_backend
            broken = agensbus_echo:no_such_factory
            """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_built_in_backends_and_scorers_are_entry_points() -> None:
    assert {"simulated", "openai"} <= set(plugin_names(BACKENDS))
    assert {"simulated", "openai"} <= set(plugin_names(JUDGES))
    backend = make_backend(Settings(), load_pipeline("paper"))
    assert isinstance(backend, SimulatedBackend)


@pytest.mark.usefixtures("echo_installed")
def test_a_third_party_backend_is_found_and_runs() -> None:
    settings = Settings(worker_backend="echo")
    backend = make_backend(settings, SCENARIO.pipeline)
    decision = first_decision(SCENARIO, "t-echo", "C1")
    execution = asyncio.run(backend.execute(decision.state, SCENARIO.pool.variant(decision.action)))
    assert execution.result.succeeded
    assert execution.tokens_in == len(decision.action)
    assert backend.readiness() == (True, "echo backend over paper")


@pytest.mark.usefixtures("echo_installed")
def test_an_entry_point_that_does_not_load_is_a_clear_error() -> None:
    with pytest.raises(PluginConfigError, match=r"worker backend 'broken' \(agensbus_echo"):
        make_backend(Settings(worker_backend="broken"), SCENARIO.pipeline)


def test_an_unknown_backend_or_scorer_lists_the_installed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(worker_backend="langgraph")
    message = caught.value.errors()[0]["msg"]
    assert "unknown worker backend 'langgraph'; installed: " in message
    assert "openai, simulated" in message and "agensbus.backends" in message
    with pytest.raises(ValidationError, match="unknown judge scorer 'crowd'"):
        Settings(judge_scorer="crowd")
    assert Settings(worker_backend="openai").judge_scorer_name == "openai"
    assert Settings(worker_backend="openai", judge_scorer="simulated").judge_scorer_name == (
        "simulated"
    )


def test_the_simulated_backend_refuses_a_pipeline_its_scenario_does_not_simulate(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(
        "name: other\ncells: [{name: solver, role: solver}, {name: done, role: evaluator}]\n"
        "plan: [solver, done]\n"
    )
    with pytest.raises(PluginConfigError, match="simulates the pipeline paper"):
        make_backend(Settings(), load_pipeline(other))


def test_services_default_to_the_pipeline_their_scenario_names(tmp_path: Path) -> None:
    assert with_pipeline(Settings()).pipeline == "paper"
    given = Settings(pipeline="mine.yaml")
    assert with_pipeline(given) is given
    inline = tmp_path / "inline.yaml"
    inline.write_text(
        "name: inline\ndescription: d\ncells: [{name: s, role: solver}]\nplan: [s]\n"
        "defaults: {s: {tokens_in: 1, tokens_out: 1}}\njudges: [{name: j, noise_sd: 0}]\n"
        "classes: [{name: K, description: k, features: {}, count: 1, base_quality: 0.5}]\n"
    )
    with pytest.raises(UserError, match="writes its cells inline"):
        with_pipeline(Settings(scenario=str(inline)))
    with pytest.raises(UserError, match="unknown scenario 'nowhere'"):
        with_pipeline(Settings(scenario="nowhere"))
