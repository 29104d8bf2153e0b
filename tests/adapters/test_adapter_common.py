"""Unit tests of adapters._common: header parsing, retry classification, redaction."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest

from adapters._common import (
    body_error_fields,
    classify_status,
    decimal_str,
    finish_reason,
    one_line,
    parse_duration,
    parse_reset,
    rate_limits_from_headers,
    redact,
    request_id_from_headers,
    retry_after_from_headers,
)
from harness.types import RateLimitInfo, RetryDecision


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1s", 1.0),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("250us", 0.00025),
        ("7", 7.0),
        ("0.5", 0.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "abc", "5x", "1m-3s", "s", "-1", "inf"])
def test_bad_durations(text: str | None) -> None:
    assert parse_duration(text) is None


def test_rfc3339_reset() -> None:
    now = 1_755_780_000.0  # 2025-08-21T12:40:00Z
    assert parse_reset("2025-08-21T12:40:59Z", now=now) == pytest.approx(59.0)
    assert parse_reset("2025-08-21T12:40:59+00:00", now=now) == pytest.approx(59.0)
    assert parse_reset("2020-01-01T00:00:00Z", now=now) == 0.0
    assert parse_reset("not a time", now=now) is None


def test_openai_rate_limit_headers() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert rate_limits_from_headers(headers) == RateLimitInfo(59, 149984, 1.0, 360.0)


def test_anthropic_rate_limit_headers() -> None:
    now = 1_755_780_000.0
    headers = {
        "anthropic-ratelimit-requests-remaining": "999",
        "anthropic-ratelimit-tokens-remaining": "96000",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:30Z",
    }
    assert rate_limits_from_headers(headers, now=now) == RateLimitInfo(999, 96000, 59.0, 30.0)


def test_no_rate_limit_headers() -> None:
    assert rate_limits_from_headers({"content-type": "text/plain"}) is None
    assert rate_limits_from_headers({"x-ratelimit-remaining-requests": "garbage"}) is None


def test_retry_after_variants() -> None:
    assert retry_after_from_headers({"retry-after-ms": "150", "retry-after": "9"}) == pytest.approx(0.15)
    assert retry_after_from_headers({"retry-after": "7"}) == 7.0
    assert retry_after_from_headers({"retry-after": "1.5"}) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_from_headers({"retry-after": date}, now=now) == pytest.approx(30.0)
    assert retry_after_from_headers({"retry-after": "soon"}) is None
    assert retry_after_from_headers({"retry-after-ms": "x"}) is None
    assert retry_after_from_headers({}) is None
    assert retry_after_from_headers(None) is None


def test_request_id() -> None:
    assert request_id_from_headers({"x-request-id": "a"}) == "a"
    assert request_id_from_headers({"request-id": "b"}) == "b"
    assert request_id_from_headers({}) is None


@pytest.mark.parametrize(
    ("status", "headers", "etype", "code", "expected"),
    [
        (429, {"retry-after": "2"}, None, None, RetryDecision.rate_limit(2.0)),
        (429, {}, "insufficient_quota", "insufficient_quota", RetryDecision.no()),
        (429, {}, "rate_limit_error", "enforced_spend_limit_reached", RetryDecision.no()),
        (402, {}, "billing_error", None, RetryDecision.no()),
        (500, {}, None, None, RetryDecision.transient()),
        (529, {"retry-after": "1"}, None, None, RetryDecision.transient(1.0)),
        (501, {}, None, None, RetryDecision.no()),
        (408, {}, None, None, RetryDecision.transient()),
        (409, {}, None, None, RetryDecision.transient()),
        (400, {}, None, None, RetryDecision.no()),
        (404, {}, None, None, RetryDecision.no()),
        (500, {"x-should-retry": "false"}, None, None, RetryDecision.no()),
        (400, {"x-should-retry": "true"}, None, None, RetryDecision.transient()),
    ],
)
def test_classify_status(
    status: int, headers: dict[str, str], etype: str | None, code: str | None, expected: RetryDecision
) -> None:
    assert classify_status(status, headers, error_type=etype, error_code=code) == expected


def test_redact_keys() -> None:
    key = "sk-proj-abcdefghijklmnop1234"
    text = f"Incorrect API key provided: {key}; echoed sk-proj-****1234 and Bearer {key}"
    out = redact(text, (key,))
    assert key not in out and "abcdefgh" not in out and "sk-proj" not in out
    assert "Incorrect API key provided" in out
    # a key that does not look like sk-...: exact and prefix echoes are removed too
    other = "anthropic-custom-token-0987654321"
    out = redact(f"bad key {other} or {other[:10]}...", (other,))
    assert other not in out and other[:10] not in out


def test_one_line() -> None:
    assert one_line("a\n  b\r\n\tc") == "a b c"
    long = one_line("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_finish_reason_mapping() -> None:
    assert finish_reason("stop") == "stop"
    assert finish_reason("end_turn") == "stop"
    assert finish_reason("length") == "length"
    assert finish_reason("max_tokens") == "length"
    assert finish_reason("max_output_tokens") == "length"
    assert finish_reason("refusal") == "refusal"
    assert finish_reason("content_filter") == "refusal"
    assert finish_reason("tool_use") == "other"
    assert finish_reason(None) == "other"


def test_decimal_str() -> None:
    assert decimal_str(0.00012) == "0.00012"
    assert decimal_str("1.5") == "1.5"
    assert decimal_str(3) == "3"
    assert decimal_str(None) is None
    assert decimal_str(True) is None
    assert decimal_str("nan") is None
    assert decimal_str("abc") is None


def test_body_error_fields_both_shapes() -> None:
    assert body_error_fields({"message": "m", "type": "t", "code": "c"}) == ("t", "c", "m")
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert body_error_fields(anthropic) == ("overloaded_error", None, "Overloaded")
    detailed = {"type": "error", "error": {"type": "rate_limit_error", "details": {"error_code": "ramp"}}}
    assert body_error_fields(detailed) == ("rate_limit_error", "ramp", None)
    assert body_error_fields("text body") == (None, None, None)


@pytest.mark.anyio
async def test_a_hooked_client_keeps_the_response_elapsed_and_closes_its_iteration() -> None:
    import datetime

    import httpx2

    from adapters._common import ClosesItsIteration, hooked_http_client

    class Body(httpx2.AsyncByteStream):  # a body that arrives in parts, as over a socket
        async def __aiter__(self) -> Any:
            for part in (b"data: 1\n\n", b"data: 2\n\n"):
                yield part

    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=Body())

    async with hooked_http_client(httpx2.AsyncClient, transport=httpx2.MockTransport(reply)) as client:
        response = await client.send(client.build_request("GET", "http://test/"), stream=True)
        assert isinstance(response.stream, ClosesItsIteration)
        chunks = aiter(response.stream)
        assert await anext(chunks)  # half read
        await response.aclose()
        assert isinstance(response.elapsed, datetime.timedelta)
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)  # closed with the response
        plain = await client.get("http://test/")  # read whole: the body's iteration ran to its end
        assert plain.content.startswith(b"data: 1") and isinstance(plain.elapsed, datetime.timedelta)
