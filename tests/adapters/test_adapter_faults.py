"""PROTOCOLS.md §9's fault matrix, through the real SDKs over loopback, for all three APIs.

Every fault must map to the right harness error type, retry decision and ``generation_started``, with
exactly one request reaching the server (SDK retries off), and a one-line message without the key.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import pytest
from adapters_testkit import (
    API_KEY,
    APIS,
    error_reply,
    headers_for,
    make_adapter,
    make_request,
    no_stream_left_open,
    ok_events,
)
from helpers.scripted_server import Cut, Pause, Reply, ScriptedServer, sse_event

from adapters import create_adapter
from harness.errors import (
    AuthError,
    BadRequest,
    CallTimeout,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
)

pytestmark = pytest.mark.anyio


async def _fail(api: str, server: ScriptedServer, reply: Reply, **kw: Any) -> ProviderError:
    server.push(reply)
    adapter = make_adapter(api, server, **kw)
    try:
        with no_stream_left_open(), pytest.raises(ProviderError) as info:
            await adapter.complete(make_request(api))
    finally:
        await adapter.aclose()
    assert len(server.requests) == 1, "the SDK must not retry on its own"
    err = info.value
    assert "\n" not in str(err)
    assert API_KEY not in str(err)
    return err


# (status, error type, code, expected class, retry kind)
STATUS_CASES: list[tuple[int, str, str | None, type[ProviderError], str]] = [
    (400, "invalid_request_error", None, BadRequest, "no"),
    (401, "authentication_error", None, AuthError, "no"),
    (403, "permission_error", None, AuthError, "no"),
    (404, "not_found_error", "model_not_found", BadRequest, "no"),
    (408, "timeout_error", None, CallTimeout, "transient"),
    (409, "conflict_error", None, ProviderUnavailable, "transient"),
    (413, "request_too_large", None, BadRequest, "no"),
    (422, "invalid_request_error", None, BadRequest, "no"),
    (429, "rate_limit_error", "rate_limit_exceeded", RateLimited, "rate_limit"),
    (500, "api_error", None, ProviderUnavailable, "transient"),
    (502, "api_error", None, ProviderUnavailable, "transient"),
    (503, "api_error", None, ProviderUnavailable, "transient"),
    (504, "timeout_error", None, ProviderUnavailable, "transient"),
    (529, "overloaded_error", None, ProviderUnavailable, "transient"),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("status", "etype", "code", "cls", "kind"), STATUS_CASES)
async def test_http_status_maps_to_harness_error(
    api: str,
    server: ScriptedServer,
    status: int,
    etype: str,
    code: str | None,
    cls: type[ProviderError],
    kind: str,
) -> None:
    err = await _fail(api, server, error_reply(api, status, etype=etype, code=code))
    assert type(err) is cls
    assert err.retry.kind == kind
    assert err.retry.retry is (kind != "no")
    assert err.status_code == status
    assert err.generation_started is False
    assert err.request_id == ("req_an_456" if api == "messages" else "req_oa_123")
    assert err.provider == ("anthropic" if api == "messages" else "openai")
    assert err.error_type is not None


@pytest.mark.parametrize("api", APIS)
async def test_429_retry_after_ms_wins_over_seconds(api: str, server: ScriptedServer) -> None:
    reply = error_reply(
        api, 429, etype="rate_limit_error", headers={"retry-after-ms": "150", "retry-after": "7"}
    )
    err = await _fail(api, server, reply)
    assert isinstance(err, RateLimited)
    assert err.retry.retry_after_s == pytest.approx(0.15)


@pytest.mark.parametrize("api", APIS)
async def test_503_retry_after_seconds(api: str, server: ScriptedServer) -> None:
    err = await _fail(api, server, error_reply(api, 503, etype="api_error", headers={"retry-after": "7"}))
    assert err.retry == err.retry.transient(7.0)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("code", ["insufficient_quota", "billing_error", "enforced_spend_limit_reached"])
async def test_quota_429_is_never_retried(api: str, server: ScriptedServer, code: str) -> None:
    etype = "insufficient_quota" if code == "insufficient_quota" and api != "messages" else "rate_limit_error"
    err = await _fail(api, server, error_reply(api, 429, etype=etype, code=code))
    assert isinstance(err, RateLimited)
    assert err.retry.retry is False


@pytest.mark.parametrize("api", APIS)
async def test_x_should_retry_header_wins(api: str, server: ScriptedServer) -> None:
    err = await _fail(
        api, server, error_reply(api, 500, etype="api_error", headers={"x-should-retry": "false"})
    )
    assert isinstance(err, ProviderUnavailable) and err.retry.retry is False
    server.reset()
    err = await _fail(
        api, server, error_reply(api, 400, etype="invalid_request_error", headers={"x-should-retry": "true"})
    )
    assert isinstance(err, BadRequest) and err.retry.retry is True


@pytest.mark.parametrize("api", APIS)
async def test_401_echoing_the_key_does_not_leak_it(api: str, server: ScriptedServer) -> None:
    msg = f"Incorrect API key provided: {API_KEY}. Also sk-test-SECR****cdef and Bearer {API_KEY}"
    err = await _fail(api, server, error_reply(api, 401, etype="authentication_error", message=msg))
    assert isinstance(err, AuthError)
    text = str(err) + repr(err.args) + err.message
    assert API_KEY not in text
    assert "SECRETKEY" not in text and "SECR" not in text
    assert "Incorrect API key provided" in text


@pytest.mark.parametrize("api", APIS)
async def test_cut_mid_stream_is_stream_interrupted(api: str, server: ScriptedServer) -> None:
    events = ok_events(api)
    reply = Reply.sse([*events[:3], Cut()], headers=headers_for(api))
    err = await _fail(api, server, reply)
    assert isinstance(err, StreamInterrupted)
    assert err.generation_started is True
    assert err.retry.kind == "transient"
    assert err.request_id == ("req_an_456" if api == "messages" else "req_oa_123")


@pytest.mark.parametrize("api", APIS)
async def test_cut_after_text_keeps_partial_text_and_usage(api: str, server: ScriptedServer) -> None:
    events = ok_events(api)
    upto = {"chat": 3, "responses": 8, "messages": 10}[api]
    err = await _fail(api, server, Reply.sse([*events[:upto], Cut()], headers=headers_for(api)))
    assert err.generation_started is True
    assert err.partial_text == "The answer is 42."
    if api == "messages":
        # message_start told us the input side (§8): 472 uncached + 2048 cache reads.
        assert err.partial_usage is not None
        assert err.partial_usage.input_uncached == 472
        assert err.partial_usage.cache_read == 2048
    else:
        assert err.partial_usage is None


@pytest.mark.parametrize("api", APIS)
async def test_stall_mid_stream_is_call_timeout(api: str, server: ScriptedServer) -> None:
    events = ok_events(api)
    reply = Reply.sse([*events[:2], Pause(3.0), *events[2:]], headers=headers_for(api))
    with anyio.fail_after(2.5):
        err = await _fail(api, server, reply, stall_timeout_s=0.3)
    assert isinstance(err, CallTimeout)
    assert err.generation_started is True
    assert err.retry.kind == "transient"


@pytest.mark.parametrize("api", APIS)
async def test_stall_before_headers_is_call_timeout_and_may_be_billed(
    api: str, server: ScriptedServer
) -> None:
    # The request was sent and the provider may be generating: no status arrived, so nothing proves
    # the attempt free (invariant 11); the runner charges its reservation.
    reply = Reply.sse(ok_events(api), headers=headers_for(api), delay_s=3.0)
    with anyio.fail_after(2.5):
        err = await _fail(api, server, reply, stall_timeout_s=0.3)
    assert isinstance(err, CallTimeout)
    assert err.generation_started is True
    assert err.may_be_billed is True
    assert err.retry.retry is True


def _error_with_unreadable_body(api: str, status: int, end: Pause | Cut, **headers: str) -> Reply:
    """An HTTP error whose status line and headers arrive, then its body stalls or is cut."""
    whole = error_reply(api, status, etype="api_error", headers=headers)
    return Reply(status=status, headers=whole.headers, events=[whole.body[:9], end, whole.body[9:]])


@pytest.mark.parametrize("fast_stream", [True, False])
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("end", [Pause(3.0), Cut()], ids=["stalls", "cut"])
@pytest.mark.parametrize("status", [500, 429])
async def test_error_status_whose_body_never_arrives_is_classified_by_its_status(
    api: str, server: ScriptedServer, end: Pause | Cut, fast_stream: bool, status: int
) -> None:
    # The OpenAI SDK reads an error's body outside the code that wraps transport failures, so a stall
    # or a cut there arrives as a raw httpx2 error (CI saw a whole run crash on one). The status line
    # was an error, before any output: the attempt is free, and classified and retried by its status.
    reply = _error_with_unreadable_body(api, status, end, **{"retry-after": "7"})
    # The body's pause outlasts the stall timeout, so the error must be the unread body's; the
    # deadline is only against a hang (the first adapter of an SDK imports it, seconds on a busy CI).
    with anyio.fail_after(20):
        err = await _fail(api, server, reply, stall_timeout_s=0.3, fast_stream=fast_stream)
    assert type(err) is (RateLimited if status == 429 else ProviderUnavailable)
    assert err.status_code == status and err.retry.retry is True
    assert err.retry.kind == ("rate_limit" if status == 429 else "transient")
    assert err.retry.retry_after_s == 7.0
    assert err.generation_started is False and err.may_be_billed is False
    assert "error body could not be read" in str(err)
    assert err.request_id == ("req_an_456" if api == "messages" else "req_oa_123")


@pytest.mark.parametrize("api", APIS)
async def test_connection_refused_is_retryable_and_not_started(api: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from adapters_testkit import spec_for

    base = f"http://127.0.0.1:{port}" + ("" if api == "messages" else "/v1")
    adapter = create_adapter(spec_for(api), api_key=API_KEY, base_url=base, connect_timeout_s=1.0)
    try:
        with pytest.raises(ProviderError) as info:
            await adapter.complete(make_request(api))
    finally:
        await adapter.aclose()
    assert isinstance(info.value, ProviderUnavailable)
    assert info.value.retry.retry is True
    assert info.value.generation_started is False


# -- error objects inside the 200 stream ----------------------------------------------------------


def _stream_error_event(api: str, etype: str, code: str | None = None) -> str:
    if api == "messages":
        return sse_event(
            {"type": "error", "error": {"type": etype, "message": "Overloaded"}, "request_id": "req_x"},
            "error",
        )
    if api == "responses":
        err = {"type": etype, "code": code, "message": "The server is overloaded.", "param": None}
        return sse_event({"type": "error", "sequence_number": 2, "error": err}, "error")
    return sse_event({"error": {"message": "boom", "type": etype, "param": None, "code": code}})


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("etype", "code", "cls", "kind"),
    [
        ("overloaded_error", None, ProviderUnavailable, "transient"),
        ("api_error", None, ProviderUnavailable, "transient"),
        ("server_error", None, ProviderUnavailable, "transient"),
        ("service_unavailable_error", None, ProviderUnavailable, "transient"),
        ("tokens", "rate_limit_exceeded", RateLimited, "rate_limit"),
        ("insufficient_quota", "insufficient_quota", BadRequest, "no"),
        ("invalid_request_error", None, BadRequest, "no"),
    ],
)
async def test_error_object_in_stream(
    api: str, server: ScriptedServer, etype: str, code: str | None, cls: type[ProviderError], kind: str
) -> None:
    events = ok_events(api)
    head = {"chat": 2, "responses": 2, "messages": 1}[api]
    reply = Reply.sse([*events[:head], _stream_error_event(api, etype, code)], headers=headers_for(api))
    err = await _fail(api, server, reply)
    assert type(err) is cls
    assert err.retry.kind == kind
    assert err.generation_started is True
    assert err.status_code == 200


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fast_stream", [True, False])
async def test_pooled_clients_close_what_an_error_object_left_open(
    api: str, server: ScriptedServer, fast_stream: bool
) -> None:
    # The runner's clients come from a ClientPool (max_connections given); ``_fail`` checks that no
    # response iteration is left for the garbage collector, on our reader and on the SDK's.
    events = ok_events(api)
    reply = Reply.sse([*events[:2], _stream_error_event(api, "api_error")], headers=headers_for(api))
    err = await _fail(api, server, reply, max_connections=4, fast_stream=fast_stream)
    assert type(err) is ProviderUnavailable


@pytest.mark.parametrize("api", APIS)
async def test_malformed_event_is_stream_interrupted(api: str, server: ScriptedServer) -> None:
    events = ok_events(api)
    bad = "event: content_block_delta\ndata: {not json\n\n" if api == "messages" else "data: {not json\n\n"
    if api == "responses":
        bad = "event: response.output_text.delta\ndata: {not json\n\n"
    err = await _fail(api, server, Reply.sse([*events[:2], bad, *events[2:]], headers=headers_for(api)))
    assert isinstance(err, StreamInterrupted)
    assert err.generation_started is True and err.retry.retry is True


async def test_anthropic_error_transcript(server: ScriptedServer) -> None:
    from adapters_testkit import TRANSCRIPTS
    from helpers.scripted_server import events_from_file

    events = events_from_file(TRANSCRIPTS / "an_stream_error.sse")
    err = await _fail("messages", server, Reply.sse(events, headers=headers_for("messages")))
    assert isinstance(err, ProviderUnavailable)
    assert err.retry.retry is True
    assert err.error_type == "overloaded_error"
    assert err.partial_text == "The ans"
    assert err.partial_usage is not None and err.partial_usage.input_uncached == 472
    assert err.request_id == "req_an_456"


@pytest.mark.parametrize("api", APIS)
async def test_cancellation_is_not_swallowed(api: str, server: ScriptedServer) -> None:
    events = ok_events(api)
    server.push(Reply.sse([*events[:2], Pause(5.0), *events[2:]], headers=headers_for(api)))
    adapter = make_adapter(api, server)
    try:
        with anyio.move_on_after(0.3) as scope:
            await adapter.complete(make_request(api))
        assert scope.cancelled_caught, "cancellation must propagate out of complete()"
        # The stream was closed: the server saw the client go away.
        with anyio.fail_after(3):
            while server.disconnects == 0:  # noqa: ASYNC110 - set by the server thread, not a task
                await anyio.sleep(0.02)
        # And the adapter still works afterwards.
        server.push(Reply.sse(events, headers=headers_for(api)))
        done = await adapter.complete(make_request(api))
        assert done.usage_known
    finally:
        await adapter.aclose()


def test_error_bodies_are_valid_json() -> None:
    for api in APIS:
        reply = error_reply(api, 500, etype="api_error")
        assert json.loads(reply.body)
