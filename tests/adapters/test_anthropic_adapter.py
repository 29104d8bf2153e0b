"""Anthropic Messages through the real SDK over loopback: usage merge, thinking, wire body."""

from __future__ import annotations

from typing import Any

import pytest
from adapters_testkit import AN_HEADERS, make_adapter, make_request, ok_events
from helpers.scripted_server import Reply, ScriptedServer, sse_event

from harness.errors import ConfigError, StreamInterrupted
from harness.types import Completion, RateLimitInfo, Usage

pytestmark = pytest.mark.anyio


async def _run(
    server: ScriptedServer, events: list[str], spec: dict[str, Any] | None = None, **req: Any
) -> Completion:
    server.push(Reply.sse(events, headers=AN_HEADERS))
    adapter = make_adapter("messages", server, **(spec or {}))
    try:
        return await adapter.complete(make_request("messages", **req))
    finally:
        await adapter.aclose()


def _start(usage: dict[str, Any]) -> str:
    msg: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return sse_event({"type": "message_start", "message": msg}, "message_start")


def _text(text: str, index: int = 0) -> list[str]:
    return [
        sse_event(
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        sse_event(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
            "content_block_delta",
        ),
        sse_event({"type": "content_block_stop", "index": index}, "content_block_stop"),
    ]


def _delta(stop: str | None, usage: dict[str, Any]) -> str:
    return sse_event(
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        "message_delta",
    )


STOP = sse_event({"type": "message_stop"}, "message_stop")


async def test_thinking_transcript(server: ScriptedServer) -> None:
    c = await _run(server, ok_events("messages"))
    # input 472 + cache read 2048 (additive); output 187 of which 171 thinking.
    assert c.usage == Usage(input_uncached=472, cache_read=2048, output=187, reasoning=171)
    assert c.usage.input_total == 2520
    assert c.usage_known is True
    assert c.text == "The answer is 42."  # thinking text is not part of the answer
    assert c.finish_reason == "stop" and c.raw_finish_reason == "end_turn"
    assert c.request_id == "req_an_456"
    assert c.response_model == "claude-opus-5-5"
    assert c.service_tier == "standard"
    assert c.ttft_s is not None and c.ttft_s <= c.latency_s
    assert c.rate_limits == RateLimitInfo(
        remaining_requests=999, remaining_tokens=96000, reset_requests_s=0.0
    )


async def test_wire_body_with_thinking_effort_and_temperature(server: ScriptedServer) -> None:
    await _run(
        server,
        ok_events("messages"),
        max_output_tokens=16000,
        thinking_budget=8000,
        reasoning_effort="high",
        temperature=0.0,
    )
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    body = sent.json
    assert body["max_tokens"] == 16000
    assert "max_completion_tokens" not in body and "max_output_tokens" not in body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert body["output_config"] == {"effort": "high"}
    assert body["temperature"] == 0.0
    assert body["system"] == "Answer tersely."
    assert body["messages"] == [{"role": "user", "content": "What is 6*7?"}]
    assert body["stream"] is True
    assert sent.headers["authorization"] == "Bearer sk-test-SECRETKEY0123456789abcdef"
    assert sent.headers["x-stainless-retry-count"] == "0"


async def test_spec_thinking_budget_is_used(server: ScriptedServer) -> None:
    await _run(server, ok_events("messages"), spec={"thinking_budget": 1024}, max_output_tokens=4096)
    body = server.requests[0].json
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "output_config" not in body and "temperature" not in body


async def test_plain_request_has_no_thinking(server: ScriptedServer) -> None:
    await _run(server, ok_events("messages"))
    body = server.requests[0].json
    assert "thinking" not in body and "output_config" not in body


@pytest.mark.parametrize("budget", [256, 1000])
async def test_thinking_budget_not_below_max_tokens_is_refused_before_sending(
    server: ScriptedServer, budget: int
) -> None:
    with pytest.raises(ConfigError, match="thinking budget"):
        await _run(server, ok_events("messages"), thinking_budget=budget, max_output_tokens=256)
    assert server.requests == []


async def test_usage_merge_rule(server: ScriptedServer) -> None:
    # message_start has the real input and a placeholder output; the delta only updates output.
    events = [
        _start(
            {
                "input_tokens": 50,
                "cache_creation_input_tokens": 300,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
                "output_tokens": 2,
            }
        ),
        *_text("ok"),
        _delta(None, {"output_tokens": 10}),
        _delta("max_tokens", {"output_tokens": 25, "input_tokens": None, "cache_read_input_tokens": 40}),
        STOP,
    ]
    c = await _run(server, events)
    assert c.usage == Usage(
        input_uncached=50, cache_read=40, cache_write_5m=100, cache_write_1h=200, output=25
    )
    assert c.finish_reason == "length" and c.raw_finish_reason == "max_tokens"
    assert (
        c.raw_usage is not None and c.raw_usage["output_tokens"] == 25 and c.raw_usage["input_tokens"] == 50
    )


async def test_cache_creation_without_breakdown_is_5m(server: ScriptedServer) -> None:
    events = [
        _start({"input_tokens": 5, "cache_creation_input_tokens": 70, "output_tokens": 1}),
        *_text("ok"),
        _delta("end_turn", {"output_tokens": 3}),
        STOP,
    ]
    c = await _run(server, events)
    assert c.usage == Usage(input_uncached=5, cache_write_5m=70, output=3)


async def test_a_stream_without_a_stop_reason_is_a_transient_error_not_an_answer(
    server: ScriptedServer,
) -> None:
    """No message_delta with a stop reason: the answer may be cut short (issue 11), so the attempt is
    retried and charged as may-be-billed, with what was received kept as partial text."""
    events = [_start({"input_tokens": 5, "output_tokens": 1}), *_text("partial")]
    with pytest.raises(StreamInterrupted) as info:
        await _run(server, events)
    err = info.value
    assert err.error_type == "no_finish_reason"
    assert err.retry.retry and err.generation_started
    assert err.partial_text == "partial"
    assert err.output_bound >= len(b"partial")


async def test_unknown_events_and_pings_are_ignored(server: ScriptedServer) -> None:
    events = [
        _start({"input_tokens": 5, "output_tokens": 1}),
        sse_event({"type": "ping"}, "ping"),
        sse_event({"type": "future_event", "foo": 1}, "future_event"),
        sse_event(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "dropped"}}
        ),
        *_text("kept"),
        _delta("refusal", {"output_tokens": 4}),
        STOP,
    ]
    c = await _run(server, events)
    assert c.text == "kept"
    assert c.finish_reason == "refusal"
    assert c.usage == Usage(input_uncached=5, output=4)
