"""The chat adapter's direct body (``client.post`` without ``create``'s request-parameter transform)
changes nothing on the wire: for every body the adapter builds, the SDK's transform gives exactly the
same body (same fields, same values, same order), and the request the loopback server receives (method,
path, headers, authentication, body bytes) is the same on both paths, as is the Completion."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import pytest
from adapters_testkit import API_KEY, TRANSCRIPTS, headers_for, make_request, spec_for
from helpers.scripted_server import Reply, ScriptedServer, events_from_file
from openai._utils import async_maybe_transform
from openai.resources.chat.completions import completions as sdk_completions
from openai.types.chat import completion_create_params

from adapters import create_adapter
from adapters.openai_chat import OpenAIChatAdapter, _direct_body
from harness.types import Image, Message, Request

pytestmark = pytest.mark.anyio

SYSTEM_AND_USER = (Message("system", "Answer tersely."), Message("user", 'What is 6*7? ünïcode ✓ "q" \\ \n'))

#: (spec overrides, request overrides): every shape of plain-text body the adapter builds
BODIES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {}),
    ({"dialect": "compat"}, {}),  # max_tokens as well
    ({}, {"reasoning_effort": "high"}),
    ({"reasoning_effort": "low"}, {"temperature": 0.0}),
    ({}, {"temperature": 0.7, "seed": 12345}),
    ({}, {"temperature": 1}),
    ({}, {"messages": SYSTEM_AND_USER}),
    ({}, {"messages": (Message("user", ""),)}),
    ({}, {"extra_body": {"metadata": {"k": "v"}, "top_p": 0.5}}),
    ({}, {"extra_headers": {"x-custom": "1"}}),
    ({"dialect": "openrouter"}, {"extra_body": {"provider": {"order": ["a"]}}, "seed": 1}),
    ({"extra_body": {"user": "u"}}, {"reasoning_effort": "minimal", "max_output_tokens": 1}),
]


def _adapter(server: ScriptedServer, spec: dict[str, Any], *, direct: bool) -> OpenAIChatAdapter:
    adapter = create_adapter(
        spec_for("chat", **spec),
        api_key=API_KEY,
        base_url=server.url + "/v1",
        stall_timeout_s=5.0,
        connect_timeout_s=2.0,
    )
    assert isinstance(adapter, OpenAIChatAdapter)
    adapter.direct_body = direct
    return adapter


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("spec", "req"), BODIES)
async def test_the_sdk_transform_gives_exactly_the_direct_body(
    spec: dict[str, Any], req: dict[str, Any]
) -> None:
    adapter = create_adapter(spec_for("chat", **spec), api_key=API_KEY, base_url="http://127.0.0.1:9/v1")
    assert isinstance(adapter, OpenAIChatAdapter)
    params = adapter.request_params(make_request("chat", **req))
    body = _direct_body(params)
    assert body is not None
    fields = {k: v for k, v in params.items() if k not in ("extra_body", "extra_headers")}
    assert body == fields
    transformed = await async_maybe_transform(body, completion_create_params.CompletionCreateParamsStreaming)
    assert transformed == body
    assert json.dumps(transformed) == json.dumps(body)  # the same order of fields, too
    await adapter.aclose()


def test_bodies_the_transform_might_change_take_the_sdk_path() -> None:
    adapter = create_adapter(spec_for("chat"), api_key=API_KEY, base_url="http://127.0.0.1:9/v1")
    assert isinstance(adapter, OpenAIChatAdapter)
    image = Image("image/png", b"\x89PNG\r\n\x1a\n")
    with_image = make_request("chat", messages=(Message("user", "Look.", images=(image,)),))
    assert _direct_body(adapter.request_params(with_image)) is None  # content parts
    params = adapter.request_params(make_request("chat"))
    assert _direct_body(params) is not None
    assert _direct_body({**params, "response_format": {"type": "json_object"}}) is None  # unknown field
    assert _direct_body({**params, "seed": True}) is None  # a bool is no int here
    assert _direct_body({**params, "stream_options": {"include_usage": False}}) is None
    assert _direct_body(adapter.request_params(make_request("chat"), stream=False)) is None


async def _one(
    server: ScriptedServer, spec: dict[str, Any], request: Request, *, direct: bool
) -> tuple[Any, Any]:
    server.reset()
    server.push(Reply.sse(events_from_file(TRANSCRIPTS / "oa_chat_stream.sse"), headers=headers_for("chat")))
    adapter = _adapter(server, spec, direct=direct)
    try:
        result = await adapter.complete(request)
    finally:
        await adapter.aclose()
    (recorded,) = server.requests
    return recorded, replace(result, latency_s=0.0, ttft_s=None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("spec", "req"), BODIES)
async def test_both_paths_send_the_same_request_and_read_the_same_answer(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any], req: dict[str, Any]
) -> None:
    creates: list[int] = []
    create = sdk_completions.AsyncCompletions.create

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        creates.append(1)
        return await create(self, *args, **kwargs)

    monkeypatch.setattr(sdk_completions.AsyncCompletions, "create", counted)
    request = make_request("chat", **req)
    direct, direct_result = await _one(server, spec, request, direct=True)
    assert creates == []  # the direct path really skipped create()
    sdk, sdk_result = await _one(server, spec, request, direct=False)
    assert creates == [1]
    assert (direct.method, direct.path) == (sdk.method, sdk.path) == ("POST", "/v1/chat/completions")
    assert direct.headers == sdk.headers
    assert direct.headers["authorization"] == f"Bearer {API_KEY}"
    assert direct.body == sdk.body  # byte for byte
    assert asdict(direct_result) == asdict(sdk_result)
    if "max_output_tokens" not in req:  # (a 1-token limit cuts the transcript's answer short)
        assert direct_result.text == "The answer is 42." and direct_result.usage_known
