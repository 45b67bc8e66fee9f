"""The drafter of examples/support_desk_pipeline.yaml on any OpenAI-compatible chat-completions
endpoint (OpenAI, vLLM, Ollama, LiteLLM...), with the tokens it reports:

    export OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=... DRAFTER_MODEL=llama3.2
    export AGENSBUS_PIPELINE=examples/support_desk_pipeline.yaml
    agensbus serve-cells examples/openai_drafter.py

The variant's model slot (small, large) picks the model: DRAFTER_MODEL_SMALL,
DRAFTER_MODEL_LARGE, else DRAFTER_MODEL. A 429 or 5xx raises, which the SDK retries and then
reports as a failed step of that kind.
"""

import os

import httpx

from services.sdk import CellFailed, Result, Task, cell

TIMEOUT_S = 60.0

STYLE = {
    "terse": "Answer in at most three lines.",
    "thorough": "Answer step by step, citing the articles you use.",
}


def model_for(slot: str | None) -> str:
    specific = os.environ.get(f"DRAFTER_MODEL_{(slot or '').upper()}")
    return specific or os.environ.get("DRAFTER_MODEL", "gpt-4o-mini")


def messages(task: Task) -> list[dict[str, str]]:
    articles = "\n".join(f"- {item}" for item in task.evidence) or "(none found)"
    style = STYLE[task.protocol or "terse"]
    return [
        {"role": "system", "content": f"You answer support tickets. {style}"},
        {"role": "user", "content": f"Ticket: {task.goal}\nKnowledge base:\n{articles}"},
    ]


def failure_kind(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    return "server" if status >= 500 else "upstream"


@cell("drafter", timeout_s=TIMEOUT_S)
async def draft(task: Task) -> Result:
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    key = os.environ.get("OPENAI_API_KEY")
    # A local server (Ollama, vLLM) may take no key at all.
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model_for(task.model), "messages": messages(task)}
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        response = await client.post(f"{base_url}/chat/completions", json=body, headers=headers)
    if response.status_code != 200:
        raise CellFailed(failure_kind(response.status_code), f"HTTP {response.status_code}")
    reply = response.json()
    usage = reply.get("usage") or {}
    return Result(
        draft_answer=reply["choices"][0]["message"]["content"],
        tokens_in=int(usage.get("prompt_tokens", 0)),
        tokens_out=int(usage.get("completion_tokens", 0)),
    )
