"""An async chat-completions client for OpenAI-compatible endpoints.

It retries what may pass on its own (429, 5xx, timeouts, connection errors) with
exponential backoff and jitter, honouring Retry-After, and classifies every failure into
the taxonomy of :class:`FailureKind`. The API key goes into one header and nowhere else:
error texts from the server are scrubbed of it before they reach an exception or a log.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from schemas.events import FailureKind
from services.worker.http_failures import classify, scrub
from services.worker.openai.models import ModelSpec

Sleep = Callable[[float], Awaitable[None]]

#: Failures that may pass if the same request is sent again.
RETRYABLE = frozenset(
    {FailureKind.RATE_LIMITED, FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.NETWORK}
)

#: Readiness asks often; it must not hang for a model's full request timeout.
PROBE_TIMEOUT_S = 10.0


class ChatFailure(Exception):
    """A request that did not produce a usable reply, after any retries."""

    def __init__(self, kind: FailureKind, detail: str, attempts: int, status: int | None) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.attempts = attempts
        self.status = status


@dataclass(frozen=True, slots=True)
class ChatReply:
    content: str
    tokens_in: int
    tokens_out: int
    attempts: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    #: A Retry-After longer than this is not waited for: the call fails as rate limited.
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number ``retry`` (0-based): exponential, capped, with the
        upper half jittered so that workers hit by the same outage spread out."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**retry)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, or ``Retry-After`` in seconds or
    as an HTTP date. Unparseable or absent: ``None``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        value = lowered.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            moment = parsedate_to_datetime(value).timestamp()
            return max(0.0, moment - (time.time() if now is None else now))
    except (ValueError, TypeError):
        return None


@dataclass
class Pacer:
    """Spaces requests to at most ``per_minute``; ``reserve`` says how long to wait."""

    per_minute: float
    _next: float = field(default=0.0, init=False)

    def reserve(self, now: float) -> float:
        slot = max(now, self._next)
        self._next = slot + 60.0 / self.per_minute
        return slot - now


@dataclass
class _Limits:
    gate: asyncio.Semaphore
    pacer: Pacer | None


class ChatClient:
    """One per worker; the HTTP connection pool and the per-model limits are shared."""

    def __init__(
        self,
        retry: RetryPolicy,
        *,
        log: logging.Logger | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.retry = retry
        self._log = log or logging.getLogger("agensbus.worker.openai")
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http: httpx.AsyncClient | None = None
        self._limits: dict[str, _Limits] = {}

    def _client(self) -> httpx.AsyncClient:
        # Created on first use, so that it binds to the loop the worker runs in.
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def complete(
        self, spec: ModelSpec, messages: list[dict[str, str]], response_format: dict[str, Any]
    ) -> ChatReply:
        """One chat completion, retried as the policy allows; raises :class:`ChatFailure`."""
        if spec.api_key is None:
            raise ChatFailure(FailureKind.AUTH, f"no API key ({spec.key_source} is unset)", 0, None)
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "response_format": response_format,
        }
        if spec.max_output_tokens is not None:
            body[spec.output_limit_field] = spec.max_output_tokens
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(spec, body, attempt)
            except _Retryable as failure:
                retry = attempt - 1
                if retry >= self.retry.max_retries:
                    raise ChatFailure(
                        failure.kind, failure.detail, attempt, failure.status
                    ) from None
                delay = self.retry.backoff(retry, self._rng)
                if failure.retry_after is not None:
                    if failure.retry_after > self.retry.max_retry_after_s:
                        detail = f"{failure.detail} (asks to wait {failure.retry_after:.0f} s)"
                        raise ChatFailure(failure.kind, detail, attempt, failure.status) from None
                    delay = failure.retry_after
                self._log.warning(
                    "model call failed, retrying",
                    extra={
                        "model": spec.name,
                        "failure_kind": failure.kind.value,
                        "status": failure.status,
                        "attempt": attempt,
                        "delay_s": round(delay, 3),
                    },
                )
                await self._sleep(delay)

    async def _attempt(self, spec: ModelSpec, body: dict[str, Any], attempt: int) -> ChatReply:
        limits = self._limits_of(spec)
        async with limits.gate:
            if limits.pacer is not None:
                wait = limits.pacer.reserve(time.monotonic())
                if wait > 0:
                    await self._sleep(wait)
            response = await self._send(spec, "POST", "/chat/completions", body)
        secret = spec.api_key.get_secret_value() if spec.api_key else None
        if response.status_code >= 400:
            kind = classify(response.status_code, response.text)
            detail = f"HTTP {response.status_code}: {scrub(response.text, secret)}"
            if kind in RETRYABLE:
                asked = retry_after_s(response.headers)
                raise _Retryable(kind, detail, response.status_code, asked)
            raise ChatFailure(kind, detail, attempt, response.status_code)
        return _reply(response, attempt, secret)

    async def _send(
        self,
        spec: ModelSpec,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """One request under the model's timeout; transport trouble becomes a failure."""
        key = spec.api_key.get_secret_value() if spec.api_key else ""
        timeout_s = timeout_s or spec.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await self._client().request(
                    method,
                    spec.base_url + path,
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=timeout_s,
                )
        except (TimeoutError, httpx.TimeoutException):
            detail = f"no reply within {timeout_s:g} s"
            raise _Retryable(FailureKind.TIMEOUT, detail, None, None) from None
        except httpx.TransportError as error:
            detail = f"{type(error).__name__} reaching {spec.base_url}"
            raise _Retryable(FailureKind.NETWORK, detail, None, None) from None

    async def probe(self, spec: ModelSpec) -> tuple[bool, str]:
        """A cheap authenticated request (GET /models): is the endpoint there, is the key
        taken? Not retried: readiness asks again soon."""
        if spec.api_key is None:
            return False, f"{spec.base_url}: no API key ({spec.key_source} is unset)"
        try:
            timeout_s = min(spec.timeout_s, PROBE_TIMEOUT_S)
            response = await self._send(spec, "GET", "/models", timeout_s=timeout_s)
        except _Retryable as failure:
            return False, f"{spec.base_url}: unreachable ({failure.detail})"
        status = response.status_code
        if status in (401, 403):
            return False, f"{spec.base_url}: key from {spec.key_source} rejected (HTTP {status})"
        if status >= 500:
            return False, f"{spec.base_url}: endpoint failing (HTTP {status})"
        # Some compatible servers have no /models; any other answer proves both the
        # endpoint and that the key was not refused.
        return True, f"{spec.base_url}: reachable, key from {spec.key_source} accepted"

    def _limits_of(self, spec: ModelSpec) -> _Limits:
        limits = self._limits.get(spec.name)
        if limits is None:
            pacer = Pacer(spec.requests_per_minute) if spec.requests_per_minute else None
            limits = _Limits(asyncio.Semaphore(spec.max_concurrency), pacer)
            self._limits[spec.name] = limits
        return limits


class _Retryable(Exception):
    def __init__(
        self, kind: FailureKind, detail: str, status: int | None, retry_after: float | None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


def _reply(response: httpx.Response, attempt: int, secret: str | None) -> ChatReply:
    """The message content and usage of a 2xx answer; a malformed envelope is the
    provider's fault (upstream), unlike malformed content, which the caller judges."""
    try:
        payload = response.json()
        content = payload["choices"][0]["message"]["content"]
        usage = payload.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens", 0))
        tokens_out = int(usage.get("completion_tokens", 0))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        detail = f"malformed completion: {scrub(response.text, secret)}"
        raise ChatFailure(FailureKind.UPSTREAM, detail, attempt, response.status_code) from None
    if not isinstance(content, str):
        raise ChatFailure(FailureKind.UPSTREAM, "completion without text", attempt, None)
    return ChatReply(content, tokens_in, tokens_out, attempt)
