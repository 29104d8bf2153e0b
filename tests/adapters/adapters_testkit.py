"""Shared builders for the adapter tests (specs, requests, headers, error bodies per API)."""

from __future__ import annotations

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
    "ok_events",
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
    api: str, server: ScriptedServer, *, stall_timeout_s: float = 5.0, api_key: str = API_KEY, **spec: Any
) -> Adapter:
    """The real adapter pointed at the scripted server."""
    base_url = server.url if api == "messages" else server.url + "/v1"
    return create_adapter(
        spec_for(api, **spec),
        api_key=api_key,
        base_url=base_url,
        stall_timeout_s=stall_timeout_s,
        connect_timeout_s=2.0,
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
