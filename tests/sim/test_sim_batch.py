"""The simulator's batch endpoints through the real SDKs: files, batches, output and error files,
Message Batches and their results, billed at the batch price, with expiry and cancel."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import anthropic
import anyio
import openai
import pytest

from harness.pricing.money import usd_to_nano
from harness.sim import SimServer

pytestmark = pytest.mark.anyio


def _line(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"q{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"What is {i}+1?"}],
            "max_completion_tokens": 32,
        },
    }


async def test_openai_batch_with_expiry_returns_and_bills_partial_output() -> None:
    with SimServer(seed=1) as sim:
        sim.state.batch_settings.complete_s = 1.0
        sim.state.batch_settings.window_s = 0.5
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=sim.openai_base_url, max_retries=0)
        data = "".join(json.dumps(_line(i)) + "\n" for i in range(6)).encode()
        f = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        b = await client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
        )
        assert b.status == "in_progress" and b.metadata == {"k": "v"}
        await anyio.sleep(0.7)
        b = await client.batches.retrieve(b.id)
        assert b.status == "expired" and b.request_counts is not None
        assert 0 < b.request_counts.completed < 6
        out = (await client.files.content(b.output_file_id or "")).text.splitlines()
        err = (await client.files.content(b.error_file_id or "")).text.splitlines()
        assert len(out) == b.request_counts.completed and len(out) + len(err) == 6
        assert all(json.loads(x)["error"]["code"] == "batch_expired" for x in err)
        billed = sum(
            usd_to_nano(Decimal(r["usd"])) for r in sim.invoice()["requests"].values() if r["billed"]
        )
        usage = [json.loads(x)["response"]["body"]["usage"] for x in out]
        full = sum(
            usd_to_nano(
                Decimal("0.15") * u["prompt_tokens"] / 10**6
                + Decimal("0.60") * u["completion_tokens"] / 10**6
            )
            for u in usage
        )
        assert abs(2 * billed - full) <= 2 * len(out)  # the batch price: half
        assert [b.id for b in (await client.batches.list()).data] == [b.id]
        with pytest.raises(openai.BadRequestError):
            bad = dict(_line(9), url="/v1/responses")
            g = await client.files.create(
                file=("x.jsonl", io.BytesIO((json.dumps(bad) + "\n").encode())), purpose="batch"
            )
            await client.batches.create(
                input_file_id=g.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        await client.close()


async def test_anthropic_message_batch_cancel_and_results() -> None:
    with SimServer(seed=1) as sim:
        sim.state.batch_settings.complete_s = 2.0
        client = anthropic.AsyncAnthropic(api_key="sk-ant", base_url=sim.anthropic_base_url, max_retries=0)
        reqs = [
            {
                "custom_id": f"q{i}",
                "params": {
                    "model": "claude-3-5-haiku-20241022",
                    "max_tokens": 32,
                    "messages": [{"role": "user", "content": f"What is {i}+1?"}],
                },
            }
            for i in range(4)
        ]
        b = await client.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
        assert b.processing_status == "in_progress" and b.results_url is None
        await anyio.sleep(1.1)
        b = await client.messages.batches.cancel(b.id)
        b = await client.messages.batches.retrieve(b.id)
        assert b.processing_status == "ended" and b.request_counts.canceled > 0
        results = [r async for r in await client.messages.batches.results(b.id)]
        kinds = {r.custom_id: r.result.type for r in results}
        assert set(kinds) == {"q0", "q1", "q2", "q3"} and "succeeded" in kinds.values()
        for r in results:
            if r.result.type == "succeeded":
                assert r.result.message.usage.service_tier == "batch"
        billed = [r for r in sim.invoice()["requests"].values() if r["billed"]]
        assert len(billed) == list(kinds.values()).count("succeeded")
        await client.close()
