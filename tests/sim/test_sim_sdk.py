"""The official SDKs (pinned versions, max_retries=0) drive every simulator endpoint, streaming and
not, lenient and strict; the usage they parse equals what the invoice billed, request by request."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from harness.sim import SimServer
from harness.sim.generate import text_tokens

pytestmark = [
    pytest.mark.anyio,
    # anthropic 2.10 warns that both impersonated Claude models are deprecated (DEPRECATED_MODELS).
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

STRICT = [pytest.param(False, id="lenient"), pytest.param(True, id="strict")]
LONG = "Background. " * 800  # ~2400 prompt tokens: OpenAI may report cached tokens


def _billed(sim: SimServer, request_id: str) -> dict[str, Any]:
    rec = sim.invoice()["requests"][request_id]
    assert rec["billed"] is True
    return rec


def _expect_openai(rec: dict[str, Any], prompt: int, cached: int, output: int, reasoning: int) -> None:
    assert rec["tokens"] == {
        "input_uncached": prompt - cached,
        "cache_read": cached,
        "cache_write_5m": 0,
        "cache_write_1h": 0,
        "output": output,
        "reasoning": reasoning,
    }


@pytest.mark.parametrize("strict", STRICT)
@pytest.mark.parametrize("model", ["o4-mini", "gpt-4o-mini"])
async def test_chat_nonstream_usage_matches_invoice(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], strict: bool, model: str
) -> None:
    oa = make_openai(strict)
    raw = await oa.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": LONG}, {"role": "user", "content": "What is 6*7?"}],
        max_completion_tokens=16000,
    )
    r = raw.parse()
    rid = raw.headers["x-request-id"]
    assert rid.startswith("req_") and r.id.startswith("chatcmpl-")
    u = r.usage
    assert u is not None and u.prompt_tokens_details and u.completion_tokens_details
    rec = _billed(sim, rid)
    assert rec["body_id"] == r.id and rec["status"] == "completed"
    _expect_openai(
        rec,
        u.prompt_tokens,
        u.prompt_tokens_details.cached_tokens or 0,
        u.completion_tokens,
        u.completion_tokens_details.reasoning_tokens or 0,
    )
    visible = u.completion_tokens - (u.completion_tokens_details.reasoning_tokens or 0)
    assert text_tokens(r.choices[0].message.content or "") == visible
    assert (u.completion_tokens_details.reasoning_tokens or 0) > 0 if model == "o4-mini" else True
    assert raw.headers["x-ratelimit-remaining-requests"].isdigit()
    assert Decimal(rec["usd"]) > 0


@pytest.mark.parametrize("strict", STRICT)
@pytest.mark.parametrize("model", ["o4-mini", "gpt-4o-mini"])
async def test_chat_stream_usage_matches_invoice(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], strict: bool, model: str
) -> None:
    oa = make_openai(strict)
    stream = await oa.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": LONG + "What is 6*7?"}],
        max_completion_tokens=16000,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        for c in chunk.choices or []:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and finish == "stop"
    assert usage.prompt_tokens_details and usage.completion_tokens_details
    rid = stream.response.headers["x-request-id"]
    reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    _expect_openai(
        _billed(sim, rid),
        usage.prompt_tokens,
        usage.prompt_tokens_details.cached_tokens or 0,
        usage.completion_tokens,
        reasoning,
    )
    assert text_tokens(text) == usage.completion_tokens - reasoning


async def test_chat_stream_without_include_usage_has_no_usage_but_is_billed(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI]
) -> None:
    oa = make_openai()
    stream = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        max_completion_tokens=300,
        stream=True,
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    rec = _billed(sim, stream.response.headers["x-request-id"])
    assert rec["tokens"]["output"] > 0 and rec["status"] in ("completed", "incomplete")


@pytest.mark.parametrize("strict", STRICT)
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
async def test_responses_usage_matches_invoice(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], strict: bool, stream: bool
) -> None:
    oa = make_openai(strict)
    kwargs: dict[str, Any] = {
        "model": "o4-mini",
        "instructions": "Answer tersely.",
        "input": LONG + "What is 6*7?",
        "max_output_tokens": 30000,
        "reasoning": {"effort": "low"},
    }
    if stream:
        s = await oa.responses.create(stream=True, **kwargs)
        events = [e async for e in s]
        assert events[-1].type == "response.completed"
        response = events[-1].response  # type: ignore[union-attr]
        rid = s.response.headers["x-request-id"]
    else:
        raw = await oa.responses.with_raw_response.create(**kwargs)
        response = raw.parse()
        rid = raw.headers["x-request-id"]
    u = response.usage
    assert u is not None and response.status == "completed" and response.id.startswith("resp_")
    rec = _billed(sim, rid)
    assert rec["body_id"] == response.id
    _expect_openai(
        rec,
        u.input_tokens,
        u.input_tokens_details.cached_tokens,
        u.output_tokens,
        u.output_tokens_details.reasoning_tokens,
    )
    assert text_tokens(response.output_text) == u.output_tokens - u.output_tokens_details.reasoning_tokens


def _expect_anthropic(rec: dict[str, Any], usage: Any) -> None:
    cc = usage.cache_creation
    w1h = cc.ephemeral_1h_input_tokens if cc else 0
    assert rec["tokens"] == {
        "input_uncached": usage.input_tokens,
        "cache_read": usage.cache_read_input_tokens or 0,
        "cache_write_5m": (usage.cache_creation_input_tokens or 0) - w1h,
        "cache_write_1h": w1h,
        "output": usage.output_tokens,
        "reasoning": usage.output_tokens_details.thinking_tokens if usage.output_tokens_details else 0,
    }


@pytest.mark.parametrize("strict", STRICT)
@pytest.mark.parametrize(
    "model,thinking",
    [
        ("claude-sonnet-4-5", True),
        ("claude-sonnet-4-5-20250929", False),
        ("claude-3-5-haiku-20241022", False),
    ],
)
async def test_messages_nonstream_usage_matches_invoice(
    sim: SimServer, make_anthropic: Callable[..., AsyncAnthropic], strict: bool, model: str, thinking: bool
) -> None:
    an = make_anthropic(strict)
    extra: dict[str, Any] = {"thinking": {"type": "enabled", "budget_tokens": 4000}} if thinking else {}
    raw = await an.messages.with_raw_response.create(
        model=model,
        max_tokens=8000,
        system=[{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "What is 6*7?"}],
        **extra,
    )
    m = await raw.parse()
    rid = raw.headers["request-id"]
    assert rid.startswith("req_") and m.id.startswith("msg_")
    rec = _billed(sim, rid)
    assert rec["body_id"] == m.id
    _expect_anthropic(rec, m.usage)
    assert (m.usage.cache_read_input_tokens or 0) + (m.usage.cache_creation_input_tokens or 0) > 0
    texts = [b.text for b in m.content if b.type == "text"]
    thinks = [b.thinking for b in m.content if b.type == "thinking"]
    reasoning = m.usage.output_tokens_details.thinking_tokens if m.usage.output_tokens_details else 0
    assert bool(thinks) == thinking and (reasoning > 0) == thinking
    assert text_tokens("".join(texts)) == m.usage.output_tokens - reasoning
    assert raw.headers["anthropic-ratelimit-requests-remaining"].isdigit()


@pytest.mark.parametrize("strict", STRICT)
@pytest.mark.parametrize("thinking", [True, False])
async def test_messages_stream_usage_matches_invoice(
    sim: SimServer, make_anthropic: Callable[..., AsyncAnthropic], strict: bool, thinking: bool
) -> None:
    an = make_anthropic(strict)
    extra: dict[str, Any] = {"thinking": {"type": "enabled", "budget_tokens": 3000}} if thinking else {}
    async with an.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=12000,
        messages=[{"role": "user", "content": "What is 6*7?"}],
        **extra,
    ) as s:
        final = await s.get_final_message()
        rid = s.response.headers["request-id"]
    _expect_anthropic(_billed(sim, rid), final.usage)
    reasoning = final.usage.output_tokens_details.thinking_tokens if final.usage.output_tokens_details else 0
    assert reasoning <= 3000 and (reasoning > 0) == thinking


async def test_count_tokens_and_models(
    make_anthropic: Callable[..., AsyncAnthropic], make_openai: Callable[..., AsyncOpenAI]
) -> None:
    an, oa = make_anthropic(True), make_openai(True)
    ct = await an.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "What is 6*7?"}], system="Be brief."
    )
    assert ct.input_tokens > 0
    oa_ids = [m.id async for m in oa.models.list()]
    an_ids = [m.id async for m in an.models.list()]
    assert {"o4-mini", "gpt-4o-mini"} <= set(oa_ids)
    assert {"claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022"} <= set(an_ids)
    assert (await oa.models.retrieve("o4-mini")).id == "o4-mini"


async def test_count_tokens_equals_billed_prompt(
    sim: SimServer, make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    an = make_anthropic()
    msgs: Any = [{"role": "user", "content": "Count me, please. " * 20}]
    ct = await an.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=msgs, system="sys")
    m = await an.messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=500, messages=msgs, system="sys"
    )
    u = m.usage
    assert ct.input_tokens == u.input_tokens + (u.cache_read_input_tokens or 0) + (
        u.cache_creation_input_tokens or 0
    )


async def test_x_api_key_auth_is_accepted(sim: SimServer) -> None:
    import httpx2

    async with httpx2.AsyncClient() as c:
        r = await c.post(
            sim.anthropic_base_url + "/v1/messages",
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-3-5-haiku-20241022",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert r.status_code == 200 and r.json()["type"] == "message"
