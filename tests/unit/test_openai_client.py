"""The chat-completions client against a scripted local server (loopback, random port):
usage, retries with Retry-After and backoff, timeouts, the failure taxonomy, and an API
key that never leaks. Also the pure helpers: backoff, Retry-After, classification, pacing.
"""

import asyncio
import logging
import random
from email.utils import formatdate

import pytest

from schemas.events import FailureKind
from services.worker.openai.client import (
    ChatClient,
    ChatFailure,
    Pacer,
    RetryPolicy,
    classify,
    retry_after_s,
)
from services.worker.openai.testing import Reply, completion, scripted
from tests.unit.support_openai import KEY, Sleeps, closed_port, spec_for


def client_with(sleeps: Sleeps, max_retries: int = 3) -> ChatClient:
    return ChatClient(RetryPolicy(max_retries=max_retries), sleep=sleeps, rng=random.Random(7))


FORMAT = {"type": "json_object"}
MESSAGES = [{"role": "user", "content": "hello"}]


def test_a_completion_returns_its_content_and_usage() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion('{"a": 1}', 120, 30))
            sleeps = Sleeps()
            client = client_with(sleeps)
            spec = spec_for(server.base_url, max_output_tokens=256)
            reply = await client.complete(spec, MESSAGES, FORMAT)
            await client.close()
        assert (reply.content, reply.tokens_in, reply.tokens_out, reply.attempts) == (
            '{"a": 1}',
            120,
            30,
            1,
        )
        [sent] = server.sent()
        assert sent.method == "POST"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.body == {
            "model": "provider-model-1",
            "messages": MESSAGES,
            "response_format": FORMAT,
            "max_completion_tokens": 256,
        }
        assert sleeps.waits == []

    asyncio.run(run())


def test_a_server_that_knows_only_max_tokens_gets_the_limit_in_that_field() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(completion("ok"))
            client = client_with(Sleeps())
            spec = spec_for(server.base_url, max_output_tokens=64, output_limit_field="max_tokens")
            await client.complete(spec, MESSAGES, FORMAT)
            await client.close()
        [sent] = server.sent()
        assert sent.body["max_tokens"] == 64
        assert "max_completion_tokens" not in sent.body

    asyncio.run(run())


def test_429_waits_the_retry_after_then_succeeds() -> None:
    async def run() -> None:
        async with scripted() as server:
            limited = Reply(429, {"error": {"type": "rate_limit"}}, {"Retry-After": "2"})
            server.chat(limited, completion("ok", 5, 1))
            sleeps = Sleeps()
            client = client_with(sleeps)
            reply = await client.complete(spec_for(server.base_url), MESSAGES, FORMAT)
            await client.close()
        assert sleeps.waits == [2.0]
        assert (reply.content, reply.attempts, len(server.sent())) == ("ok", 2, 2)

    asyncio.run(run())


def test_500_backs_off_then_succeeds() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(Reply(500, {"error": "boom"}), Reply(503, b"down"), completion("ok"))
            sleeps = Sleeps()
            client = client_with(sleeps)
            reply = await client.complete(spec_for(server.base_url), MESSAGES, FORMAT)
            await client.close()
        assert reply.attempts == 3
        first, second = sleeps.waits
        policy = RetryPolicy()
        assert policy.base_delay_s / 2 <= first <= policy.base_delay_s
        assert policy.base_delay_s <= second <= 2 * policy.base_delay_s

    asyncio.run(run())


def test_a_slow_response_times_out_and_is_retried_then_fails_as_timeout() -> None:
    async def run() -> None:
        async with scripted() as server:
            # A timeout generous enough that a loaded machine still answers the fast reply in time.
            server.chat(Reply(delay_s=6.0, body={}), completion("late but fine"))
            sleeps = Sleeps()
            client = client_with(sleeps, max_retries=1)
            spec = spec_for(server.base_url, timeout_s=1.5)
            reply = await client.complete(spec, MESSAGES, FORMAT)
            assert (reply.content, reply.attempts) == ("late but fine", 2)

            server.chat(Reply(delay_s=6.0, body={}))
            with pytest.raises(ChatFailure) as failed:
                await client.complete(spec, MESSAGES, FORMAT)
            await client.close()
        assert (failed.value.kind, failed.value.attempts) == (FailureKind.TIMEOUT, 2)
        assert len(sleeps.waits) == 2  # one backoff per call above

    asyncio.run(run())


def test_connection_refused_is_a_network_failure_after_retries() -> None:
    async def run() -> None:
        sleeps = Sleeps()
        client = client_with(sleeps, max_retries=2)
        spec = spec_for(f"http://127.0.0.1:{closed_port()}/v1")
        with pytest.raises(ChatFailure) as failed:
            await client.complete(spec, MESSAGES, FORMAT)
        await client.close()
        assert (failed.value.kind, failed.value.attempts, len(sleeps.waits)) == (
            FailureKind.NETWORK,
            3,
            2,
        )

    asyncio.run(run())


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(401, {"error": {"code": "invalid_api_key"}}), FailureKind.AUTH),
        (Reply(403, {"error": {"message": "forbidden"}}), FailureKind.AUTH),
        (Reply(402, {"error": {"message": "pay up"}}), FailureKind.QUOTA),
        (Reply(429, {"error": {"code": "insufficient_quota"}}), FailureKind.QUOTA),
        (Reply(400, {"error": {"message": "bad model"}}), FailureKind.UPSTREAM),
        (Reply(200, b"not json at all"), FailureKind.UPSTREAM),
    ],
)
def test_failures_that_cannot_pass_are_not_retried(reply: Reply, kind: FailureKind) -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(reply, completion("never reached"))
            sleeps = Sleeps()
            client = client_with(sleeps)
            with pytest.raises(ChatFailure) as failed:
                await client.complete(spec_for(server.base_url), MESSAGES, FORMAT)
            await client.close()
        assert (failed.value.kind, failed.value.attempts) == (kind, 1)
        assert (len(server.sent()), sleeps.waits) == (1, [])

    asyncio.run(run())


def test_a_missing_key_fails_as_auth_without_a_request() -> None:
    async def run() -> None:
        async with scripted() as server:
            client = client_with(Sleeps())
            with pytest.raises(ChatFailure) as failed:
                await client.complete(spec_for(server.base_url, key=None), MESSAGES, FORMAT)
            await client.close()
        assert failed.value.kind is FailureKind.AUTH
        assert "TEST_KEY" in str(failed.value)
        assert server.requests == []

    asyncio.run(run())


def test_a_too_long_retry_after_fails_at_once_as_rate_limited() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(Reply(429, {}, {"Retry-After": "3600"}), completion("ok"))
            sleeps = Sleeps()
            client = client_with(sleeps)
            with pytest.raises(ChatFailure) as failed:
                await client.complete(spec_for(server.base_url), MESSAGES, FORMAT)
            await client.close()
        assert failed.value.kind is FailureKind.RATE_LIMITED
        assert sleeps.waits == []

    asyncio.run(run())


def test_the_api_key_never_reaches_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}"}}

    async def run() -> list[ChatFailure]:
        failures = []
        async with scripted() as server:
            client = client_with(Sleeps(), max_retries=1)
            spec = spec_for(server.base_url)
            for status in (401, 500, 400):
                server.chat(Reply(status, echo))
                with pytest.raises(ChatFailure) as failed:
                    await client.complete(spec, MESSAGES, FORMAT)
                failures.append(failed.value)
            closed = spec_for(f"http://127.0.0.1:{closed_port()}/v1")
            with pytest.raises(ChatFailure) as failed:
                await client.complete(closed, MESSAGES, FORMAT)
            failures.append(failed.value)
            await client.close()
        return failures

    with caplog.at_level(logging.DEBUG):
        failures = asyncio.run(run())
    assert [f.kind for f in failures] == [
        FailureKind.AUTH,
        FailureKind.SERVER,
        FailureKind.UPSTREAM,
        FailureKind.NETWORK,
    ]
    assert "[redacted]" in str(failures[0])
    assert "model call failed" in caplog.text  # the retries were logged...
    for failure in failures:
        assert KEY not in f"{failure} {failure!r} {failure.args}"
    assert KEY not in caplog.text  # ...without the key
    assert KEY not in repr(spec_for("http://x"))


# --- pure helpers ------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(1)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = {policy.backoff(retry, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    assert retry_after_s({"retry-after": "1.5"}) == 1.5
    assert retry_after_s({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    now = 1_700_000_000.0
    assert retry_after_s({"Retry-After": formatdate(now + 30, usegmt=True)}, now) == 30.0
    assert retry_after_s({"Retry-After": formatdate(now - 30, usegmt=True)}, now) == 0.0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, "{}", FailureKind.RATE_LIMITED),
        (429, '{"error": {"type": "insufficient_quota"}}', FailureKind.QUOTA),
        (429, "not json", FailureKind.RATE_LIMITED),
        (401, "", FailureKind.AUTH),
        (403, "", FailureKind.AUTH),
        (402, "", FailureKind.QUOTA),
        (408, "", FailureKind.TIMEOUT),
        (500, "", FailureKind.SERVER),
        (529, "", FailureKind.SERVER),
        (404, "", FailureKind.UPSTREAM),
        (422, "", FailureKind.UPSTREAM),
    ],
)
def test_http_errors_are_classified(status: int, body: str, kind: FailureKind) -> None:
    assert classify(status, body) is kind


def test_the_pacer_spaces_requests_to_the_rate_limit() -> None:
    pacer = Pacer(per_minute=120)  # one every 0.5 s
    assert [pacer.reserve(10.0) for _ in range(3)] == [0.0, 0.5, 1.0]
    assert pacer.reserve(20.0) == 0.0
