"""The simulator's Gemini wire protocol: raw HTTP shapes, the real google-genai SDK (non-streaming,
streaming, countTokens), error bodies with RetryInfo, rate limits, thinking rules and the invoice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from harness.pricing.table import PriceTable
from harness.sim import SimServer
from harness.sim.profiles import load_profiles, resolve_model
from harness.sim.wire_gemini import usage_from_gemini

pytestmark = pytest.mark.anyio

KEY = "AIzaSy-sim-test-key-000000000000"
PROMPT = "Which is prime?\nA) 4\nB) 7\nC) 9\nD) 15\nAnswer with: Answer: $LETTER"


@pytest.fixture(scope="module")
def gsim() -> Iterator[SimServer]:
    with SimServer(seed=5) as server:
        yield server


@pytest.fixture
async def client(gsim: SimServer) -> AsyncIterator[genai.Client]:
    c = genai.Client(
        api_key=KEY,
        vertexai=False,
        http_options=gt.HttpOptions(
            base_url=gsim.base_url, api_version="v1beta", retry_options=gt.HttpRetryOptions(attempts=1)
        ),
    )
    yield c
    await c.aio.aclose()
    c.close()


def _post(sim: SimServer, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    h = {"x-goog-api-key": KEY, "content-type": "application/json", **(headers or {})}
    return httpx2.post(f"{sim.base_url}/v1beta/models/{path}", content=json.dumps(body), headers=h)


def _body(text: str = PROMPT, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        body["generationConfig"] = config
    return body


def _sse(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\r\n\r\n"):
        if block.startswith("data: "):
            out.append(json.loads(block[len("data: ") :]))
    return out


def test_generate_content_body_and_invoice(gsim: SimServer) -> None:
    r = _post(gsim, "gemini-2.5-flash:generateContent", _body(maxOutputTokens=4000))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "retry-after" not in r.headers and "x-ratelimit-remaining-requests" not in r.headers
    data = r.json()
    cand = data["candidates"][0]
    assert cand["finishReason"] == "STOP" and cand["content"]["role"] == "model"
    assert cand["content"]["parts"][0]["text"].rstrip().endswith(("A", "B", "C", "D"))
    meta = data["usageMetadata"]
    assert meta["totalTokenCount"] == (
        meta["promptTokenCount"] + meta["candidatesTokenCount"] + meta.get("thoughtsTokenCount", 0)
    )
    assert data["modelVersion"] == "gemini-2.5-flash"
    rec = gsim.invoice()["requests"][data["responseId"]]
    assert (rec["provider"], rec["api"], rec["status"]) == ("google", "gemini", "completed")
    assert rec["stream"] is False
    assert rec["tokens"] == usage_from_gemini(meta).as_dict()


def test_stream_chunks_carry_running_usage_and_end_with_finish(gsim: SimServer) -> None:
    r = _post(gsim, "gemini-2.5-pro:streamGenerateContent?alt=sse", _body(maxOutputTokens=20000))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(r.content)
    assert len(chunks) > 2
    assert all("usageMetadata" in c and c["responseId"] == chunks[0]["responseId"] for c in chunks)
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["thoughtsTokenCount"] > 0  # 2.5 Pro always thinks; thoughts hidden
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert '"thought":' not in json.dumps(chunks)
    assert text.rstrip()[-1] in "ABCD"


def test_include_thoughts_streams_thought_parts(gsim: SimServer) -> None:
    body = _body(maxOutputTokens=20000, thinkingConfig={"includeThoughts": True, "thinkingBudget": 2048})
    chunks = _sse(_post(gsim, "gemini-2.5-flash:streamGenerateContent?alt=sse", body).content)
    thoughts = [c for c in chunks if c["candidates"][0]["content"].get("parts", [{}])[0].get("thought")]
    assert thoughts and chunks.index(thoughts[-1]) < len(chunks) - 1
    assert 0 < chunks[-1]["usageMetadata"]["thoughtsTokenCount"] <= 2048


def test_stream_needs_alt_sse_and_methods_are_checked(gsim: SimServer) -> None:
    r = _post(gsim, "gemini-2.5-flash:streamGenerateContent", _body())
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = _post(gsim, "gemini-2.5-flash:embedContent", _body())
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("model", "config", "fragment"),
    [
        ("gemini-2.5-flash", {"maxOutputTokens": 70000}, "maxOutputTokens value of 70000"),
        ("gemini-2.5-pro", {"thinkingConfig": {"thinkingBudget": 0}}, "only works in thinking mode"),
        ("gemini-2.5-pro", {"thinkingConfig": {"thinkingBudget": 50}}, "between 128 and 32768"),
        ("gemini-2.5-flash", {"thinkingConfig": {"thinkingLevel": "LOW"}}, "not supported for this model"),
        (
            "gemini-3-flash-preview",
            {"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 100}},
            "only one of thinking budget and thinking level",
        ),
        ("gemini-3-pro-preview", {"thinkingConfig": {"thinking_level": "MINIMAL"}}, "thinking_level"),
    ],
)
def test_invalid_arguments(gsim: SimServer, model: str, config: dict[str, Any], fragment: str) -> None:
    r = _post(gsim, f"{model}:generateContent", _body(**config))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT" and fragment in err["message"]


def test_auth_and_unknown_model(gsim: SimServer) -> None:
    r = httpx2.post(f"{gsim.base_url}/v1beta/models/gemini-2.5-flash:generateContent", json=_body())
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = _post(gsim, "gpt-4o-mini:generateContent", _body())  # an OpenAI model is not a Gemini one
    assert r.status_code == 404 and "models/gpt-4o-mini is not found" in r.json()["error"]["message"]
    r = httpx2.post(f"{gsim.base_url}/v1beta/models/gemini-2.5-flash:generateContent?key={KEY}", json=_body())
    assert r.status_code == 200  # the ?key= form


def test_429_carries_retry_info_and_no_retry_after_header(gsim: SimServer) -> None:
    r = _post(gsim, "gemini-2.5-flash:generateContent", _body(), {"x-sim-fault": "429"})
    assert r.status_code == 429 and "retry-after" not in r.headers
    err = r.json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED"
    kinds = {d["@type"].rsplit(".", 1)[1]: d for d in err["details"]}
    assert kinds["RetryInfo"]["retryDelay"] == "1s"
    assert kinds["QuotaFailure"]["violations"][0]["quotaId"].startswith("GenerateRequestsPerMinute")
    r = _post(gsim, "gemini-2.5-flash:generateContent", _body(), {"x-sim-fault": "529"})
    assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"


def test_rate_limit_window_answers_resource_exhausted(tmp_path: Path) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text('[models."gemini-2.5-flash-lite"]\nrpm = 1\n')
    with SimServer(seed=1, profiles=profiles) as s:
        assert _post(s, "gemini-2.5-flash-lite:generateContent", _body()).status_code == 200
        r = _post(s, "gemini-2.5-flash-lite:generateContent", _body())
        assert r.status_code == 429
        err = r.json()["error"]
        delay = [d for d in err["details"] if d["@type"].endswith("RetryInfo")][0]["retryDelay"]
        assert delay.endswith("s") and float(delay[:-1]) > 0
        assert s.invoice()["total"]["requests"] == {"total": 2, "billed": 1, "refused": 1}


async def test_the_sdk_cannot_tell_non_streaming(client: genai.Client, gsim: SimServer) -> None:
    r = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=PROMPT,
        config=gt.GenerateContentConfig(
            max_output_tokens=3000,
            system_instruction="Be brief.",
            thinking_config=gt.ThinkingConfig(thinking_budget=512),
            automatic_continuation=False,
        ),
    )
    assert r.text is not None and r.text.rstrip()[-1] in "ABCD"
    assert r.candidates is not None and r.candidates[0].finish_reason == gt.FinishReason.STOP
    meta = r.usage_metadata
    assert meta is not None and meta.thoughts_token_count is not None and 0 < meta.thoughts_token_count <= 512
    rec = gsim.invoice()["requests"][r.response_id]
    assert rec["tokens"]["reasoning"] == meta.thoughts_token_count


async def test_the_sdk_streams_and_counts_tokens(client: genai.Client, gsim: SimServer) -> None:
    texts: list[str] = []
    last: Any = None
    stream = await client.aio.models.generate_content_stream(
        model="gemini-3-flash-preview",
        contents=PROMPT,
        config=gt.GenerateContentConfig(
            max_output_tokens=8000,
            thinking_config=gt.ThinkingConfig(thinking_level=gt.ThinkingLevel.LOW),
            automatic_continuation=False,
        ),
    )
    async for chunk in stream:
        texts.append(chunk.text or "")
        last = chunk
    assert last.candidates[0].finish_reason == gt.FinishReason.STOP
    counted = await client.aio.models.count_tokens(model="gemini-3-flash-preview", contents=PROMPT)
    assert counted.total_tokens == last.usage_metadata.prompt_token_count
    rec = gsim.invoice()["requests"][last.response_id]
    assert rec["stream"] and rec["status"] == "completed"


async def test_the_sdk_sees_google_errors(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=PROMPT,
            config=gt.GenerateContentConfig(http_options=gt.HttpOptions(headers={"x-sim-fault": "429"})),
        )
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as server_info:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=PROMPT,
            config=gt.GenerateContentConfig(http_options=gt.HttpOptions(headers={"x-sim-fault": "500"})),
        )
    assert server_info.value.code == 500 and server_info.value.status == "INTERNAL"


def test_every_gemini_profile_has_a_price_row() -> None:
    table = PriceTable.load(user_default=False)
    profiles = load_profiles()
    google = {k: p for k, p in profiles.items() if p.provider == "google"}
    priced = {p.model for p in table.rows() if p.provider == "google"}
    assert set(google) == priced
    for model_id, p in google.items():
        assert table.has("google", model_id)
        for alias in p.aliases:
            assert resolve_model(profiles, alias, "google") is p
            assert table.lookup("google", alias).model == model_id
        assert resolve_model(profiles, model_id, "openai") is None
