"""Each injected fault surfaces as the exception PROTOCOLS.md §9 says the pinned SDK raises, and is
billed as a provider would bill it (nothing before generation; input + produced output after)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from harness.sim import FaultConfig, SimServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

MSGS: Any = [{"role": "user", "content": "What is 6*7?"}]


def fault(name: str, after: int | None = None, **extra: str) -> dict[str, str]:
    h = {"x-sim-fault": name, **extra}
    if after is not None:
        h["x-sim-fault-after"] = str(after)
    return h


def refused(sim: SimServer, rid: str | None) -> dict[str, Any]:
    assert rid is not None
    rec = sim.invoice()["requests"][rid]
    assert rec["billed"] is False and rec["usd"] == "0"
    assert rec["tokens"]["output"] == 0 and rec["tokens"]["input_uncached"] == 0
    return rec


# ------------------------------------------------------------------------------------ before the stream

OA_STATUS = [
    ("rate_limit_429", openai.RateLimitError, 429),
    ("error_500", openai.InternalServerError, 500),
    ("error_503", openai.InternalServerError, 503),
    ("overloaded_529", openai.InternalServerError, 529),
]


@pytest.mark.parametrize("name,exc,status", OA_STATUS)
@pytest.mark.parametrize("stream", [False, True])
async def test_openai_status_faults(
    sim: SimServer,
    make_openai: Callable[..., AsyncOpenAI],
    name: str,
    exc: type[Exception],
    status: int,
    stream: bool,
) -> None:
    oa = make_openai()
    with pytest.raises(exc) as ei:
        await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSGS,
            max_completion_tokens=100,
            stream=stream,
            extra_headers=fault(name),
        )
    e: Any = ei.value
    assert e.status_code == status and isinstance(e, openai.APIStatusError)
    assert isinstance(e.body, dict) and "message" in e.body
    if status in (429, 503, 529):
        assert float(e.response.headers["retry-after"]) >= 1
        assert e.response.headers["retry-after-ms"].isdigit()
    if status == 429:
        assert e.code == "rate_limit_exceeded"
    refused(sim, e.request_id)


AN_STATUS = [
    ("rate_limit_429", anthropic.RateLimitError, 429),
    ("error_500", anthropic.InternalServerError, 500),
    ("error_503", anthropic.ServiceUnavailableError, 503),
    ("overloaded_529", anthropic.OverloadedError, 529),
]


@pytest.mark.parametrize("name,exc,status", AN_STATUS)
async def test_anthropic_status_faults(
    sim: SimServer,
    make_anthropic: Callable[..., AsyncAnthropic],
    name: str,
    exc: type[Exception],
    status: int,
) -> None:
    an = make_anthropic()
    with pytest.raises(exc) as ei:
        await an.messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=100,
            messages=MSGS,
            stream=True,
            extra_headers=fault(name),
        )
    e: Any = ei.value
    assert e.status_code == status
    assert e.body["type"] == "error" and e.body["request_id"] == e.request_id
    refused(sim, e.request_id)


async def test_request_errors_in_each_providers_shape(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    oa, an = make_openai(), make_anthropic()
    with pytest.raises(openai.BadRequestError) as oe:
        await oa.chat.completions.create(model="o4-mini", messages=MSGS, max_tokens=100)
    assert oe.value.code == "unsupported_parameter" and oe.value.param == "max_tokens"
    with pytest.raises(openai.NotFoundError) as nf:
        await oa.chat.completions.create(model="gpt-nope", messages=MSGS, max_completion_tokens=5)
    assert nf.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as anf:
        await an.messages.create(model="claude-nope", max_tokens=5, messages=MSGS)
    assert anf.value.type == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as thinking:
        await an.messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=4000,
            messages=MSGS,
            thinking={"type": "enabled", "budget_tokens": 2000},
        )
    assert thinking.value.type == "invalid_request_error" and "thinking" in thinking.value.message
    with pytest.raises(anthropic.BadRequestError):
        await an.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=2000,
            messages=MSGS,
            thinking={"type": "enabled", "budget_tokens": 2000},
        )
    refused(sim, oe.value.request_id)
    refused(sim, thinking.value.request_id)


async def test_missing_key_is_401_in_each_shape(sim: SimServer) -> None:
    async with httpx2.AsyncClient(base_url=sim.base_url) as c:
        r = await c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSGS})
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        assert r.headers["x-request-id"].startswith("req_")
        r = await c.post(
            "/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": MSGS}
        )
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.json()["request_id"] == r.headers["request-id"]


# ------------------------------------------------------------------------------------ mid-stream


async def test_openai_cut_stream_is_connection_error_and_billed(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI]
) -> None:
    oa = make_openai()
    stream = await oa.chat.completions.create(
        model="o4-mini",
        messages=MSGS,
        max_completion_tokens=20000,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=fault("disconnect_mid_stream", 3),
    )
    text, usage = "", None
    with pytest.raises(openai.APIConnectionError) as ei:
        async for chunk in stream:
            for c in chunk.choices or []:
                text += c.delta.content or ""
            usage = chunk.usage or usage
    assert isinstance(ei.value.__cause__, httpx2.RemoteProtocolError)
    assert usage is None  # the client never saw usage ...
    rec = sim.invoice()["requests"][stream.response.headers["x-request-id"]]
    assert rec["status"] == "cut" and rec["billed"] and rec["raw_usage"] is None
    t = rec["tokens"]
    # ... yet it is billed: the input, all the reasoning, and the two content chunks that were sent
    assert t["input_uncached"] > 0 and t["reasoning"] > 0
    assert t["output"] - t["reasoning"] == (len(text.encode()) + 3) // 4 > 0
    assert Decimal(rec["usd"]) > 0


async def test_anthropic_cut_stream_raises_raw_httpx2_error(
    sim: SimServer, make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    an = make_anthropic()
    stream = await an.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8000,
        messages=MSGS,
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 4000},
        extra_headers=fault("disconnect", 4),
    )
    with pytest.raises(httpx2.RemoteProtocolError):
        async for _ in stream:
            pass
    rec = sim.invoice()["requests"][stream.response.headers["request-id"]]
    assert rec["status"] == "cut" and 0 < rec["tokens"]["output"] == rec["tokens"]["reasoning"]


async def test_stall_times_out_in_both_sdks(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    stall = fault("stall", 2, **{"x-sim-stall-s": "1.5"})
    oa = make_openai(timeout=httpx2.Timeout(0.3, connect=5))
    stream = await oa.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, max_completion_tokens=500, stream=True, extra_headers=stall
    )
    with pytest.raises(openai.APITimeoutError):
        async for _ in stream:
            pass
    an = make_anthropic(timeout=httpx2.Timeout(0.3, connect=5))
    astream = await an.messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=500, messages=MSGS, stream=True, extra_headers=stall
    )
    with pytest.raises(httpx2.ReadTimeout):
        async for _ in astream:
            pass


async def test_stall_without_timeout_delivers_the_whole_stream(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI]
) -> None:
    oa = make_openai()
    stream = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        max_completion_tokens=500,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=fault("stall", 1, **{"x-sim-stall-s": "0.2"}),
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None


async def test_stream_error_events(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    oa, an = make_openai(), make_anthropic()
    s = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        max_completion_tokens=500,
        stream=True,
        extra_headers=fault("stream_error_event", 2),
    )
    with pytest.raises(openai.APIError) as ce:
        async for _ in s:
            pass
    assert not isinstance(ce.value, openai.APIStatusError) and ce.value.type == "server_error"
    rs = await oa.responses.create(
        model="o4-mini",
        input="hi",
        max_output_tokens=5000,
        stream=True,
        extra_headers=fault("error_event", 3),
    )
    with pytest.raises(openai.APIError):
        async for _ in rs:
            pass
    ms = await an.messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=500,
        messages=MSGS,
        stream=True,
        extra_headers=fault("stream_error_event", 5),
    )
    with pytest.raises(anthropic.APIStatusError) as ae:
        async for _ in ms:
            pass
    assert ae.value.status_code == 200 and ae.value.type == "overloaded_error"
    assert not isinstance(ae.value, anthropic.OverloadedError)
    rec = sim.invoice()["requests"][ms.response.headers["request-id"]]
    assert rec["status"] == "error_event" and rec["tokens"]["output"] > 0


async def test_malformed_chunk_breaks_the_sdk_parse(
    sim: SimServer, make_openai: Callable[..., AsyncOpenAI], make_anthropic: Callable[..., AsyncAnthropic]
) -> None:
    oa, an = make_openai(), make_anthropic()
    s = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        max_completion_tokens=500,
        stream=True,
        extra_headers=fault("malformed_chunk", 2),
    )
    with pytest.raises(ValueError):  # json.JSONDecodeError, not wrapped by the SDK
        async for _ in s:
            pass
    ms = await an.messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=500,
        messages=MSGS,
        stream=True,
        extra_headers=fault("malformed", 2),
    )
    with pytest.raises(ValueError):
        async for _ in ms:
            pass


async def test_unknown_fault_header_is_a_400(make_openai: Callable[..., AsyncOpenAI]) -> None:
    with pytest.raises(openai.BadRequestError):
        await make_openai().chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, max_completion_tokens=5, extra_headers=fault("bogus")
        )


# ------------------------------------------------------------------------------------ seeded schedules


async def _outcomes(seed: int, n: int) -> list[str]:
    faults = FaultConfig(rate_limit_429=0.3, error_500=0.2, disconnect_mid_stream=0.2, retry_after_s=0.01)
    out: list[str] = []
    with SimServer(seed=seed, faults=faults) as sim:
        async with AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
            for i in range(n):
                try:
                    s = await oa.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": f"q{i % 3}"}],
                        max_completion_tokens=300,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    text = "".join([(c.choices[0].delta.content or "") async for c in s if c.choices])
                    out.append(f"ok:{text[-12:]}")
                except openai.APIStatusError as e:
                    out.append(str(e.status_code))
                except openai.APIConnectionError:
                    out.append("cut")
    return out


async def test_fault_schedule_is_reproducible_and_retries_get_fresh_draws() -> None:
    a = await _outcomes(3, 24)
    b = await _outcomes(3, 24)
    c = await _outcomes(4, 24)
    assert a == b
    assert a != c
    assert {"429", "500", "cut"} <= {x if not x.startswith("ok") else "ok" for x in a}
    assert any(x.startswith("ok") for x in a)  # identical bodies are retried with fresh draws


async def test_profile_fault_rates_and_server_faults_combine(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text('[models."gpt-4o-mini".faults]\nerror_500 = 1.0\n')
    with SimServer(profiles=prof) as sim:
        async with AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
            with pytest.raises(openai.InternalServerError):
                await oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_completion_tokens=5)
            ok = await oa.chat.completions.create(model="o4-mini", messages=MSGS, max_completion_tokens=5)
            assert ok.choices[0].finish_reason == "length"
            sim.set_faults(FaultConfig(overloaded_529=1.0))
            with pytest.raises(openai.InternalServerError) as e:
                await oa.chat.completions.create(model="o4-mini", messages=MSGS, max_completion_tokens=5)
            assert e.value.status_code == 529
            sim.set_faults(None)
            await oa.chat.completions.create(model="o4-mini", messages=MSGS, max_completion_tokens=5)


async def test_real_rate_limit_window_answers_429(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text('[models."claude-3-5-haiku-20241022"]\nrpm = 2\n')
    with SimServer(profiles=prof) as sim:
        async with AsyncAnthropic(api_key="k", base_url=sim.anthropic_base_url, max_retries=0) as an:
            for expected in ("1", "0"):
                raw = await an.messages.with_raw_response.create(
                    model="claude-3-5-haiku-20241022", max_tokens=5, messages=MSGS
                )
                assert raw.headers["anthropic-ratelimit-requests-remaining"] == expected
                assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
            with pytest.raises(anthropic.RateLimitError) as e:
                await an.messages.create(model="claude-3-5-haiku-20241022", max_tokens=5, messages=MSGS)
            assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
            assert sim.invoice()["models"]["claude-3-5-haiku-20241022"]["requests"]["refused"] == 1


async def test_client_drop_is_billed_up_to_what_was_sent(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text(
        '[models."gpt-4o-mini"]\nttft_s = 0.01\ntokens_per_s = 400.0\n'
        "output_tokens = { median = 2000, sigma = 0.1, min = 1500, max = 3000 }\n"
    )
    with SimServer(profiles=prof, speed=1.0) as sim:
        async with AsyncOpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
            s = await oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=MSGS,
                max_completion_tokens=4000,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = ""
            async for chunk in s:
                text += "".join(c.delta.content or "" for c in chunk.choices)
                if len(text) > 200:
                    break
            await s.close()
            rid = s.response.headers["x-request-id"]
            with anyio.fail_after(5):
                while rid not in sim.invoice()["requests"]:  # noqa: ASYNC110 - another thread's state
                    await anyio.sleep(0.02)
        rec = sim.invoice()["requests"][rid]
    assert rec["status"] == "client_disconnected"
    assert (len(text) + 3) // 4 <= rec["tokens"]["output"] < 1500
