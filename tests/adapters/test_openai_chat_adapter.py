"""OpenAI Chat Completions through the real SDK over loopback: usage, wire body, compat servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from adapters_testkit import OA_HEADERS, make_adapter, make_request, ok_events
from helpers.scripted_server import Reply, ScriptedServer, sse_event

from harness.errors import StreamInterrupted
from harness.types import Adapter, Completion, RateLimitInfo, Usage

pytestmark = pytest.mark.anyio


async def _run(
    server: ScriptedServer, events: list[str], adapter: Adapter | None = None, **req: Any
) -> Completion:
    server.push(Reply.sse(events, headers=OA_HEADERS))
    own = adapter is None
    a = adapter or make_adapter("chat", server)
    try:
        return await a.complete(make_request("chat", **req))
    finally:
        if own:
            await a.aclose()


def _chunk(choices: Any, usage: Any = None, **extra: Any) -> str:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwen3-8b",
        "choices": choices,
        "usage": usage,
        **extra,
    }
    return sse_event(body)


def _delta(content: str | None = None, finish: str | None = None, **delta: Any) -> list[dict[str, Any]]:
    d = dict(delta)
    if content is not None:
        d["content"] = content
    return [{"index": 0, "delta": d, "finish_reason": finish}]


async def test_transcript_normalises_usage(server: ScriptedServer) -> None:
    c = await _run(server, ok_events("chat"))
    # 1234 prompt with 1024 cached -> 210 uncached; 356 completion of which 320 reasoning.
    assert c.usage == Usage(input_uncached=210, cache_read=1024, output=356, reasoning=320)
    assert c.usage_known is True
    assert c.text == "The answer is 42."
    assert c.finish_reason == "stop" and c.raw_finish_reason == "stop"
    assert c.request_id == "req_oa_123"
    assert c.response_model == "gpt-5.5-2026-07-01"
    assert c.service_tier == "default"
    assert c.raw_usage is not None and c.raw_usage["prompt_tokens"] == 1234
    assert c.ttft_s is not None and 0 < c.ttft_s <= c.latency_s
    assert c.rate_limits == RateLimitInfo(
        remaining_requests=59, remaining_tokens=149984, reset_requests_s=1.0, reset_tokens_s=360.0
    )
    assert c.provider_cost_usd is None


async def test_wire_body(server: ScriptedServer) -> None:
    await _run(
        server,
        ok_events("chat"),
        reasoning_effort="high",
        temperature=0.5,
        seed=7,
        extra_body={"prompt_cache_key": "k"},
        extra_headers={"x-fault": "none"},
    )
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    body = sent.json
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["reasoning_effort"] == "high"
    assert body["temperature"] == 0.5 and body["seed"] == 7
    assert body["prompt_cache_key"] == "k"
    assert body["messages"] == [
        {"role": "system", "content": "Answer tersely."},
        {"role": "user", "content": "What is 6*7?"},
    ]
    assert sent.headers["x-fault"] == "none"
    assert sent.headers["authorization"].startswith("Bearer sk-test-")
    assert sent.headers["x-stainless-retry-count"] == "0"


async def test_spec_parameters_are_sent_when_the_request_has_none(server: ScriptedServer) -> None:
    adapter = make_adapter("chat", server, reasoning_effort="low", extra_body={"top_k": 3})
    try:
        await _run(server, ok_events("chat"), adapter=adapter)
    finally:
        await adapter.aclose()
    body = server.requests[0].json
    assert body["reasoning_effort"] == "low" and body["top_k"] == 3
    assert "temperature" not in body and "seed" not in body


async def test_no_effort_means_no_field(server: ScriptedServer) -> None:
    await _run(server, ok_events("chat"))
    body = server.requests[0].json
    assert "reasoning_effort" not in body and "temperature" not in body


@pytest.mark.parametrize("choices", [None, []])
async def test_compat_final_usage_chunk_with_null_or_empty_choices(
    server: ScriptedServer, choices: Any
) -> None:
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25, "cost": 0.00012}
    events = [
        _chunk(_delta("4", role="assistant")),
        _chunk(_delta("2", finish="stop")),
        _chunk(choices, usage),
        "data: [DONE]\n\n",
    ]
    c = await _run(server, events)
    assert c.text == "42"
    assert c.usage == Usage(input_uncached=20, output=5)
    assert c.usage_known is True
    assert c.provider_cost_usd == "0.00012"
    assert c.raw_usage is not None and c.raw_usage["cost"] == 0.00012


async def test_stream_without_usage_is_usage_unknown(server: ScriptedServer) -> None:
    events = [_chunk(_delta("hi", role="assistant")), _chunk(_delta(finish="stop")), "data: [DONE]\n\n"]
    c = await _run(server, events)
    assert c.usage_known is False
    assert c.usage == Usage()
    assert c.raw_usage is None
    assert c.text == "hi" and c.finish_reason == "stop"


async def test_clean_eof_without_a_finish_reason_is_a_transient_error(server: ScriptedServer) -> None:
    """A stream that ends cleanly before its finish reason may be cut short (issue 11): retried, may
    be billed, never kept as an answer."""
    events = ok_events("chat")[:3]
    with pytest.raises(StreamInterrupted) as info:
        await _run(server, events)
    assert info.value.error_type == "no_finish_reason"
    assert info.value.retry.retry and info.value.generation_started
    assert info.value.partial_text == "The answer is 42."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("length", "length"), ("content_filter", "refusal"), ("tool_calls", "other"), ("stop", "stop")],
)
async def test_finish_reasons(server: ScriptedServer, raw: str, expected: str) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 256, "total_tokens": 259}
    events = [_chunk(_delta("x", role="assistant")), _chunk(_delta(finish=raw)), _chunk([], usage)]
    c = await _run(server, events)
    assert c.finish_reason == expected and c.raw_finish_reason == raw


async def test_refusal_delta_marks_refusal(server: ScriptedServer) -> None:
    events = [_chunk(_delta(refusal="I can't help with that.")), _chunk(_delta(finish="stop"))]
    c = await _run(server, events)
    assert c.finish_reason == "refusal"


async def test_reasoning_delta_sets_ttft_but_not_text(server: ScriptedServer) -> None:
    events = [
        _chunk(_delta(None, reasoning_content="thinking...")),
        _chunk(_delta("42", finish="stop")),
    ]
    c = await _run(server, events)
    assert c.text == "42"
    assert c.ttft_s is not None


async def test_cache_write_tokens_are_inside_prompt(server: ScriptedServer) -> None:
    usage = {
        "prompt_tokens": 5000,
        "completion_tokens": 10,
        "total_tokens": 5010,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000},
    }
    c = await _run(server, [_chunk(_delta("x", finish="stop")), _chunk([], usage)])
    assert c.usage == Usage(input_uncached=1000, cache_read=1000, cache_write_5m=3000, output=10)
    assert c.usage.input_total == 5000


async def test_many_requests_on_one_adapter(server: ScriptedServer) -> None:
    adapter = make_adapter("chat", server)
    try:
        for _ in range(5):
            c = await _run(server, ok_events("chat"), adapter=adapter)
            assert c.usage.output == 356
    finally:
        await adapter.aclose()
    assert len(server.requests) == 5
    assert all(json.loads(r.body)["stream"] for r in server.requests)
