"""Cells run by a model behind an OpenAI-compatible endpoint.

A cell's prompt is a short built-in instruction for its role (and protocol), the task goal
and constraints, and the handoff so far; its answer is JSON of the role's schema. An answer
that is not JSON or does not match gets one corrective request, counted as a retry.
"""

import json
import logging
import time
from typing import Any

from schemas.events import FailureKind
from schemas.records import Handoff, Role, TrajectoryState
from services.policy import CellPool, StepResult, Variant
from services.sim import Execution
from services.worker.backend import Unexecutable
from services.worker.openai.client import ChatClient, ChatFailure
from services.worker.openai.models import ModelSpec, ModelTable
from services.worker.openai.outputs import OutputError, output_schema, parse, response_format
from services.worker.openai.preflight import Preflight

_ROLE_INSTRUCTIONS: dict[Role, str] = {
    Role.PLANNER: "You are the planner. Break the goal into the subproblems to solve.",
    Role.MEMORY: "You are the memory. Recall facts you know that bear on the goal.",
    Role.WEB_SEARCH: "You are the researcher. List the evidence that bears on the goal.",
    Role.SOLVER: "You are the solver. Answer the goal using the handoff.",
    Role.CRITIC: "You are the critic. Find the weaknesses of the draft answer.",
    Role.VERIFIER: "You are the verifier. Judge whether the evidence supports the draft "
    "answer: supported, partially_supported or unsupported.",
    Role.SYNTHESIZER: "You are the synthesizer. Merge the draft and the critique into one answer.",
    Role.EVALUATOR: "You are the evaluator. Decide whether the answer so far is final, and "
    "if so give it.",
}

_PROTOCOLS: dict[str, str] = {
    "chain_of_thought": "Reason step by step before settling on the answer.",
    "concise": "Be brief: the shortest answer that is complete.",
    "evidence_first": "Ground every claim in the evidence, citing it.",
}

#: Characters per token when guessing the size of a prompt against a context window.
_CHARS_PER_TOKEN = 4


class OpenAIBackend:
    def __init__(
        self,
        pool: CellPool,
        table: ModelTable,
        client: ChatClient,
        log: logging.Logger | None = None,
    ) -> None:
        self.pool = pool
        self.table = table
        self.client = client
        self.preflight = Preflight(table, client, log)

    async def start(self) -> None:
        self.preflight.start()

    async def stop(self) -> None:
        await self.preflight.stop()
        await self.client.close()

    def readiness(self) -> tuple[bool, str]:
        return self.preflight.check()

    async def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        cell = self.pool.cells.get(variant.cell)
        if cell is None:
            raise Unexecutable("unknown_action", f"cell {variant.cell!r} is not in the pool")
        try:
            spec = self.table.resolve(variant.model)
        except KeyError as error:
            raise Unexecutable("unknown_model", str(error.args[0])) from None
        began = time.monotonic()
        messages = prompt(cell.role, variant.protocol, state.handoff, spec)
        if _estimated_tokens(messages) > spec.context_window:
            raise Unexecutable(
                "context_overflow",
                f"the prompt of {variant.action} does not fit the {spec.context_window}-token "
                f"context window of {spec.name}",
            )
        return await _Call(self.client, spec, cell.role, messages, began).run()


class _Call:
    """One step: the requests it made and what they spent, whatever the ending."""

    def __init__(
        self,
        client: ChatClient,
        spec: ModelSpec,
        role: Role,
        messages: list[dict[str, str]],
        began: float,
    ) -> None:
        self.client, self.spec, self.role, self.messages = client, spec, role, messages
        self.began = began
        self.tokens_in = self.tokens_out = self.attempts = 0

    async def run(self) -> Execution:
        wanted = response_format(self.role, self.spec.structured_output)
        for _ in range(2):
            try:
                reply = await self.client.complete(self.spec, self.messages, wanted)
            except ChatFailure as failure:
                self.attempts += failure.attempts
                return self._failed(failure.kind)
            self.attempts += reply.attempts
            self.tokens_in += reply.tokens_in
            self.tokens_out += reply.tokens_out
            try:
                delta, done = parse(self.role, reply.content)
            except OutputError as error:
                self.messages = [*self.messages, *_correction(reply.content, error)]
                continue
            retries = self.attempts - 1
            result = StepResult(True, delta, self.tokens_in + self.tokens_out, retries, done)
            return self._execution(result, None)
        return self._failed(FailureKind.SCHEMA)

    def _failed(self, kind: FailureKind) -> Execution:
        tokens = self.tokens_in + self.tokens_out
        result = StepResult(False, tokens=tokens, retries=max(0, self.attempts - 1))
        return self._execution(result, kind)

    def _execution(self, result: StepResult, kind: FailureKind | None) -> Execution:
        return Execution(
            result,
            self.tokens_in,
            self.tokens_out,
            time.monotonic() - self.began,
            self.attempts,
            kind,
            self.spec.cost_usd(self.tokens_in, self.tokens_out),
        )


def prompt(
    role: Role, protocol: str | None, handoff: Handoff, spec: ModelSpec
) -> list[dict[str, str]]:
    """The messages of a cell's first request."""
    system = [_ROLE_INSTRUCTIONS[role]]
    if protocol:
        system.append(_PROTOCOLS.get(protocol, f"Follow the {protocol!r} protocol."))
    system.append("Reply with one JSON object and nothing else.")
    if spec.structured_output == "json_object":
        # No schema in the request: the model learns the shape from the prompt.
        system.append("The object must match this JSON schema:\n" + json.dumps(output_schema(role)))
    return [
        {"role": "system", "content": "\n".join(system)},
        {"role": "user", "content": _task_text(handoff)},
    ]


def _task_text(handoff: Handoff) -> str:
    parts = [f"Goal:\n{handoff.goal}"]
    if handoff.constraints:
        parts.append("Constraints:\n" + "\n".join(f"- {c}" for c in handoff.constraints))
    if handoff.subproblem:
        parts.append(f"Plan:\n{handoff.subproblem}")
    if handoff.evidence:
        parts.append("Evidence:\n" + "\n".join(f"- {e}" for e in handoff.evidence))
    if handoff.draft_answer:
        parts.append(f"Draft answer:\n{handoff.draft_answer}")
    if handoff.critique:
        parts.append(f"Critique:\n{handoff.critique}")
    if handoff.verification:
        check = handoff.verification
        parts.append(f"Verification: {check.verdict.value}. {check.rationale}".rstrip())
    if handoff.merged_answer:
        parts.append(f"Merged answer:\n{handoff.merged_answer}")
    return "\n\n".join(parts)


def _correction(content: str, error: OutputError) -> list[dict[str, str]]:
    """Show the model its answer and what is wrong with it, once."""
    return [
        {"role": "assistant", "content": content},
        {
            "role": "user",
            "content": f"That reply is unusable ({error}). Reply again with only one JSON "
            "object matching the schema.",
        },
    ]


def _estimated_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) for m in messages) // _CHARS_PER_TOKEN
