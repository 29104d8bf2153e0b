"""The Gemini adapter through the real google-genai SDK: against the simulator (usage, thinking, errors,
faults, meter equal to the invoice per call) and against the scripted server (the exact wire shapes
the simulator does not produce: no finish reason, blocked prompts, tool-use tokens, daily quotas)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
from adapters_testkit import no_stream_left_open
from helpers.scripted_server import Cut, Pause, Reply, ScriptedServer

from adapters import create_adapter
from adapters.google_genai import (
    GoogleGenAIAdapter,
    gemini_finish_reason,
    retry_delay_from_details,
    usage_from_gemini,
)
from harness.errors import (
    AuthError,
    BadRequest,
    CallTimeout,
    ConfigError,
    DataError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
)
from harness.models import api_key_for, resolve_model
from harness.pricing.money import usd_to_nano
from harness.pricing.table import PriceTable
from harness.run.retry import RetryPolicy, wait_seconds
from harness.sim import SimServer
from harness.types import Message, Request, Usage

pytestmark = pytest.mark.anyio

API_KEY = "AIzaSyTEST-google-key-0123456789abcdef"
QUESTION = "Which is prime?\nA) 4\nB) 7\nC) 9\nD) 15\nAnswer with: Answer: $LETTER"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=11) as server:
        yield server


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(user_default=False)


def _adapter(base_url: str, model: str = "gemini-2.5-flash", *, stall_s: float = 5.0, **spec: Any) -> Any:
    s = resolve_model(f"google/{model}")
    if spec:
        from dataclasses import replace

        s = replace(s, **spec)
    return create_adapter(s, api_key=API_KEY, base_url=base_url, stall_timeout_s=stall_s, connect_timeout_s=2)


def _request(model: str = "gemini-2.5-flash", *, call_id: str = "call-1", **kw: Any) -> Request:
    headers = {"x-client-request-id": call_id, **kw.pop("extra_headers", {})}
    fields: dict[str, Any] = {
        "model": model,
        "messages": (Message("system", "Answer tersely."), Message("user", QUESTION)),
        "max_output_tokens": 8000,
        "extra_headers": headers,
    }
    fields.update(kw)
    return Request(**fields)


def _record(sim: SimServer, call_id: str) -> dict[str, Any]:
    found = [r for r in sim.invoice()["requests"].values() if r["client_request_id"] == call_id]
    assert len(found) == 1, found
    return found[0]


def _tokens(u: Usage) -> dict[str, int]:
    return u.as_dict()


# ------------------------------------------------------------------------------------ the simulator


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-3-pro-preview",
        "gemini-3.1-pro-preview",
        "gemini-3-flash-preview",
    ],
)
async def test_text_usage_and_meter_equal_the_invoice(sim: SimServer, table: PriceTable, model: str) -> None:
    adapter = _adapter(sim.base_url, model)
    try:
        c = await adapter.complete(_request(model, call_id=f"meter-{model}"))
    finally:
        await adapter.aclose()
    assert c.finish_reason == "stop" and c.raw_finish_reason == "STOP" and c.usage_known
    assert c.text.rstrip().endswith(("Answer: A", "Answer: B", "Answer: C", "Answer: D"))
    assert c.response_model == model and c.request_id and c.ttft_s is not None
    rec = _record(sim, f"meter-{model}")
    assert rec["provider"] == "google" and rec["status"] == "completed"
    assert rec["request_id"] == c.request_id  # responseId
    assert rec["tokens"] == _tokens(c.usage)
    meta = rec["raw_usage"]
    # normalised once: output billed = candidates + thoughts, reasoning = thoughts
    assert c.usage.output == meta["candidatesTokenCount"] + meta.get("thoughtsTokenCount", 0)
    assert c.usage.reasoning == meta.get("thoughtsTokenCount", 0)
    assert c.usage.input_total == meta["promptTokenCount"]
    assert (model == "gemini-2.5-flash-lite") == (c.usage.reasoning == 0)  # Flash-Lite thinks only when asked
    cost = table.lookup("google", model).cost(c.usage)
    assert usd_to_nano(cost) == usd_to_nano(Decimal(rec["usd"]))
    assert c.usage.input_total <= adapter.input_tokens_upper_bound(_request(model))


async def test_wire_request_is_what_the_sdk_sends() -> None:
    server = ScriptedServer()
    with server:
        server.push(Reply.sse([_chunk("Hi", finish="STOP", usage=_META)]))
        adapter = _adapter(server.url, thinking_budget=1024)
        try:
            c = await adapter.complete(_request(temperature=0.3, seed=5))
        finally:
            await adapter.aclose()
        assert c.text == "Hi"
        req = server.requests[0]
    assert req.path.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert req.headers["x-goog-api-key"] == API_KEY
    assert req.headers["x-client-request-id"] == "call-1"
    body = req.json
    assert body["contents"] == [{"role": "user", "parts": [{"text": QUESTION}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "Answer tersely."}]
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 8000 and config["candidateCount"] == 1
    # google-genai sends the ThinkingConfig's model dump (proto field names), which the API accepts too
    assert config["thinkingConfig"] in ({"thinking_budget": 1024}, {"thinkingBudget": 1024})
    assert config["temperature"] == 0.3 and config["seed"] == 5
    # SDK-side features that would re-send (and re-bill) never reach the wire as options
    wire = json.dumps(body)
    assert "automaticContinuation" not in wire and "automatic_continuation" not in wire


async def test_thinking_budget_and_level(sim: SimServer) -> None:
    async def reasoning(model: str, call_id: str, **kw: Any) -> int:
        adapter = _adapter(sim.base_url, model)
        try:
            c = await adapter.complete(_request(model, call_id=call_id, **kw))
        finally:
            await adapter.aclose()
        assert c.usage.reasoning == _record(sim, call_id)["tokens"]["reasoning"]
        return c.usage.reasoning

    assert await reasoning("gemini-2.5-flash", "budget-0", thinking_budget=0) == 0
    assert 0 < await reasoning("gemini-2.5-flash", "budget-600", thinking_budget=600) <= 600
    assert 0 < await reasoning("gemini-2.5-flash-lite", "lite-budget", thinking_budget=1024) <= 1024
    low = [await reasoning("gemini-3-flash-preview", f"low-{i}", reasoning_effort="low") for i in range(4)]
    high = [await reasoning("gemini-3-flash-preview", f"high-{i}", reasoning_effort="high") for i in range(4)]
    assert sum(low) < sum(high)
    # Gemini 2.5 Pro cannot turn thinking off, and 2.5 takes no thinking level: the API's 400, not retried
    for kw in ({"thinking_budget": 0}, {"reasoning_effort": "low"}):
        adapter = _adapter(sim.base_url, "gemini-2.5-pro")
        try:
            with pytest.raises(BadRequest) as info:
                await adapter.complete(_request("gemini-2.5-pro", call_id=f"pro-{kw}", **kw))
        finally:
            await adapter.aclose()
        assert info.value.status_code == 400 and not info.value.retry.retry
        assert not info.value.may_be_billed and info.value.error_type == "INVALID_ARGUMENT"


async def test_thinking_settings_refused_before_sending() -> None:
    adapter = _adapter("http://127.0.0.1:9")
    try:
        with pytest.raises(ConfigError, match="not both"):
            adapter.request_params(_request(thinking_budget=100, reasoning_effort="low"))
        with pytest.raises(ConfigError, match="thinking level"):
            adapter.request_params(_request(reasoning_effort="extreme"))
        with pytest.raises(DataError, match="hosted tool"):
            adapter.request_params(_request(extra_body={"tools": [{"googleSearch": {}}]}))
        with pytest.raises(DataError, match="generationConfig"):
            adapter.request_params(_request(extra_body={"generationConfig": {"maxOutputTokens": 10**6}}))
        ok = adapter.request_params(_request(extra_body={"tools": [{"functionDeclarations": []}]}))
        assert ok["config"]["http_options"]["extra_body"] == {"tools": [{"functionDeclarations": []}]}
    finally:
        await adapter.aclose()


async def test_output_limit_cut_is_length_and_billed(sim: SimServer, table: PriceTable) -> None:
    adapter = _adapter(sim.base_url, "gemini-2.5-flash")
    try:
        c = await adapter.complete(_request(call_id="cut-limit", max_output_tokens=64))
    finally:
        await adapter.aclose()
    assert c.finish_reason == "length" and c.raw_finish_reason == "MAX_TOKENS" and c.usage_known
    assert c.usage.output == 64
    rec = _record(sim, "cut-limit")
    assert rec["status"] == "incomplete"
    assert usd_to_nano(table.lookup("google", "gemini-2.5-flash").cost(c.usage)) == usd_to_nano(
        Decimal(rec["usd"])
    )


async def test_429_retry_delay_from_retry_info_is_honoured(sim: SimServer) -> None:
    adapter = _adapter(sim.base_url)
    try:
        with pytest.raises(RateLimited) as info:
            await adapter.complete(_request(call_id="rl-1", extra_headers={"x-sim-fault": "429"}))
    finally:
        await adapter.aclose()
    err = info.value
    assert err.status_code == 429 and err.error_type == "RESOURCE_EXHAUSTED"
    assert err.retry.retry and err.retry.kind == "rate_limit" and err.retry.retry_after_s == 1.0
    assert not err.may_be_billed
    assert _record(sim, "rl-1")["status"] == "refused"
    # the retry layer waits exactly the server's delay, not its own backoff
    assert wait_seconds(RetryPolicy(), err, 1) == 1.0
    assert wait_seconds(RetryPolicy(), err, 5) == 1.0


@pytest.mark.parametrize(("fault", "cls"), [("500", ProviderUnavailable), ("503", ProviderUnavailable)])
async def test_5xx_before_output_is_free_and_retried(
    sim: SimServer, fault: str, cls: type[ProviderError]
) -> None:
    adapter = _adapter(sim.base_url)
    try:
        with pytest.raises(cls) as info:
            await adapter.complete(_request(call_id=f"5xx-{fault}", extra_headers={"x-sim-fault": fault}))
    finally:
        await adapter.aclose()
    assert info.value.status_code == int(fault) and info.value.retry.kind == "transient"
    assert not info.value.may_be_billed
    assert _record(sim, f"5xx-{fault}")["usd"] == "0"


async def test_unknown_model_is_a_final_404(sim: SimServer) -> None:
    adapter = _adapter(sim.base_url, "gemini-0-nonexistent")
    try:
        with pytest.raises(BadRequest) as info:
            await adapter.complete(_request("gemini-0-nonexistent", call_id="404"))
    finally:
        await adapter.aclose()
    assert info.value.status_code == 404 and not info.value.retry.retry
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "cls", "error_type"),
    [
        ("disconnect", StreamInterrupted, None),
        ("malformed", StreamInterrupted, "malformed_stream"),
        ("error_event", ProviderUnavailable, "UNAVAILABLE"),
    ],
)
async def test_mid_stream_failures_are_retried_and_may_be_billed(
    sim: SimServer, fault: str, cls: type[ProviderError], error_type: str | None
) -> None:
    call_id = f"mid-{fault}"
    adapter = _adapter(sim.base_url)
    try:
        with pytest.raises(cls) as info:
            await adapter.complete(
                _request(call_id=call_id, extra_headers={"x-sim-fault": fault, "x-sim-fault-after": "3"})
            )
    finally:
        await adapter.aclose()
    err = info.value
    assert err.retry.retry and err.may_be_billed  # billed_unless_proven_free: the runner charges it
    if error_type is not None:
        assert err.error_type == error_type
    assert err.partial_text  # three chunks arrived
    assert err.partial_usage is not None and err.partial_usage.input_total > 0
    rec = _record(sim, call_id)
    assert rec["billed"] and Decimal(rec["usd"]) > 0  # the provider bills what it produced


async def test_stall_is_a_timeout_that_may_be_billed(sim: SimServer) -> None:
    adapter = _adapter(sim.base_url, stall_s=0.3)
    try:
        with pytest.raises(CallTimeout) as info:
            await adapter.complete(
                _request(
                    call_id="stall",
                    extra_headers={"x-sim-fault": "stall", "x-sim-fault-after": "2", "x-sim-stall-s": "3"},
                )
            )
    finally:
        await adapter.aclose()
    assert info.value.may_be_billed and info.value.retry.retry and "stalled" in info.value.message


async def test_connection_refused_is_proven_free() -> None:
    adapter = _adapter("http://127.0.0.1:9")
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await adapter.complete(_request())
    finally:
        await adapter.aclose()
    assert not info.value.may_be_billed and info.value.retry.retry


async def test_implicit_cache_hits_are_inside_the_prompt(tmp_path: Any, table: PriceTable) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text('[models."gemini-2.5-flash"]\ncache_hit_rate = 1.0\ncache_min_tokens = 64\n')
    long_question = QUESTION + "\n" + "Context: " + "lorem ipsum dolor sit amet " * 60
    with SimServer(seed=3, profiles=profiles) as s:
        adapter = _adapter(s.base_url)
        try:
            c = await adapter.complete(_request(call_id="cache", messages=(Message("user", long_question),)))
        finally:
            await adapter.aclose()
        rec = _record(s, "cache")
    meta = rec["raw_usage"]
    assert meta["cachedContentTokenCount"] > 0
    assert c.usage.cache_read == meta["cachedContentTokenCount"]
    assert c.usage.input_uncached == meta["promptTokenCount"] - meta["cachedContentTokenCount"]
    assert rec["tokens"] == _tokens(c.usage)
    assert usd_to_nano(table.lookup("google", "gemini-2.5-flash").cost(c.usage)) == usd_to_nano(
        Decimal(rec["usd"])
    )


# ------------------------------------------------------------------------------ the scripted server

_META = {"promptTokenCount": 12, "candidatesTokenCount": 1, "totalTokenCount": 13}


def _chunk(
    text: str | None, *, finish: str | None = None, usage: dict[str, Any] | None = None, thought: bool = False
) -> str:
    cand: dict[str, Any] = {"content": {"role": "model"}, "index": 0}
    if text is not None:
        part: dict[str, Any] = {"text": text}
        if thought:
            part["thought"] = True
        cand["content"]["parts"] = [part]
    if finish is not None:
        cand["finishReason"] = finish
    obj: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
    if usage is not None:
        obj["usageMetadata"] = usage
    return f"data: {json.dumps(obj)}\r\n\r\n"


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


async def _complete(server: ScriptedServer, *replies: Reply, **kw: Any) -> Any:
    server.push(*replies)
    adapter = _adapter(server.url)
    try:
        return await adapter.complete(_request(**kw))
    finally:
        await adapter.aclose()


async def test_usage_with_cache_tool_use_and_thoughts(scripted: ScriptedServer) -> None:
    usage = {
        "promptTokenCount": 5000,
        "cachedContentTokenCount": 4096,
        "toolUsePromptTokenCount": 300,
        "candidatesTokenCount": 40,
        "thoughtsTokenCount": 700,
        "totalTokenCount": 6040,
    }
    c = await _complete(
        scripted,
        Reply.sse(
            [
                _chunk("thinking about it", thought=True, usage={"promptTokenCount": 5000}),
                _chunk("Answer: ", usage={"promptTokenCount": 5000}),
                _chunk("B", finish="STOP", usage=usage),
            ]
        ),
    )
    assert c.text == "Answer: B"  # thought summaries are not the answer
    assert c.usage == Usage(input_uncached=5000 - 4096 + 300, cache_read=4096, output=740, reasoning=700)
    assert c.raw_usage["tool_use_prompt_token_count"] == 300
    assert c.request_id == "resp-1"


async def test_stream_without_finish_reason_is_a_transient_error(scripted: ScriptedServer) -> None:
    with pytest.raises(StreamInterrupted) as info:
        await _complete(scripted, Reply.sse([_chunk("Answer: ", usage=_META), _chunk("B", usage=_META)]))
    err = info.value
    assert err.retry.retry and err.may_be_billed and err.error_type == "no_finish_reason"
    assert err.partial_text == "Answer: B"


async def test_continuation_checkpoint_is_not_an_answer(scripted: ScriptedServer) -> None:
    with pytest.raises(StreamInterrupted, match="CONTINUATION"):
        await _complete(scripted, Reply.sse([_chunk("Answer", finish="CONTINUATION", usage=_META)]))
    assert len(scripted.requests) == 1  # the SDK did not resume by itself (another billed request)


async def test_cut_connection_mid_stream_is_billed(scripted: ScriptedServer) -> None:
    with pytest.raises(StreamInterrupted) as info:
        await _complete(scripted, Reply.sse([_chunk("Answer: ", usage=_META), Cut()]))
    assert info.value.may_be_billed and "mid-stream" in info.value.message


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("SAFETY", "refusal"), ("RECITATION", "refusal"), ("PROHIBITED_CONTENT", "refusal"), ("OTHER", "other")],
)
async def test_finish_reasons(scripted: ScriptedServer, finish: str, reason: str) -> None:
    c = await _complete(scripted, Reply.sse([_chunk(None, finish=finish, usage=_META)]))
    assert (c.finish_reason, c.raw_finish_reason, c.text) == (reason, finish, "")
    assert gemini_finish_reason(finish) == reason


async def test_blocked_prompt_is_a_refusal(scripted: ScriptedServer) -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    c = await _complete(scripted, Reply.sse([f"data: {json.dumps(body)}\r\n\r\n"]))
    assert c.finish_reason == "refusal" and c.raw_finish_reason == "PROMPT_SAFETY"
    assert c.usage == Usage(input_uncached=9) and c.usage_known


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return Reply.json({"error": err}, status=code)


async def test_daily_quota_is_not_retried(scripted: ScriptedServer) -> None:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"},
    ]
    with pytest.raises(RateLimited) as info:
        await _complete(scripted, _error(429, "RESOURCE_EXHAUSTED", "quota", details))
    assert not info.value.retry.retry and not info.value.may_be_billed


async def test_invalid_key_is_an_auth_error_and_redacted(scripted: ScriptedServer) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    with pytest.raises(AuthError) as info:
        await _complete(scripted, _error(400, "INVALID_ARGUMENT", f"API key not valid: {API_KEY}", details))
    assert not info.value.retry.retry and API_KEY not in info.value.message


async def test_error_object_inside_the_stream(scripted: ScriptedServer) -> None:
    err = {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}
    with pytest.raises(ProviderUnavailable) as info:
        await _complete(scripted, Reply.sse([_chunk("Ans", usage=_META), f"data: {json.dumps(err)}\r\n\r\n"]))
    assert info.value.may_be_billed and info.value.retry.retry and info.value.status_code == 200
    assert info.value.partial_text == "Ans"


def test_retry_delay_forms() -> None:
    def err(delay: Any) -> dict[str, Any]:
        return {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}

    assert retry_delay_from_details(err("13s")) == 13.0
    assert retry_delay_from_details(err("0.250s")) == 0.25
    assert retry_delay_from_details(err({"seconds": 2, "nanos": 500_000_000})) == 2.5
    assert retry_delay_from_details(err("soon")) is None
    assert retry_delay_from_details({}) is None


def test_usage_normalisation_unit() -> None:
    from google.genai import types as gt

    meta = gt.GenerateContentResponseUsageMetadata(
        prompt_token_count=100, cached_content_token_count=60, candidates_token_count=10
    )
    assert usage_from_gemini(meta) == Usage(input_uncached=40, cache_read=60, output=10)
    assert usage_from_gemini(gt.GenerateContentResponseUsageMetadata()) == Usage()


def test_key_from_gemini_api_key_then_google_api_key() -> None:
    assert api_key_for("google", {"GEMINI_API_KEY": "g1-key", "GOOGLE_API_KEY": "g2-key"}) == "g1-key"
    assert api_key_for("google", {"GEMINI_API_KEY": " ", "GOOGLE_API_KEY": "g2-key"}) == "g2-key"
    assert api_key_for("google", {}) is None
    spec = resolve_model("google/gemini-2.5-pro")
    assert (spec.provider, spec.api, spec.model) == ("google", "gemini", "gemini-2.5-pro")


def test_simulator_child_inherits_no_google_key() -> None:
    from harness.sim.server import sim_environment

    env = sim_environment({"GEMINI_API_KEY": "x" * 20, "GOOGLE_API_KEY": "y" * 20, "PATH": "/bin"})
    assert env == {"PATH": "/bin"}


async def test_adapter_is_registered_with_our_timeouts_and_no_sdk_retries(sim: SimServer) -> None:
    adapter = _adapter(sim.base_url, stall_s=7.5)
    assert isinstance(adapter, GoogleGenAIAdapter)
    assert (adapter.provider, adapter.api) == ("google", "gemini")
    http = adapter._http
    assert http.timeout.read == 7.5 and http.timeout.connect == 2
    # the SDK passes timeout=None per request; our client keeps its own timeout
    req = http.build_request("POST", sim.base_url, timeout=None)
    assert req.extensions["timeout"]["read"] == 7.5
    options = adapter._client._api_client._http_options
    assert options.retry_options.attempts == 1 and options.api_version == "v1beta"
    assert options.httpx_async_client is http and not adapter._client._api_client.vertexai
    await adapter.aclose()


@pytest.mark.parametrize("fault", [None, "error_event", "disconnect", "malformed"])
async def test_a_call_leaves_no_open_stream_for_the_garbage_collector(
    sim: SimServer, fault: str | None
) -> None:
    # The SDK raises on an error object or a bad line in the stream without closing the response or
    # httpx2's iterators; the adapter closes the response on the call's own task.
    headers = {"x-sim-fault": fault, "x-sim-fault-after": "3"} if fault else {}
    adapter = _adapter(sim.base_url)
    try:
        for i in range(3):
            with no_stream_left_open():
                try:
                    await adapter.complete(_request(call_id=f"gc-{fault}-{i}", extra_headers=headers))
                except ProviderError:
                    assert fault is not None
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("end", [Pause(3.0), Cut()], ids=["stalls", "cut"])
async def test_error_status_whose_body_never_arrives_is_free_and_retried(
    scripted: ScriptedServer, end: Pause | Cut
) -> None:
    # A 503 whose body stalls past the stall timeout or is cut: the status line proves the attempt
    # free; it is classified and retried by its status, not as a stall that may have been billed.
    body = json.dumps({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}).encode()
    headers = {"content-type": "application/json", "retry-after": "3"}
    scripted.push(Reply(status=503, headers=headers, events=[body[:9], end, body[9:]]))
    adapter = _adapter(scripted.url, stall_s=0.3)
    try:
        with anyio.fail_after(20), pytest.raises(ProviderUnavailable) as info:
            await adapter.complete(_request())
    finally:
        await adapter.aclose()
    err = info.value
    assert err.status_code == 503 and not err.may_be_billed and err.retry.retry
    assert err.retry.retry_after_s == 3.0 and "error body could not be read" in err.message
    assert len(scripted.requests) == 1
