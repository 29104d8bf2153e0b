"""OpenAI Responses through the real SDK over loopback: terminal events, error shapes, wire body."""

from __future__ import annotations

from typing import Any

import pytest
from adapters_testkit import OA_HEADERS, TRANSCRIPTS, make_adapter, make_request, ok_events
from helpers.scripted_server import Reply, ScriptedServer, events_from_file, sse_event

from harness.errors import ProviderError, ProviderUnavailable, RateLimited, StreamInterrupted
from harness.types import Completion, Usage

pytestmark = pytest.mark.anyio


async def _run(server: ScriptedServer, events: list[str], **req: Any) -> Completion:
    server.push(Reply.sse(events, headers=OA_HEADERS))
    adapter = make_adapter("responses", server)
    try:
        return await adapter.complete(make_request("responses", **req))
    finally:
        await adapter.aclose()


async def _fail(server: ScriptedServer, events: list[str]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await _run(server, events)
    assert len(server.requests) == 1
    return info.value


async def test_transcript_normalises_usage(server: ScriptedServer) -> None:
    c = await _run(server, ok_events("responses"))
    assert c.usage == Usage(input_uncached=210, cache_read=1024, output=356, reasoning=320)
    assert c.usage_known is True
    assert c.text == "The answer is 42."
    assert c.finish_reason == "stop" and c.raw_finish_reason == "completed"
    assert c.request_id == "req_oa_123"
    assert c.response_model == "gpt-5.5-2026-07-01"
    assert c.service_tier == "default"
    assert c.raw_usage is not None and c.raw_usage["input_tokens"] == 1234
    assert c.ttft_s is not None


async def test_wire_body(server: ScriptedServer) -> None:
    # extra_body reaches the wire (billing-relevant keys such as service_tier are refused: see
    # tests/harness/test_extra_body.py).
    await _run(server, ok_events("responses"), reasoning_effort="medium", extra_body={"truncation": "auto"})
    sent = server.requests[0]
    assert sent.path == "/v1/responses"
    body = sent.json
    assert body["max_output_tokens"] == 256
    assert "max_tokens" not in body and "max_completion_tokens" not in body
    assert body["reasoning"] == {"effort": "medium"}
    assert body["store"] is False and body["stream"] is True
    assert body["instructions"] == "Answer tersely."
    assert body["input"] == [{"role": "user", "content": "What is 6*7?"}]
    assert body["truncation"] == "auto"
    assert "reasoning" not in (await _body_without_effort(server))


async def _body_without_effort(server: ScriptedServer) -> dict[str, Any]:
    server.reset()
    await _run(server, ok_events("responses"))
    body: dict[str, Any] = server.requests[0].json
    return body


async def test_incomplete_is_length_with_usage(server: ScriptedServer) -> None:
    c = await _run(server, events_from_file(TRANSCRIPTS / "oa_responses_incomplete.sse"))
    assert c.finish_reason == "length"
    assert c.raw_finish_reason == "max_output_tokens"
    assert c.usage_known is True
    assert c.usage == Usage(input_uncached=1234, output=2048, reasoning=2048)
    assert c.text == ""


async def test_nested_error_transcript_raises_retryable(server: ScriptedServer) -> None:
    err = await _fail(server, events_from_file(TRANSCRIPTS / "oa_responses_failed.sse"))
    assert isinstance(err, ProviderUnavailable)
    assert err.retry.retry is True
    assert err.generation_started is True
    assert err.error_type == "service_unavailable_error"


def _failed_event(code: str, usage: dict[str, Any] | None = None) -> str:
    resp = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-test",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": "failed",
        "error": {"code": code, "message": "it failed"},
        "usage": usage,
    }
    return sse_event({"type": "response.failed", "sequence_number": 3, "response": resp}, "response.failed")


async def test_flat_error_then_failed(server: ScriptedServer) -> None:
    events = ok_events("responses")[:2]
    flat = {
        "type": "error",
        "sequence_number": 2,
        "code": "rate_limit_exceeded",
        "message": "slow down",
        "param": None,
    }
    err = await _fail(server, [*events, sse_event(flat, "error"), _failed_event("server_error")])
    assert isinstance(err, RateLimited)
    assert err.retry.kind == "rate_limit"
    assert err.generation_started is True
    assert "slow down" in str(err)


async def test_response_failed_alone_carries_partial_usage(server: ScriptedServer) -> None:
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 107,
    }
    err = await _fail(server, [*ok_events("responses")[:2], _failed_event("server_error", usage)])
    assert isinstance(err, ProviderUnavailable) and err.retry.retry
    assert err.partial_usage == Usage(input_uncached=100, output=7)


async def test_failed_with_non_retryable_code(server: ScriptedServer) -> None:
    err = await _fail(server, [*ok_events("responses")[:2], _failed_event("invalid_prompt")])
    assert err.retry.retry is False


async def test_stream_ending_without_terminal_event_is_a_transient_error(server: ScriptedServer) -> None:
    with pytest.raises(StreamInterrupted) as info:
        await _run(server, ok_events("responses")[:-1])
    assert info.value.error_type == "no_finish_reason"
    assert info.value.retry.retry and info.value.generation_started
    assert info.value.partial_text == "The answer is 42."


async def test_cache_write_ttl_split(server: ScriptedServer) -> None:
    events = ok_events("responses")
    done = events[-1].replace(
        '"input_tokens_details":{"cached_tokens":1024,"cache_write_tokens":0}',
        '"input_tokens_details":{"cached_tokens":1024,"cache_write_tokens":200,'
        '"cache_write_tokens_details":{"ttl_30m_tokens":150,"ttl_12h_tokens":50}}',
    )
    assert done != events[-1]
    c = await _run(server, [*events[:-1], done])
    assert c.usage == Usage(
        input_uncached=10, cache_read=1024, cache_write_5m=150, cache_write_1h=50, output=356, reasoning=320
    )
