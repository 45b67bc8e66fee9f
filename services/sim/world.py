"""The simulated world: executes one invoke decision and knows the latent answer quality.

Everything drawn for a step comes from streams keyed by (seed, trajectory, step, attempt),
so executing the same decision twice (a redelivery, another worker) gives the same outcome.
"""

from dataclasses import dataclass

import numpy as np

from schemas.events import FailureKind
from schemas.records import (
    HandoffDelta,
    Role,
    StepStatus,
    TrajectoryState,
    Verdict,
    Verification,
)
from services.policy import StepResult, Variant
from services.policy.outcomes import Execution
from services.sim.rng import draw, stream
from services.sim.scenario import I64, Scenario, TaskClass

#: Marks text written by the simulator, so nobody mistakes it for a model's output.
SIM = "[simulated]"


@dataclass(frozen=True)
class World:
    scenario: Scenario
    seed: int

    def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        """Run the pending invoke of ``state`` with ``variant``.

        Each attempt fails with the variant's failure probability and is retried up to
        ``max_retries`` times. A failed attempt spends its input tokens (the prompt was
        sent) and its latency, but its output is lost.
        """
        pending = state.pending
        if pending is None:
            raise ValueError(f"trajectory {state.trajectory_id} has no pending step")
        if pending.action != variant.action:
            raise ValueError(
                f"step {pending.step} of {state.trajectory_id} is {pending.action}, "
                f"not {variant.action}"
            )
        task_class = self.scenario.task_class(state.task_class)
        costs = task_class.costs[variant.action]
        tokens_in = 0
        latency = 0.0
        for attempt in range(self.scenario.max_retries + 1):
            rng = stream(self.seed, "step", state.trajectory_id, pending.step, attempt)
            failed = rng.random() < costs.failure
            attempt_in = round(draw(rng, costs.tokens_in))
            attempt_out = round(draw(rng, costs.tokens_out))
            latency += draw(rng, costs.latency_s)
            tokens_in += attempt_in
            if not failed:
                delta, done = self._output(state, task_class, variant, pending.step)
                result = StepResult(True, delta, tokens_in + attempt_out, attempt, done)
                return Execution(result, tokens_in, attempt_out, latency, attempt + 1, None)
        attempts = self.scenario.max_retries + 1
        result = StepResult(False, tokens=tokens_in, retries=attempts - 1)
        return Execution(result, tokens_in, 0, latency, attempts, FailureKind.SIMULATED)

    def true_quality(self, state: TrajectoryState) -> float:
        """Latent quality of the trajectory's answer: every plan cell whose success does not
        count (skipped, failed, not reached, or too late to inform the draft) is absent."""
        task_class = self.scenario.task_class(state.task_class)
        return float(task_class.quality(counted_slots(task_class, state)))

    def _output(
        self, state: TrajectoryState, task_class: TaskClass, variant: Variant, step: int
    ) -> tuple[HandoffDelta, bool]:
        role = self.scenario.pool.cells[variant.cell].role
        written = f"{SIM} {variant.action} on {task_class.name}"
        if role is Role.PLANNER:
            return HandoffDelta(subproblem=f"{written}: subproblems"), False
        if role in (Role.MEMORY, Role.WEB_SEARCH):
            count = task_class.evidence[variant.cell]
            items = [
                _padded(f"{written}: item {i + 1}", task_class.evidence_bytes) for i in range(count)
            ]
            return HandoffDelta(evidence=items), False
        if role is Role.SOLVER:
            return HandoffDelta(draft_answer=f"{written}: draft"), False
        if role is Role.CRITIC:
            return HandoffDelta(critique=f"{written}: critique"), False
        if role is Role.VERIFIER:
            verdict = self._verdict(state, task_class, step)
            return HandoffDelta(verification=Verification(verdict=verdict, rationale=SIM)), False
        if role is Role.SYNTHESIZER:
            return HandoffDelta(merged_answer=f"{written}: merged answer"), False
        return HandoffDelta(), True

    def _verdict(self, state: TrajectoryState, task_class: TaskClass, step: int) -> Verdict:
        """Two independent checks that each pass with the draft's quality q: both pass
        (supported) with q^2, one (partially) with 2q(1-q), none (unsupported) with (1-q)^2.

        The draft's quality counts what ran and what was given up (skipped, failed or late
        cells), not the cells still to come.
        """
        counted = counted_slots(task_class, state)
        closed = {*state.skipped, *state.invoked}
        given_up = np.array([c in closed for c in task_class.plan]) & (counted < 0)
        q = float(task_class.quality(counted, given_up))
        u = stream(self.seed, "verdict", state.trajectory_id, step).random()
        if u < q * q:
            return Verdict.SUPPORTED
        if u < 1.0 - (1.0 - q) ** 2:
            return Verdict.PARTIALLY_SUPPORTED
        return Verdict.UNSUPPORTED


def counted_slots(task_class: TaskClass, state: TrajectoryState) -> I64:
    """Per plan cell, the index of the variant whose success counts, or -1.

    A cell that informs the draft (planner, memory, web search) counts only if it succeeded
    before the last successful solver step: evidence found after the answer was written
    does not change the answer.
    """
    counted = np.full(len(task_class.plan), -1, dtype=np.int64)
    done = [e for e in state.visited if e.status is StepStatus.SUCCEEDED]
    located = [(e.step, *task_class.locate(e.action)) for e in done]
    drafted = max((step for step, slot, _ in located if task_class.drafts[slot]), default=-1)
    for step, slot, index in located:
        if not task_class.feeds[slot] or step < drafted:
            counted[slot] = index
    return counted


def _padded(text: str, size: int) -> str:
    """``text`` followed by filler up to ``size`` bytes (ASCII, so bytes are characters)."""
    if len(text) >= size:
        return text
    filler = " " + "lorem ipsum " * (size // 12 + 1)
    return (text + filler)[:size]
