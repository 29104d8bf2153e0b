"""The simulator's wire shapes match the recorded transcripts: same event names in the same order
(runs of repeated deltas collapsed), same keys at every level."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from itertools import groupby
from pathlib import Path
from typing import Any

import httpx2
import pytest

from harness.sim import SimServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"

pytestmark = pytest.mark.anyio

OA_HEADERS = {"authorization": "Bearer sk-test"}
AN_HEADERS = {"authorization": "Bearer sk-ant-test", "anthropic-version": "2026-10-21"}


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) for every SSE event in ``text``."""
    out: list[tuple[str | None, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        payload = "\n".join(data)
        out.append((name, payload if payload == "[DONE]" else json.loads(payload)))
    return out


def shape(obj: Any) -> Any:
    """The nested key structure of a JSON value (lists represented by their first element)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return None


def collapse(names: list[str]) -> list[str]:
    return [k for k, _ in groupby(names)]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
async def http(sim: SimServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=sim.base_url, timeout=30) as c:
        yield c


async def sse(http: httpx2.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    r = await http.post(path, json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers
    return r.text


def chat_kind(data: Any) -> str:
    if data == "[DONE]":
        return "done"
    if not data["choices"]:
        return "usage"
    c = data["choices"][0]
    if c["finish_reason"]:
        return "finish"
    return "role" if "role" in c["delta"] else "content"


async def test_chat_stream_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = [d for _, d in parse_sse(fixture("oa_chat_stream.sse"))]
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is 6*7?"}],
        "max_completion_tokens": 2048,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    ours = [d for _, d in parse_sse(await sse(http, "/v1/chat/completions", body, OA_HEADERS))]
    assert collapse([chat_kind(d) for d in ours]) == collapse([chat_kind(d) for d in ref])
    ref_by_kind = {chat_kind(d): shape(d) for d in ref if d != "[DONE]"}
    for d in ours[:-1]:
        assert shape(d) == ref_by_kind[chat_kind(d)], chat_kind(d)
    assert len({(d["id"], d["created"], d["model"]) for d in ours[:-1]}) == 1


async def test_chat_nonstream_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = json.loads(fixture("oa_chat_nonstream.json"))
    body = {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "What is 6*7?"}],
        "max_completion_tokens": 9000,
    }
    r = await http.post("/v1/chat/completions", json=body, headers=OA_HEADERS)
    assert shape(r.json()) == shape(ref)


def _event_shapes(events: list[tuple[str | None, Any]]) -> dict[str, Any]:
    return {name or "": shape(d) for name, d in events}


async def test_responses_stream_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = parse_sse(fixture("oa_responses_stream.sse"))
    body = {
        "model": "o4-mini",
        "input": "What is 6*7?",
        "max_output_tokens": 30000,
        "reasoning": {"effort": "low"},
        "store": False,
        "stream": True,
    }
    ours = parse_sse(await sse(http, "/v1/responses", body, OA_HEADERS))
    assert collapse([n or "" for n, _ in ours]) == collapse([n or "" for n, _ in ref])
    assert [d["sequence_number"] for _, d in ours] == list(range(len(ours)))
    assert all(n == d["type"] for n, d in ours)
    ref_shapes = _event_shapes(ref)
    added = [d for n, d in ours if n == "response.output_item.added"]
    ref_added = [d for n, d in ref if n == "response.output_item.added"]
    assert [shape(d) for d in added] == [shape(d) for d in ref_added]
    for name, d in ours:
        if name not in ("response.output_item.added", "response.output_item.done"):
            assert shape(d) == ref_shapes[name or ""], name


async def test_responses_incomplete_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = parse_sse(fixture("oa_responses_incomplete.sse"))
    # o4-mini reasons for hundreds of tokens at least: a limit of 16 is all spent reasoning.
    body = {
        "model": "o4-mini",
        "input": "What is 6*7?",
        "max_output_tokens": 16,
        "reasoning": {"effort": "low"},
        "store": False,
        "stream": True,
    }
    ours = parse_sse(await sse(http, "/v1/responses", body, OA_HEADERS))
    names = [n for n, _ in ours]
    it = iter(names)
    assert all(n in it for n, _ in ref), (names, [n for n, _ in ref])  # transcript is a subsequence
    final = ours[-1][1]
    ref_final = ref[-1][1]
    assert shape(final) == shape(ref_final)
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    usage = final["response"]["usage"]
    assert usage["output_tokens"] == 16 == usage["output_tokens_details"]["reasoning_tokens"]


async def test_responses_error_event_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = parse_sse(fixture("oa_responses_failed.sse"))
    body = {"model": "o4-mini", "input": "What is 6*7?", "max_output_tokens": 30000, "stream": True}
    headers = {**OA_HEADERS, "x-sim-fault": "stream_error_event", "x-sim-fault-after": "2"}
    ours = parse_sse(await sse(http, "/v1/responses", body, headers))
    assert [n for n, _ in ours] == [n for n, _ in ref]
    for (_, a), (_, b) in zip(ours, ref, strict=True):
        assert shape(a) == shape(b)


async def test_anthropic_thinking_stream_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = parse_sse(fixture("an_stream_thinking.sse"))
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8000,
        "messages": [{"role": "user", "content": "What is 6*7?"}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stream": True,
    }
    ours = parse_sse(await sse(http, "/v1/messages", body, AN_HEADERS))

    def kinds(events: list[tuple[str | None, Any]]) -> list[str]:
        out = []
        for n, d in events:
            sub = d.get("delta", {}).get("type") if n == "content_block_delta" else None
            sub = sub or (d.get("content_block", {}).get("type") if n == "content_block_start" else None)
            out.append(f"{n}:{sub}" if sub else str(n))
        return collapse(out)

    assert kinds(ours) == kinds(ref)
    ref_shapes = {k: shape(d) for k, (_, d) in zip(kinds(ref), ref, strict=False)}
    assert shape(ours[0][1]) == shape(ref[0][1])  # message_start
    assert shape(ours[-2][1]) == shape(ref[-2][1])  # message_delta
    assert ref_shapes  # the transcript parsed


async def test_anthropic_nonstream_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = json.loads(fixture("an_nonstream.json"))
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8000,
        "messages": [{"role": "user", "content": "What is 6*7?"}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    r = await http.post("/v1/messages", json=body, headers=AN_HEADERS)
    assert shape(r.json()) == shape(ref)


async def test_anthropic_error_event_matches_transcript(http: httpx2.AsyncClient) -> None:
    ref = [(n, d) for n, d in parse_sse(fixture("an_stream_error.sse")) if n != "ping"]
    body = {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "What is 6*7?"}],
        "stream": True,
    }
    headers = {**AN_HEADERS, "x-sim-fault": "stream_error_event", "x-sim-fault-after": "4"}
    ours = [(n, d) for n, d in parse_sse(await sse(http, "/v1/messages", body, headers)) if n != "ping"]
    assert [n for n, _ in ours] == [n for n, _ in ref]
    assert shape(ours[-1][1]) == shape(ref[-1][1])
    assert shape(ours[1][1]) == shape(ref[1][1])
