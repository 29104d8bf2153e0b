"""Images in prompts: each adapter's wire format (OpenAI chat ``image_url``, Responses ``input_image``,
Anthropic ``image`` with a base64 source, Gemini ``inline_data``), sent through the real SDK to the
simulator, which finds the image in what the SDK sent and bills it as input tokens; the reservation
bound covers it, and a text-only model is refused by the simulator as by the real APIs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from helpers.hle_fixture import png

from adapters import create_adapter
from adapters.anthropic_messages import messages_content
from adapters.google_genai import gemini_parts
from adapters.openai_chat import chat_content
from adapters.openai_responses import responses_content
from harness.errors import BadRequest
from harness.models import image_rule_for, resolve_model
from harness.pricing.money import usd_to_nano
from harness.pricing.table import PriceTable
from harness.sim import SimServer
from harness.types import Adapter, Image, Message, Request, image_tokens_upper_bound

pytestmark = pytest.mark.anyio

IMAGE = Image("image/png", png(600, 400))
QUESTION = "Fixture: what is drawn here?"

#: (model as the user names it, price provider, simulator base-URL key)
MODELS = {
    "chat": ("openai/gpt-4o", "openai", "openai"),
    "responses": ("openai-responses/gpt-4o", "openai", "openai-responses"),
    "messages": ("anthropic/claude-sonnet-4-5", "anthropic", "anthropic"),
    "gemini": ("google/gemini-2.5-flash", "google", "google"),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=5) as server:
        yield server


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(user_default=False)


def _adapter(sim: SimServer, name: str, url_key: str) -> Adapter:
    return create_adapter(
        resolve_model(name),
        api_key="sk-sim-key-not-secret-0123456789",
        base_url=sim.base_urls[url_key],
        stall_timeout_s=5.0,
        connect_timeout_s=2.0,
    )


def _request(model: str, call_id: str, images: tuple[Image, ...]) -> Request:
    return Request(
        model=model,
        messages=(Message("system", "Answer tersely."), Message("user", QUESTION, images)),
        max_output_tokens=512,
        extra_headers={"x-client-request-id": call_id},
    )


def test_each_wire_format() -> None:
    m = Message("user", QUESTION, (IMAGE,))
    url = "data:image/png;base64," + base64.b64encode(IMAGE.data).decode()
    assert chat_content(m) == [
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    assert responses_content(m) == [
        {"type": "input_text", "text": QUESTION},
        {"type": "input_image", "image_url": url, "detail": "auto"},
    ]
    assert messages_content(m) == [
        {"type": "text", "text": QUESTION},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": url.split(",", 1)[1]},
        },
    ]
    assert gemini_parts(m) == [
        {"text": QUESTION},
        {"inline_data": {"mime_type": "image/png", "data": IMAGE.data}},
    ]
    # A message without images is sent as before: a plain string (Gemini: one text part).
    plain = Message("user", QUESTION)
    assert chat_content(plain) == responses_content(plain) == messages_content(plain) == QUESTION
    assert gemini_parts(plain) == [{"text": QUESTION}]


@pytest.mark.parametrize("api", list(MODELS))
async def test_the_image_is_sent_billed_and_bounded(sim: SimServer, table: PriceTable, api: str) -> None:
    name, price_provider, url_key = MODELS[api]
    spec = resolve_model(name)
    rule = image_rule_for(price_provider, spec.model)
    assert rule is not None and spec.image_rule == rule
    adapter = _adapter(sim, name, url_key)
    try:
        plain = await adapter.complete(_request(spec.model, f"plain-{api}", ()))
        with_image = _request(spec.model, f"image-{api}", (IMAGE,))
        c = await adapter.complete(with_image)
        bound = adapter.input_tokens_upper_bound(with_image)
    finally:
        await adapter.aclose()
    # The simulator found the image in the bytes the SDK sent and billed it by the model's rule.
    image_tokens = image_tokens_upper_bound(rule, IMAGE)
    assert c.usage.input_total == plain.usage.input_total + image_tokens
    assert image_tokens > 1
    # The reservation bound covers it (never under-reserved).
    assert c.usage.input_total <= bound
    (rec,) = [r for r in sim.invoice()["requests"].values() if r["client_request_id"] == f"image-{api}"]
    assert rec["tokens"] == c.usage.as_dict()
    cost = table.lookup(price_provider, spec.model).cost(c.usage)
    assert usd_to_nano(cost) == usd_to_nano(Decimal(rec["usd"]))


@pytest.mark.parametrize(
    ("name", "url_key", "model"),
    [
        ("openai/o3-mini", "openai", "o3-mini"),
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
    ],
)
async def test_the_simulator_refuses_what_the_apis_refuse(
    sim: SimServer, name: str, url_key: str, model: str
) -> None:
    adapter = _adapter(sim, name, url_key)
    bad: Any = Image("image/png", b"not an image at all")
    try:
        if model == "o3-mini":  # a text-only model: the 400 the real API answers
            with pytest.raises(BadRequest, match="Image input is not supported"):
                await adapter.complete(_request(model, "text-only", (IMAGE,)))
        else:  # bytes that are no image
            with pytest.raises(BadRequest, match="Invalid image"):
                await adapter.complete(_request(model, "bad-bytes", (bad,)))
    finally:
        await adapter.aclose()
