"""The worker's side of sizes: the next cell reads the text the state refers to, what a
step writes over the inline limit is stored by reference, and a step whose output the
state could not carry fails with failure kind ``oversize`` (the router learns from it)
instead of producing an event nobody can publish."""

import asyncio
from dataclasses import replace

from schemas.events import FailureKind
from schemas.records import TrajectoryState
from services.policy.handoff import apply_delta
from services.policy.outcomes import Execution
from services.policy.trajectory import StepResult
from services.runtime.limits import Limits, step_problem
from services.runtime.payloads import PayloadStore, check_in_async, check_out_async
from services.runtime.service import Service

#: How often payloads past their retention are swept from the store.
SWEEP_EVERY_S = 3600.0


class Claims:
    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.store = PayloadStore(
            settings.payload_dir, settings.payload_retention_s, service.name, service.registry
        )
        self.limits = Limits.from_settings(settings)
        self.inline_bytes = settings.payload_inline_bytes
        self._log = service.log

    async def readable(self, state: TrajectoryState) -> TrajectoryState:
        """``state`` with the stored content it refers to in place (raises Poison when a
        payload is missing)."""
        handoff = await check_in_async(state.handoff, self.store)
        if handoff is state.handoff:
            return state
        return state.model_copy(update={"handoff": handoff})

    async def carried(self, state: TrajectoryState, execution: Execution) -> Execution:
        """``execution`` as it can travel: large texts by reference, or a failed step."""
        result = execution.result
        if not result.succeeded:
            return execution
        delta = await check_out_async(result.delta, self.store, self.inline_bytes)
        after = state.model_copy(update={"handoff": apply_delta(state.handoff, delta)})
        problem = step_problem(delta, after, self.limits)
        if problem is None:
            return replace(execution, result=replace(result, delta=delta))
        self._log.warning(
            "step output over a size limit: the step fails",
            extra={"trajectory_id": state.trajectory_id, "reason": problem},
        )
        failed = StepResult(succeeded=False, tokens=result.tokens, retries=result.retries)
        return replace(execution, result=failed, failure_kind=FailureKind.OVERSIZE)

    async def sweep_every_hour(self) -> None:
        """Delete payloads past their retention, now and then every hour."""
        while True:
            removed = await asyncio.to_thread(self.store.sweep)
            if removed:
                self._log.info("expired payloads deleted", extra={"payloads": removed})
            await asyncio.sleep(SWEEP_EVERY_S)
