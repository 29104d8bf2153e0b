"""The fast stream path (adapters/_sse.py: raw response, orjson) and the SDK's own parse agree field by
field on every recorded transcript, and on variants of them: the bytes in one piece, in 7-byte
pieces, with CRLF line ends, cut before the end, with an error event, over the output limit.

Each case is served twice by the scripted loopback server, once to an adapter with ``fast_stream``
on and once with it off; the Completion (or the ProviderError) must be the same, apart from timings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import pytest
from adapters_testkit import API_KEY, TRANSCRIPTS, headers_for, make_request, spec_for
from helpers.scripted_server import Reply, ScriptedServer, StreamItem, events_from_file, sse_event

from adapters import create_adapter
from adapters._sse import SSESplitter
from harness.errors import ProviderError
from harness.types import Completion

pytestmark = pytest.mark.anyio

_SSE = {
    "chat": ["oa_chat_stream.sse"],
    "responses": ["oa_responses_stream.sse", "oa_responses_incomplete.sse", "oa_responses_failed.sse"],
    "messages": ["an_stream_thinking.sse", "an_stream_error.sse"],
}
CASES = [(api, name) for api, names in _SSE.items() for name in names]


def _whole(events: list[str]) -> list[StreamItem]:
    return ["".join(events)]


def _pieces(events: list[str], size: int = 7) -> list[StreamItem]:
    raw = "".join(events).encode("utf-8")
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _crlf(events: list[str]) -> list[StreamItem]:
    # CRLF line ends, each CR and its LF in different chunks.
    pieces = "".join(events).replace("\n", "\r\n").split("\r\n")[:-1]
    return [("\n" if i else "") + piece + "\r" for i, piece in enumerate(pieces)] + ["\n"]


def _truncated(events: list[str]) -> list[StreamItem]:
    return list(events[: max(1, len(events) // 2)])


VARIANTS = {"recorded": list, "whole": _whole, "pieces": _pieces, "crlf": _crlf, "truncated": _truncated}


def _fields(result: Completion | ProviderError) -> dict[str, Any]:
    if isinstance(result, Completion):
        d = asdict(replace(result, latency_s=0.0, ttft_s=None))
        d["ttft_seen"] = result.ttft_s is not None
        return d
    return {
        "class": type(result).__name__,
        "message": str(result),
        **{
            k: getattr(result, k, None)
            for k in (
                "provider",
                "retry",
                "status_code",
                "request_id",
                "error_type",
                "generation_started",
                "partial_text",
                "partial_usage",
                "output_bound",
            )
        },
    }


async def _both(
    server: ScriptedServer,
    api: str,
    items: list[StreamItem],
    *,
    spec: dict[str, Any] | None = None,
    **req: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for fast in (True, False):
        server.push(Reply.sse(items, headers=headers_for(api)))
        adapter = create_adapter(
            spec_for(api, **(spec or {})),
            api_key=API_KEY,
            base_url=server.url if api == "messages" else server.url + "/v1",
            stall_timeout_s=5.0,
            connect_timeout_s=2.0,
            fast_stream=fast,
        )
        result: Completion | ProviderError
        try:
            result = await adapter.complete(make_request(api, **req))
        except ProviderError as exc:
            result = exc
        finally:
            await adapter.aclose()
        out.append(_fields(result))
    return out[0], out[1]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("api", "name"), CASES)
async def test_transcript_same_on_both_paths(
    server: ScriptedServer, api: str, name: str, variant: str
) -> None:
    items = VARIANTS[variant](events_from_file(TRANSCRIPTS / name))
    fast, sdk = await _both(server, api, items)
    assert fast == sdk


async def test_recorded_transcripts_are_answers_or_errors_as_expected(server: ScriptedServer) -> None:
    """The equivalence above is not vacuous: the transcripts give answers, usage and errors."""
    fast, _ = await _both(server, "chat", list(events_from_file(TRANSCRIPTS / "oa_chat_stream.sse")))
    assert fast["text"] == "The answer is 42." and fast["usage_known"] and fast["raw_usage"]
    fast, _ = await _both(server, "messages", list(events_from_file(TRANSCRIPTS / "an_stream_thinking.sse")))
    assert fast["usage_known"] and fast["usage"]["reasoning"] >= 0 and fast["ttft_seen"]
    fast, _ = await _both(server, "messages", list(events_from_file(TRANSCRIPTS / "an_stream_error.sse")))
    assert fast["class"] == "ProviderUnavailable" and fast["generation_started"]
    fast, _ = await _both(
        server, "responses", list(events_from_file(TRANSCRIPTS / "oa_responses_failed.sse"))
    )
    assert "class" in fast


def _chat_chunk(choices: Any, usage: Any = None, **extra: Any) -> str:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
    return sse_event({**body, "usage": usage, **extra})


def _delta(finish: str | None = None, **delta: Any) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "finish_reason": finish}]


_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 40},
    "completion_tokens_details": {"reasoning_tokens": 20},
    "prompt_cache_hit_tokens": 40,
    "prompt_cache_miss_tokens": 60,
    "cost": 0.00125,
    "cost_in_usd_ticks": 12_500_000,
    "is_byok": True,
    "cost_details": {"upstream_inference_cost": 0.001},
}


@pytest.mark.parametrize("dialect", ["openai", "deepseek", "xai", "openrouter", "compat"])
async def test_chat_dialect_usage_and_reasoning(server: ScriptedServer, dialect: str) -> None:
    events = [
        _chat_chunk(_delta(role="assistant", content="")),
        _chat_chunk(_delta(reasoning_content="thinking é")),
        _chat_chunk(_delta(reasoning="more")),
        _chat_chunk(_delta(content="Hé llo")),
        _chat_chunk(_delta(refusal="no")),
        _chat_chunk(_delta(finish="stop"), service_tier="flex"),
        _chat_chunk(None, usage=_USAGE),
        "data: [DONE]\n\n",
    ]
    fast, sdk = await _both(server, "chat", list(events), spec={"dialect": dialect})
    assert fast == sdk
    assert fast["usage_known"] and fast["output_bound"] > 0 and fast["service_tier"] == "flex"


@pytest.mark.parametrize(
    "case",
    ["over_limit", "no_finish", "no_usage", "error_chunk", "malformed", "comment_and_event_lines"],
)
@pytest.mark.parametrize("dialect", ["openai", "compat"])
async def test_chat_edge_cases(server: ScriptedServer, case: str, dialect: str) -> None:
    body = [_chat_chunk(_delta(content=f"w{i} ")) for i in range(5)]
    end = [_chat_chunk(_delta(finish="stop")), _chat_chunk([], usage=_USAGE), "data: [DONE]\n\n"]
    req: dict[str, Any] = {}
    if case == "over_limit":
        events, req = body + end, {"max_output_tokens": 3}
    elif case == "no_finish":
        events = [*body, _chat_chunk([], usage=_USAGE), "data: [DONE]\n\n"]
    elif case == "no_usage":
        events = [*body, _chat_chunk(_delta(finish="length")), "data: [DONE]\n\n"]
    elif case == "error_chunk":
        err = {"error": {"message": "overloaded sk-abc123456789", "type": "server_error", "code": "x"}}
        events = [*body[:2], sse_event(err)]
    elif case == "malformed":
        events = [*body[:2], "data: {not json\n\n"]
    else:
        events = [": keep-alive\n\n", "event: chunk\nid: 1\n" + body[0], *body[1:], *end]
    fast, sdk = await _both(server, "chat", list(events), spec={"dialect": dialect}, **req)
    assert fast == sdk


async def test_chat_adapter_remembers_cut_streams_on_both_paths(server: ScriptedServer) -> None:
    events = [_chat_chunk(_delta(content="partial")), "data: [DONE]\n\n"]
    for fast in (True, False):
        server.push(Reply.sse(events, headers=headers_for("chat")))
        adapter = create_adapter(
            spec_for("chat", dialect="compat"),
            api_key=API_KEY,
            base_url=server.url + "/v1",
            connect_timeout_s=2.0,
            fast_stream=fast,
        )
        with pytest.raises(ProviderError) as info:
            await adapter.complete(make_request("chat"))
        assert info.value.error_type == "no_finish_reason"
        assert adapter.cuts_streams is True  # type: ignore[attr-defined]
        await adapter.aclose()


def _rs(event: dict[str, Any]) -> str:
    return sse_event(event, event=str(event["type"]))


@pytest.mark.parametrize("case", ["flat_error", "nested_error", "refusal", "no_terminal"])
async def test_responses_edge_cases(server: ScriptedServer, case: str) -> None:
    created = {"type": "response.created", "response": {"id": "r", "model": "gpt-x", "status": "in_progress"}}
    events = [_rs(created), _rs({"type": "response.output_text.delta", "delta": "Hi", "item_id": "i"})]
    done = {
        "type": "response.completed",
        "response": {
            "id": "r",
            "model": "gpt-x",
            "status": "completed",
            "service_tier": "default",
            "usage": {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13, "cost": "0.5"},
        },
    }
    if case == "flat_error":
        events.append(_rs({"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None}))
    elif case == "nested_error":
        events.append(sse_event({"error": {"message": "boom", "type": "server_error", "code": None}}))
    elif case == "refusal":
        events += [_rs({"type": "response.refusal.delta", "delta": "no"}), _rs(done)]
    fast, sdk = await _both(server, "responses", events)
    assert fast == sdk


@pytest.mark.parametrize("case", ["ping_and_unknown", "error_not_json", "no_stop_reason", "delta_first"])
async def test_messages_edge_cases(server: ScriptedServer, case: str) -> None:
    start = {
        "type": "message_start",
        "message": {"id": "m", "model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}},
    }
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9, "server_tool_use": {"web_search_requests": 1}},
    }
    ev = [sse_event(start, "message_start"), sse_event(text, "content_block_delta")]
    if case == "ping_and_unknown":
        ev += [sse_event({"type": "ping"}, "ping"), sse_event({"type": "new_thing"}, "new_thing")]
        ev += [sse_event(delta, "message_delta"), sse_event({"type": "message_stop"}, "message_stop")]
    elif case == "error_not_json":
        ev.append("event: error\ndata: upstream fell over\n\n")
    elif case == "no_stop_reason":
        ev.append(sse_event({**delta, "delta": {"stop_reason": None}}, "message_delta"))
    else:
        ev = [sse_event(delta, "message_delta"), *ev]
    fast, sdk = await _both(server, "messages", ev)
    assert fast == sdk


def test_splitter_matches_the_sdk_decoder() -> None:
    """The splitter against the SDK's own SSEDecoder on awkward framing, fed in every split."""
    from openai._streaming import SSEDecoder

    raw = b'event: a\r\ndata: {"x":1}\r\n\r\n: c\n\ndata: l1\ndata:l2\n\nevent: b\rdata: {}\r\rdata: tail'
    expected = [(e.event, e.data.encode()) for e in SSEDecoder().iter_bytes(iter([raw])) if e.event or e.data]
    for cut in range(len(raw) + 1):
        splitter = SSESplitter()
        got = splitter.feed(raw[:cut]) + splitter.feed(raw[cut:])
        assert got == expected, cut
    assert json.loads(expected[0][1]) == {"x": 1}


@pytest.mark.parametrize(
    ("api", "name"), [("chat", "oa_chat_stream.sse"), ("messages", "an_stream_thinking.sse")]
)
async def test_gzip_encoded_stream_is_decoded_on_both_paths(
    server: ScriptedServer, api: str, name: str
) -> None:
    import gzip

    raw = gzip.compress("".join(events_from_file(TRANSCRIPTS / name)).encode())
    out = []
    for fast in (True, False):
        server.push(Reply.sse([raw[:40], raw[40:]], headers={**headers_for(api), "content-encoding": "gzip"}))
        adapter = create_adapter(
            spec_for(api),
            api_key=API_KEY,
            base_url=server.url if api == "messages" else server.url + "/v1",
            connect_timeout_s=2.0,
            fast_stream=fast,
        )
        try:
            out.append(_fields(await adapter.complete(make_request(api))))
        finally:
            await adapter.aclose()
    assert out[0] == out[1] and out[0]["finish_reason"] == "stop" and out[0]["text"]
