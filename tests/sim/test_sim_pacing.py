"""The streams' pacing tick: the same events, bytes and bill as pacing per event, in fewer writes,
over about the same time."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from harness.errors import ConfigError
from harness.sim import SimServer, start_sim_process
from harness.sim.server import check_pace
from harness.sim.state import SimState
from harness.sim.streaming import Rendered, SSEResponse
from harness.types import Usage

pytestmark = [pytest.mark.anyio]

MSGS = [{"role": "user", "content": "Pick one.\nA) a\nB) b\nAnswer: $LETTER"}]

N_EVENTS = 40
TOKENS_PER_EVENT = 10
TTFT_S = 0.05
TOKENS_PER_S = 2000.0
PLANNED_S = TTFT_S + N_EVENTS * TOKENS_PER_EVENT / TOKENS_PER_S  # 0.25 s


def _rendered() -> Rendered:
    events = [f'data: {{"i":{i}}}\n\n'.encode() for i in range(N_EVENTS)]
    usage = Usage(input_uncached=5, output=N_EVENTS * TOKENS_PER_EVENT)
    return Rendered(
        events=events,
        tokens=[TOKENS_PER_EVENT * (i + 1) for i in range(N_EVENTS)],
        final_index=N_EVENTS - 2,
        raw_usage={"output": N_EVENTS * TOKENS_PER_EVENT},
        usage=usage,
        status="completed",
        reasoning=0,
        error_event=lambda n: f'data: {{"error":{n}}}\n\n'.encode(),
        malformed=lambda n: b'data: {"trunc\n\n',
    )


async def _send_all(pace_s: float, fault: str | None = None) -> tuple[bytes, int, tuple[str, int], float]:
    """Drive one SSEResponse: (body bytes, body writes, (status, events sent), seconds)."""
    done: list[tuple[str, int]] = []
    body = bytearray()
    r = _rendered()
    resp = SSEResponse(
        r,
        {},
        on_done=lambda status, sent: done.append((status, sent)),
        speed=1.0,
        ttft_s=TTFT_S,
        tokens_per_s=TOKENS_PER_S,
        fault=fault,
        fault_after=20,
        stall_s=0.05,
        pace_s=pace_s,
    )

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.extend(message["body"])

    t0 = time.monotonic()
    await resp({"type": "http"}, receive, send)  # type: ignore[arg-type]
    elapsed = time.monotonic() - t0
    assert len(done) == 1
    return bytes(body), resp.writes, done[0], elapsed


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "fault", [None, "disconnect_mid_stream", "stream_error_event", "malformed_chunk", "stall"]
)
async def test_a_paced_stream_sends_the_same_bytes_and_bills_the_same_in_fewer_writes(
    fault: str | None,
) -> None:
    per_event = await _send_all(0.0, fault)
    ticked = await _send_all(0.1, fault)
    assert ticked[0] == per_event[0]  # the same events, byte for byte
    assert ticked[2] == per_event[2]  # the same status and events sent: the same bill
    assert per_event[1] >= 20  # a write per event up to the fault at least
    assert ticked[1] < per_event[1] / 3
    if fault is None:
        assert per_event[2] == ("completed", N_EVENTS)
        assert ticked[1] <= PLANNED_S / 0.1 + 2  # about one write per tick, and the last
        # the stream lasts as long as planned (at least; a loaded machine only adds)
        assert ticked[3] >= PLANNED_S * 0.99
        assert per_event[3] >= PLANNED_S * 0.99


@pytest.mark.timeout(30)
async def test_a_tick_longer_than_the_stream_sends_it_in_one_write_at_its_end() -> None:
    body, writes, done, elapsed = await _send_all(10.0)
    assert done == ("completed", N_EVENTS)
    assert body == b"".join(_rendered().events)
    assert writes == 1  # every event and the end of the body together
    assert elapsed >= PLANNED_S * 0.99


def test_pace_is_checked() -> None:
    check_pace(0.0)
    check_pace(0.25)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--pace"):
            check_pace(bad)
    with pytest.raises(ValueError, match="pace_s"):
        SimState(profiles={}, pace_s=-1.0)


async def _chat(base_url: str) -> tuple[str, Any]:
    async with AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0) as oa:
        s = await oa.chat.completions.create(
            model="o4-mini",
            messages=MSGS,  # type: ignore[arg-type]
            max_completion_tokens=20000,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in s:
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        return text, usage


async def _messages(base_url: str) -> tuple[str, Any]:
    async with AsyncAnthropic(api_key="k", base_url=base_url, max_retries=0) as an:
        async with an.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=20000,
            messages=MSGS,  # type: ignore[arg-type]
            thinking={"type": "enabled", "budget_tokens": 2048},
        ) as s:
            text = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        return text, final.usage


@pytest.mark.timeout(60)
async def test_the_simulator_with_a_tick_answers_and_bills_like_per_event_pacing() -> None:
    # speed scales the profiles' latency down: each stream lasts well under a second
    with SimServer(seed=3, speed=0.02) as plain, SimServer(seed=3, speed=0.02, pace_s=0.05) as ticked:
        assert ticked.state.pace_s == 0.05
        for call, url in ((_chat, "openai_base_url"), (_messages, "anthropic_base_url")):
            a = await call(getattr(plain, url))
            b = await call(getattr(ticked, url))
            assert a == b  # text and usage
        inv_a, inv_b = plain.invoice(), ticked.invoice()
    strip = ("request_id", "body_id", "received_at", "finished_at", "at", "id", "client_request_id")

    def records(inv: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in rec.items() if k not in strip} for rec in inv["requests"].values()]

    assert records(inv_a) == records(inv_b)
    assert [r["status"] for r in records(inv_b)] == ["completed", "completed"]
    assert inv_a["models"] == inv_b["models"]


@pytest.mark.timeout(60)
async def test_start_sim_process_passes_the_tick_and_workers() -> None:
    with start_sim_process(speed=0.01, pace_s=0.1, workers=2) as sim:
        text, usage = await _chat(sim.openai_base_url)
        assert text and usage.completion_tokens > 0
    out = await anyio.run_process([sys.executable, "-m", "harness.sim", "--pace", "-1"], check=False)
    assert out.returncode == 2 and b"--pace" in out.stderr
