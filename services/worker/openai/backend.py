"""Cells run by a model behind an OpenAI-compatible endpoint, and the tool cells beside it.

A cell's prompt is its role's skill card (and its protocol's card), the task goal and
constraints, and the handoff so far; its answer is JSON of the role's schema. An answer
that is not JSON or does not match gets one corrective request, counted as a retry.

Tool cells: with a document index, memory retrieves passages (no model, no tokens); a
web_search step searches with the configured provider and the model turns the hits into
evidence; without a provider it fails, and the router learns to skip it.
"""

import json
import logging
import time
from collections.abc import Sequence

from schemas.events import FailureKind
from schemas.records import Handoff, HandoffDelta, Role, TrajectoryState
from services.policy import CellPool, StepResult, Variant
from services.policy.outcomes import Execution
from services.skills import Skills, load_skills
from services.worker.backend import Unexecutable
from services.worker.openai.client import ChatClient, ChatFailure
from services.worker.openai.models import ModelSpec, ModelTable
from services.worker.openai.outputs import (
    OutputError,
    correction,
    output_schema,
    parse,
    response_format,
)
from services.worker.openai.preflight import Preflight
from services.worker.tools import Hit, PassageIndex, SearchFailure, Tools, query_of


class OpenAIBackend:
    def __init__(
        self,
        pool: CellPool,
        table: ModelTable,
        client: ChatClient,
        log: logging.Logger | None = None,
        *,
        skills: Skills | None = None,
        tools: Tools | None = None,
    ) -> None:
        self.pool = pool
        self.table = table
        self.client = client
        self.skills = skills or load_skills()
        # Every protocol the pool runs needs its card before the first decision arrives.
        self.skills.check(pool)
        self.tools = tools or Tools()
        self.preflight = Preflight(table, client, log)
        self._log = log or logging.getLogger("agensbus.worker.openai")
        #: web_search steps failed for want of a provider (logged the first time only).
        self.searches_unavailable = 0

    async def start(self) -> None:
        self.preflight.start()

    async def stop(self) -> None:
        await self.preflight.stop()
        await self.client.close()
        await self.tools.close()

    def readiness(self) -> tuple[bool, str]:
        ready, detail = self.preflight.check()
        tools = self.tools.describe()
        if self.searches_unavailable:
            tools += f" ({self.searches_unavailable} web_search steps failed for it)"
        return ready, f"{detail}; {tools}"

    async def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        cell = self.pool.cells.get(variant.cell)
        if cell is None:
            raise Unexecutable("unknown_action", f"cell {variant.cell!r} is not in the pool")
        began = time.monotonic()
        if cell.role is Role.MEMORY and self.tools.index is not None:
            return _retrieved(self.tools.index, state.handoff, self.tools.memory_top_k, began)
        hits: list[Hit] = []
        if cell.role is Role.WEB_SEARCH:
            found = await self._search(cell.name, state.handoff, began)
            if isinstance(found, Execution):
                return found
            hits = found
        try:
            spec = self.table.resolve(variant.model)
        except KeyError as error:
            raise Unexecutable("unknown_model", str(error.args[0])) from None
        messages = prompt(self.skills, cell.role, variant.protocol, state.handoff, spec, hits)
        if not spec.fits(messages):
            raise Unexecutable(
                "context_overflow",
                f"the prompt of {variant.action} does not fit the {spec.context_window}-token "
                f"context window of {spec.name}",
            )
        return await _Call(self.client, spec, cell.role, messages, began).run()

    async def _search(self, cell: str, handoff: Handoff, began: float) -> list[Hit] | Execution:
        """The hits of a web_search step, or the step's ending when there are none to read."""
        provider = self.tools.search
        if provider is None:
            self.searches_unavailable += 1
            if self.searches_unavailable == 1:
                self._log.warning(
                    "web_search steps fail: no web search provider is enabled (set "
                    "--web-search-provider / AGENSBUS_WEB_SEARCH_PROVIDER)",
                    extra={"cell": cell},
                )
            return _tool_step(StepResult(False), began, 0, FailureKind.UPSTREAM)
        try:
            hits = await provider.search(query_of(handoff), self.tools.search_top_k)
        except SearchFailure as failure:
            self._log.warning(
                "web search failed",
                extra={
                    "cell": cell,
                    "provider": provider.name,
                    "failure_kind": failure.kind.value,
                    "detail": failure.detail,
                },
            )
            return _tool_step(StepResult(False), began, 1, failure.kind)
        # Nothing found is an answer too, and no model needs to read it.
        return hits or _tool_step(StepResult(True), began, 1)


def _retrieved(index: PassageIndex, handoff: Handoff, k: int, began: float) -> Execution:
    """A memory step served by the document index: its passages are the evidence."""
    evidence = [found.passage.evidence for found in index.search(query_of(handoff), k)]
    return _tool_step(StepResult(True, HandoffDelta(evidence=evidence)), began, 1)


def _tool_step(
    result: StepResult, began: float, attempts: int, kind: FailureKind | None = None
) -> Execution:
    """A step no model ran: no tokens, no cost, the time it took."""
    return Execution(result, 0, 0, time.monotonic() - began, attempts, kind)


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
                self.messages = [*self.messages, *correction(reply.content, error)]
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
    skills: Skills,
    role: Role,
    protocol: str | None,
    handoff: Handoff,
    spec: ModelSpec,
    hits: Sequence[Hit] = (),
) -> list[dict[str, str]]:
    """The messages of a cell's first request: the cards as the system message, the task,
    the handoff and any search results as the user message."""
    system = skills.instructions(role, protocol)
    system.append("Reply with one JSON object and nothing else.")
    if spec.structured_output == "json_object":
        # No schema in the request: the model learns the shape from the prompt.
        system.append("The object must match this JSON schema:\n" + json.dumps(output_schema(role)))
    return [
        {"role": "system", "content": "\n\n".join(system)},
        {"role": "user", "content": _task_text(handoff) + _results_text(hits)},
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


def _results_text(hits: Sequence[Hit]) -> str:
    if not hits:
        return ""
    lines = [f"{n}. {h.title}\n   {h.url}\n   {h.snippet}" for n, h in enumerate(hits, 1)]
    return "\n\nSearch results:\n" + "\n".join(lines)
