"""Batch lines carry the live call's body; result lines parse into the live path's Completion."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import create_adapter
from adapters.batch import AnthropicBatchClient, OpenAIBatchClient, batch_client, has_batch_api
from harness.models import resolve_model
from harness.types import Message, Request, Usage

pytestmark = pytest.mark.anyio


def _request(model: str, **kw: Any) -> Request:
    return Request(
        model=model,
        messages=(Message("system", "Be brief."), Message("user", "What is 2+2?")),
        max_output_tokens=64,
        extra_headers={"x-client-request-id": "abc"},
        **kw,
    )


async def test_openai_line_is_the_live_body_without_streaming() -> None:
    spec = resolve_model("openai/gpt-4o-mini")
    adapter = create_adapter(spec, api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    try:
        client = batch_client(adapter)
        assert isinstance(client, OpenAIBatchClient) and has_batch_api(spec)
        request = _request(spec.model, temperature=0.0)
        line = client.line(request, "tb_1")
        live = adapter.request_params(request, stream=False)  # type: ignore[attr-defined]
        assert line["custom_id"] == "tb_1" and line["url"] == "/v1/chat/completions"
        assert line["body"] == {k: v for k, v in live.items() if k != "extra_headers"}
        assert "stream" not in line["body"]
        result = client.parse(
            {
                "id": "batch_req_1",
                "custom_id": "tb_1",
                "response": {
                    "status_code": 200,
                    "request_id": "req_1",
                    "body": {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 1,
                        "model": "gpt-4o-mini-2024-07-18",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "4"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 20,
                            "completion_tokens": 1,
                            "total_tokens": 21,
                            "prompt_tokens_details": {"cached_tokens": 8},
                        },
                    },
                },
                "error": None,
            }
        )
        assert result.kind == "succeeded" and result.completion is not None
        c = result.completion
        assert (c.text, c.finish_reason, c.usage_known) == ("4", "stop", True)
        assert c.usage == Usage(input_uncached=12, cache_read=8, output=1)
        assert c.request_id == "req_1"
        expired = client.parse(
            {"custom_id": "tb_2", "response": None, "error": {"code": "batch_expired", "message": "x"}}
        )
        assert expired.kind == "expired" and expired.completion is None
        errored = client.parse(
            {
                "custom_id": "tb_3",
                "response": {"status_code": 500, "body": {"error": {"type": "server_error", "message": "m"}}},
                "error": None,
            }
        )
        assert (errored.kind, errored.error_type, errored.http_status) == ("errored", "server_error", 500)
    finally:
        await adapter.aclose()


async def test_anthropic_line_and_result() -> None:
    spec = resolve_model("anthropic/claude-3-5-haiku-20241022")
    adapter = create_adapter(spec, api_key="sk-ant-test", base_url="http://127.0.0.1:9")
    try:
        client = batch_client(adapter)
        assert isinstance(client, AnthropicBatchClient)
        line = client.line(_request(spec.model), "tb_1")
        assert line["custom_id"] == "tb_1"
        params = line["params"]
        assert params["system"] == "Be brief." and params["max_tokens"] == 64
        assert params["messages"] == [{"role": "user", "content": "What is 2+2?"}]
        assert "stream" not in params and "extra_headers" not in params
        result = client.parse(
            {
                "custom_id": "tb_1",
                "result": {
                    "type": "succeeded",
                    "message": {
                        "id": "msg_1",
                        "model": spec.model,
                        "content": [{"type": "text", "text": "4"}],
                        "stop_reason": "end_turn",
                        "usage": {
                            "input_tokens": 10,
                            "output_tokens": 3,
                            "cache_read_input_tokens": 2,
                            "cache_creation_input_tokens": 0,
                            "service_tier": "batch",
                        },
                    },
                },
            }
        )
        assert result.completion is not None
        assert result.completion.usage == Usage(input_uncached=10, cache_read=2, output=3)
        assert result.completion.service_tier == "batch" and result.completion.finish_reason == "stop"
        for kind in ("expired", "canceled"):
            assert client.parse({"custom_id": "x", "result": {"type": kind}}).kind == kind
    finally:
        await adapter.aclose()


def test_models_without_a_batch_api_run_live() -> None:
    for name in (
        "deepseek/deepseek-chat",
        "xai/grok-4",
        "openai-responses/o4-mini",
    ):
        assert not has_batch_api(resolve_model(name)), name
    assert has_batch_api(resolve_model("openai/o4-mini"))


async def test_gemini_line_is_the_live_request_inline() -> None:
    from adapters.batch import GoogleBatchClient

    spec = resolve_model("google/gemini-2.5-flash")
    adapter = create_adapter(spec, api_key="k", base_url="http://127.0.0.1:9")
    try:
        client = batch_client(adapter)
        assert isinstance(client, GoogleBatchClient) and has_batch_api(spec)
        request = _request(spec.model)
        line = client.line(request, "tb_1")
        live = adapter.request_params(request)  # type: ignore[attr-defined]
        assert line["metadata"] == {"key": "tb_1"} and line["contents"] == live["contents"]
        assert line["config"] == {k: v for k, v in live["config"].items() if k != "http_options"}
        assert line["config"]["system_instruction"] == "Be brief."
    finally:
        await adapter.aclose()
