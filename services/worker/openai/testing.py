"""A local chat-completions endpoint for tests (public, like the testing helpers of the
libraries it sits beside): it listens on a random loopback port, answers each path from a
script, and records every request, so that the openai backend and judge are tested against
real HTTP without a hosted model.

A script entry is a :class:`Reply`, or a function of the :class:`Request` that returns one
(to answer by what was asked, e.g. the role in ``response_format``). Entries are used in
order and the last one repeats.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Answer = Reply | Callable[[Request], Reply]


def completion(content: str, tokens_in: int = 0, tokens_out: int = 0) -> Reply:
    """A successful chat completion whose message is ``content``, with its usage."""
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
    )


class ScriptedServer:
    """A chat-completions endpoint that answers each path from a script. Use as an async
    context manager; ``base_url`` is what a model table or ``AGENSBUS_OPENAI_BASE_URL``
    takes."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {MODELS_PATH: [Reply(body={"data": []})]}
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None

    def answer(self, path: str, *replies: Answer) -> None:
        self.script[path] = list(replies)

    def chat(self, *replies: Answer) -> None:
        self.answer(CHAT_PATH, *replies)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the scripted server is not running")
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def sent(self, path: str = CHAT_PATH) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def __aenter__(self) -> "ScriptedServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _next(self, request: Request) -> Reply:
        # A script for a bare path also answers it with any query string (GET /search?q=).
        replies = self.script.get(request.path) or self.script.get(request.path.split("?")[0])
        if not replies:
            return Reply(404, {"error": {"message": "no such path"}})
        answer = replies.pop(0) if len(replies) > 1 else replies[0]
        return answer if isinstance(answer, Reply) else answer(request)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if h)
            }
            size = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(size) if size else b""
            request = Request(method, path, headers, json.loads(raw) if raw else None)
            self.requests.append(request)
            reply = self._next(request)
            await asyncio.sleep(reply.delay_s)
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
            extra = {"Content-Type": "application/json", **reply.headers}
            lines += [f"{k}: {v}" for k, v in extra.items()]
            lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as server:
        yield server
