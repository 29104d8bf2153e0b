"""Reservations at the dearest tier a request can be billed at (issue 10, defect 3).

The provider, not the request, says which service tier was used (OpenAI ``service_tier`` in the
response, Anthropic ``usage.service_tier``): a project whose default is priority processing is billed
priority prices for a request that asked for nothing. ``Price.worst_case`` must therefore cover every
tier (and every long-context tier of it) that the meter could price the response at.
"""

from __future__ import annotations

import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers.scripted_server import Reply, ScriptedServer, sse_event  # noqa: E402

from adapters import create_adapter  # noqa: E402
from harness.pricing.cost import Price, Tier, Variant  # noqa: E402
from harness.pricing.money import usd_to_nano  # noqa: E402
from harness.pricing.table import PriceTable  # noqa: E402
from harness.types import Message, ModelSpec, Request, Usage  # noqa: E402

_TABLE = PriceTable.load(user_default=False)
_REPORTED = (None, "default", "auto", "standard", "flex", "priority", "scale", "batch")


def test_unrequested_priority_is_inside_the_reservation() -> None:
    gpt4o = _TABLE.lookup("openai", "gpt-4o")
    assert "priority" in gpt4o.variants
    bound = gpt4o.worst_case(10_000, 1_000)
    assert gpt4o.cost(Usage(input_uncached=10_000, output=1_000), service_tier="priority") <= bound


def test_the_priority_variants_own_long_context_tier_is_covered() -> None:
    row = Price(
        provider="x",
        model="m",
        input=D("1"),
        output=D("2"),
        tiers=(Tier(threshold=1_000, input=D("2"), output=D("4")),),
        variants={
            "priority": Variant(
                input=D("3"), output=D("6"), tiers=(Tier(threshold=1_000, input=D("9"), output=D("18")),)
            )
        },
    )
    bound = row.worst_case(5_000, 100)
    assert bound == (5_000 * D("9") + 100 * D("18")) / 1_000_000
    assert row.cost(Usage(input_uncached=5_000, output=100), service_tier="priority") <= bound


@pytest.mark.parametrize("row", _TABLE.rows(history=True), ids=lambda p: f"{p.key}@{p.effective_from}")
def test_every_bundled_row_covers_every_reported_tier(row: Price) -> None:
    input_ub, max_out = 300_000, 20_000
    bound = row.worst_case(input_ub, max_out)
    for tier in _REPORTED:
        for usage in (
            Usage(input_uncached=input_ub, output=max_out),
            Usage(cache_write_1h=input_ub, output=max_out),
            Usage(cache_write_5m=input_ub, output=max_out),
        ):
            assert row.cost(usage, service_tier=tier) <= bound, tier


def test_batch_reservations_stay_at_the_batch_price() -> None:
    s45 = _TABLE.lookup("anthropic", "claude-sonnet-4-5")
    assert s45.worst_case(300_000, 10_000, batch=True) == D("1.8") + D("0.1125")


# -- through the real adapters: a response that reports priority --------------------------------


def _chat_events(prompt_tokens: int, completion_tokens: int) -> list[str]:
    base: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "service_tier": "priority",
    }
    return [
        sse_event({**base, "choices": [{"index": 0, "delta": {"content": "42"}, "finish_reason": None}]}),
        sse_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        sse_event(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        ),
        "data: [DONE]\n\n",
    ]


def _anthropic_events(input_tokens: int, output_tokens: int) -> list[str]:
    usage = {"input_tokens": input_tokens, "output_tokens": 1, "service_tier": "priority"}
    message: dict[str, Any] = {
        "id": "m1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return [
        sse_event({"type": "message_start", "message": message}, "message_start"),
        sse_event(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        sse_event(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "42"}},
            "content_block_delta",
        ),
        sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
            "message_delta",
        ),
        sse_event({"type": "message_stop"}, "message_stop"),
    ]


_ANTHROPIC_PRIORITY = Price(
    provider="anthropic",
    model="claude-test",
    input=D("3"),
    output=D("15"),
    cached_input=D("0.30"),
    cache_write_5m=D("3.75"),
    cache_write_1h=D("6"),
    variants={"priority": Variant(multiplier=D("1.8"))},
)


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_response_reporting_priority_costs_no_more_than_the_reservation(api: str) -> None:
    max_out = 500
    request = Request(
        model="gpt-4o" if api == "chat" else "claude-test",
        messages=(Message("user", "What is 6*7? " * 20),),
        max_output_tokens=max_out,
    )
    if api == "chat":
        spec = ModelSpec(name="openai/gpt-4o", provider="openai", api="chat", model="gpt-4o")
        price = _TABLE.lookup("openai", "gpt-4o")
    else:
        spec = ModelSpec(
            name="anthropic/claude-test", provider="anthropic", api="messages", model="claude-test"
        )
        price = _ANTHROPIC_PRIORITY
    with ScriptedServer() as server:
        adapter = create_adapter(
            spec, api_key="sk-x", base_url=server.url if api == "messages" else server.url + "/v1"
        )
        try:
            bound = adapter.input_tokens_upper_bound(request)
            reserve = usd_to_nano(price.worst_case(bound, max_out))  # what the runner reserves
            events = _chat_events(bound, max_out) if api == "chat" else _anthropic_events(bound, max_out)
            server.push(Reply.sse(events))
            done = await adapter.complete(request)
        finally:
            await adapter.aclose()
    assert done.service_tier == "priority" and done.usage_known
    cost = usd_to_nano(price.cost(done.usage, service_tier=done.service_tier))  # what the runner settles
    assert cost <= reserve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
