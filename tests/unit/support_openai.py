"""What the tests of the openai backend share: an API key that must never leak, model specs
pointing at a scripted server, a sleep that records its waits instead of waiting, a port
nobody listens on, a trajectory state worth prompting with, and worker settings that pick
the openai backend."""

from typing import Any

from pydantic import SecretStr

from schemas.records import TrajectoryState
from services.runtime._ports import free_ports
from services.runtime.settings import Settings
from services.sim import load_scenario
from services.worker.openai.models import ModelSpec
from tests.unit.support_decisions import first_decision

KEY = "sk-test-0123456789abcdef-secret"
SCENARIO = load_scenario("security-advisories")


class Sleeps:
    """Records the waits the client asks for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def spec_for(base_url: str, key: str | None = KEY, **values: Any) -> ModelSpec:
    return ModelSpec(
        name=values.pop("name", "balanced"),
        model=values.pop("model", "provider-model-1"),
        base_url=base_url,
        api_key=SecretStr(key) if key else None,
        key_source=values.pop("key_source", "env TEST_KEY"),
        **values,
    )


def closed_port() -> int:
    """A loopback port nobody listens on: one that was free a moment ago, left unbound."""
    (port,) = free_ports(1)
    return port


def a_state() -> TrajectoryState:
    state = first_decision(SCENARIO, "adv-1", "C1").state
    handoff = state.handoff.model_copy(
        update={
            "goal": "Is CVE-2099-0001 exploitable remotely?",
            "constraints": ["cite advisories"],
            "evidence": ["NVD lists it as network-exploitable"],
        }
    )
    return state.model_copy(update={"handoff": handoff})


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="localhost:1", worker_backend="openai", **values)
