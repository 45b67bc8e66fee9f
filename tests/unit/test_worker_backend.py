"""The simulated backend the worker app builds: deterministic per seed and step, the same
as the world itself, sleeping the scaled latency, refusing classes the scenario lacks."""

import asyncio
import time
from typing import Any

import pytest

from services.runtime.settings import Settings
from services.sim import World, load_scenario
from services.worker.backend import Unexecutable, make_backend
from tests.unit.support_decisions import first_decision

SCENARIO = load_scenario("security-advisories")


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="localhost:1", **values)


def test_the_apps_backend_is_deterministic_and_is_the_world() -> None:
    decisions = [first_decision(SCENARIO, f"adv-{i}", c) for i, c in enumerate(["C1", "C3", "C7"])]
    backend = make_backend(settings(seed=11), SCENARIO.pipeline)

    async def run_all() -> list[object]:
        return [await backend.execute(d.state, SCENARIO.pool.variant(d.action)) for d in decisions]

    first, again = asyncio.run(run_all()), asyncio.run(run_all())
    assert first == again
    world = World(SCENARIO, 11)
    assert first == [world.execute(d.state, SCENARIO.pool.variant(d.action)) for d in decisions]
    # The seed matters: another world draws other tokens and latencies.
    other = asyncio.run(
        make_backend(settings(seed=12), SCENARIO.pipeline).execute(
            decisions[0].state, SCENARIO.pool.variant(decisions[0].action)
        )
    )
    assert other != first[0]


def test_time_scale_makes_calls_take_the_simulated_latency() -> None:
    decision = first_decision(SCENARIO, "adv-slow", "C1")
    variant = SCENARIO.pool.variant(decision.action)
    scale = 0.05
    backend = make_backend(settings(sim_time_scale=scale), SCENARIO.pipeline)
    began = time.monotonic()
    execution = asyncio.run(backend.execute(decision.state, variant))
    took = time.monotonic() - began
    assert execution.latency_s * scale <= took < execution.latency_s * scale + 0.5
    instant = make_backend(settings(), SCENARIO.pipeline)
    began = time.monotonic()
    asyncio.run(instant.execute(decision.state, variant))
    assert time.monotonic() - began < execution.latency_s * scale


def test_a_task_class_outside_the_scenario_is_unexecutable() -> None:
    decision = first_decision(SCENARIO, "adv-x", "C1")
    state = decision.state.model_copy(update={"task_class": "C99"})
    backend = make_backend(settings(), SCENARIO.pipeline)
    with pytest.raises(Unexecutable) as raised:
        asyncio.run(backend.execute(state, SCENARIO.pool.variant(decision.action)))
    assert raised.value.rejected.error_type == "unknown_task_class"
