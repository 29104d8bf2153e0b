"""Shared builders for the adapter tests (specs, requests, headers, error bodies per API)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.scripted_server import Reply, ScriptedServer, events_from_file

from adapters import create_adapter
from harness.types import Adapter, Message, ModelSpec, Request

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"

__all__ = [
    "AN_HEADERS",
    "API_KEY",
    "APIS",
    "OA_HEADERS",
    "error_reply",
    "make_adapter",
    "make_request",
    "no_stream_left_open",
    "ok_events",
    "open_stream_iterations",
    "spec_for",
]

API_KEY = "sk-test-SECRETKEY0123456789abcdef"
APIS = ("chat", "responses", "messages")

OA_HEADERS = {
    "x-request-id": "req_oa_123",
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}
AN_HEADERS = {
    "request-id": "req_an_456",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-tokens-remaining": "96000",
    "anthropic-ratelimit-requests-reset": "2000-01-01T00:00:00Z",
}


def spec_for(api: str, **overrides: Any) -> ModelSpec:
    """A spec for the given API; overrides go to the dataclass."""
    if api == "messages":
        base: dict[str, Any] = {
            "name": "anthropic/claude-test",
            "provider": "anthropic",
            "model": "claude-test",
        }
    else:
        base = {"name": "openai/gpt-test", "provider": "openai", "model": "gpt-test"}
    return ModelSpec(api=api, **{**base, **overrides})


def make_adapter(
    api: str,
    server: ScriptedServer,
    *,
    stall_timeout_s: float = 5.0,
    api_key: str = API_KEY,
    max_connections: int | None = None,
    fast_stream: bool | None = None,
    **spec: Any,
) -> Adapter:
    """The real adapter pointed at the scripted server (``max_connections``: pooled clients, as the
    runner makes them)."""
    base_url = server.url if api == "messages" else server.url + "/v1"
    return create_adapter(
        spec_for(api, **spec),
        api_key=api_key,
        base_url=base_url,
        stall_timeout_s=stall_timeout_s,
        connect_timeout_s=2.0,
        max_connections=max_connections,
        fast_stream=fast_stream,
    )


def make_request(api: str = "chat", **overrides: Any) -> Request:
    """A two-message request with a 256-token output limit."""
    fields: dict[str, Any] = {
        "model": "claude-test" if api == "messages" else "gpt-test",
        "messages": (Message("system", "Answer tersely."), Message("user", "What is 6*7?")),
        "max_output_tokens": 256,
    }
    fields.update(overrides)
    return Request(**fields)


_OK_FILES = {
    "chat": "oa_chat_stream.sse",
    "responses": "oa_responses_stream.sse",
    "messages": "an_stream_thinking.sse",
}


def ok_events(api: str) -> list[str]:
    """The verbatim success transcript for the API, as SSE blocks."""
    return events_from_file(TRANSCRIPTS / _OK_FILES[api])


def headers_for(api: str) -> dict[str, str]:
    return dict(AN_HEADERS if api == "messages" else OA_HEADERS)


def error_reply(
    api: str,
    status: int,
    *,
    etype: str,
    code: str | None = None,
    message: str = "boom",
    headers: dict[str, str] | None = None,
) -> Reply:
    """An HTTP error in the provider's body shape (OpenAI nested error; Anthropic envelope)."""
    h = {**headers_for(api), **(headers or {})}
    body: dict[str, Any]
    if api == "messages":
        err: dict[str, Any] = {"type": etype, "message": message}
        if code is not None:
            err["details"] = {"error_code": code}
        body = {"type": "error", "error": err, "request_id": h["request-id"]}
    else:
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return Reply.json(body, status=status, headers=h)


def open_stream_iterations() -> list[Any]:
    """httpx2's response iterations (``BoundAsyncStream.__aiter__`` generators) suspended, not closed."""
    return [
        obj
        for obj in gc.get_objects()
        if type(obj).__name__ == "async_generator"
        and obj.__qualname__ == "BoundAsyncStream.__aiter__"
        and obj.ag_frame is not None  # a closed or finished generator has no frame
    ]


@contextlib.contextmanager
def no_stream_left_open() -> Iterator[None]:
    """Fail if the block leaves an httpx2 response iteration open for the garbage collector.

    An SDK that raises on an error object in a stream may leave the response and httpx2's iterators
    half read: the connection stays checked out, and the iterators' finalizers run whenever, on
    whatever thread, the collector finds them (CI once saw "async generator already executing" from
    the simulator's thread). The collector is off inside the block, so nothing is collected early."""
    gc.collect()
    gc.disable()
    try:
        before = {id(g) for g in open_stream_iterations()}
        yield
        left = [g for g in open_stream_iterations() if id(g) not in before]
    finally:
        gc.enable()
    assert not left, f"{len(left)} response stream(s) left open: {left}"
