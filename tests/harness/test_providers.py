"""The OpenAI-compatible providers of issue 11 (DeepSeek, xAI, OpenRouter, Together) through the real
``openai`` SDK against the simulator, which answers in each provider's usage dialect: the meter equals
the simulator's invoice call by call, tokens included, and a provider's own reported cost is stored
beside ours. Plus the dialect rules one by one (:mod:`adapters.openai_compat`)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.openai_compat import provider_cost, usage_for_dialect
from harness.models import resolve_model
from harness.pricing.money import usd_to_nano
from harness.run.retry import RetryPolicy
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import FaultConfig, SimServer
from harness.store.engine import Store
from harness.suite import Item
from harness.types import Usage
from tests.helpers.tiny_suite import TinySuite

FAST_RETRY = RetryPolicy(max_attempts=10, initial_wait_s=0.01, max_wait_s=0.05, max_retry_after_s=0.2)

# --------------------------------------------------------------------------------------------------
# The dialects, rule by rule


def test_deepseek_reads_its_top_level_cache_split() -> None:
    raw = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_cache_hit_tokens": 640,
        "prompt_cache_miss_tokens": 360,
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    assert usage_for_dialect("deepseek", raw) == Usage(
        input_uncached=360, cache_read=640, output=300, reasoning=200
    )
    # Read as plain OpenAI usage, the cache hits would be lost (what Inspect does).
    assert usage_for_dialect("openai", raw).cache_read == 0


@pytest.mark.parametrize(
    ("total", "output"),
    [
        (1000 + 100 + 400, 500),  # reasoning outside completion_tokens: prompt + completion + reasoning
        (1000 + 100, 100),  # reasoning inside, OpenAI's way
        (None, 500),  # cannot tell: the larger reading (an unknown counts at its worst)
    ],
)
def test_xai_reasoning_is_decided_per_response_from_total_tokens(total: int | None, output: int) -> None:
    raw: dict[str, Any] = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "completion_tokens_details": {"reasoning_tokens": 400},
        "prompt_tokens_details": {"cached_tokens": 200},
    }
    if total is not None:
        raw["total_tokens"] = total
    u = usage_for_dialect("xai", raw)
    assert (u.output, u.reasoning, u.cache_read, u.input_uncached) == (output, min(400, output), 200, 800)


def test_provider_reported_costs() -> None:
    assert provider_cost("xai", {"cost_in_usd_ticks": 123_456_789}) == "0.0123456789"
    assert provider_cost("openrouter", {"cost": 0.0042, "is_byok": False}) == "0.0042"
    byok = {"cost": 0.0005, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.01}}
    assert provider_cost("openrouter", byok) == "0.0105"
    assert provider_cost("together", {}) is None
    assert provider_cost("xai", {"cost_in_usd_ticks": -1}) is None


def test_named_providers_resolve_with_their_dialect_and_default_endpoint() -> None:
    assert resolve_model("deepseek/deepseek-reasoner").dialect == "deepseek"
    assert resolve_model("openrouter/openai/gpt-4o-mini").model == "openai/gpt-4o-mini"
    assert resolve_model("vllm/Qwen/Qwen3-8B").dialect == "compat"
    assert resolve_model("openai/o3-mini").dialect == "openai"
    assert resolve_model("openai/o3-mini", base_url="https://api.openai.com/v1").dialect == "openai"
    assert resolve_model("openai/qwen", base_url="http://127.0.0.1:8000/v1").dialect == "compat"


# --------------------------------------------------------------------------------------------------
# Whole runs against the simulator


class _LongSuite(TinySuite):
    """Prompts long enough (about 1,500 tokens) for the providers' prefix caches to hit."""

    def __init__(self, n: int) -> None:
        super().__init__(n, name="long")
        pad = " ".join(f"context{i}" for i in range(1500))
        self._items = [Item(i.id, f"{pad}\n{i.question}", i.answer, stratum=i.stratum) for i in self._items]


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


PROVIDER_MODELS = [
    "deepseek/deepseek-reasoner",
    "deepseek/deepseek-chat",
    "xai/grok-4",
    "xai/grok-3-mini",
    "openrouter/openai/gpt-4o-mini",
    "openrouter/deepseek/deepseek-r1",
    "together/openai/gpt-oss-120b",
]


@pytest.mark.anyio
@pytest.mark.parametrize("model", PROVIDER_MODELS)
async def test_each_provider_is_metered_exactly_what_the_simulator_bills(db_path: Path, model: str) -> None:
    faults = FaultConfig(rate_limit_429=0.35, error_500=0.1, retry_after_s=0.02)
    with SimServer(seed=5, speed=0.0, faults=faults) as sim:
        plan = prepare_run(
            RunOptions(
                suites=[_LongSuite(8)],
                models=[model],
                budget_usd=Decimal("5"),
                simulated=True,
                concurrency=4,
                retry=FAST_RETRY,
                max_output_tokens=6000,
            )
        )
        store = Store.open(str(db_path))
        try:
            outcome = await run(plan, store, simulator=sim)
        finally:
            store.close()
        invoice = sim.invoice()
    assert (outcome.status, outcome.exit_code) == ("done", 0), outcome.errors
    calls = _rows(db_path, "select * from calls")
    assert len(calls) == len(invoice["requests"])
    assert any(c["http_status"] == 429 for c in calls), "no retry was exercised"
    provider = model.split("/")[0]
    answered = [c for c in calls if c["status"] == "ok"]
    assert len(answered) == 8
    for c in calls:
        billed = invoice["requests"][c["request_id"]]
        assert billed["provider"] == provider
        assert c["cost_nano"] == usd_to_nano(Decimal(billed["usd"]))
    for c in answered:
        billed = invoice["requests"][c["request_id"]]
        assert c["usage_known"]
        for col, kind in (
            ("output_tokens", "output"),
            ("reasoning_tokens", "reasoning"),
            ("input_uncached", "input_uncached"),
            ("cache_read", "cache_read"),
        ):
            assert c[col] == billed["tokens"][kind], (col, c[col], billed["tokens"])
        if provider in ("xai", "openrouter"):  # they report their own cost: stored, and equal here
            assert c["provider_cost_nano"] == c["cost_nano"]
        else:
            assert c["provider_cost_nano"] is None
    assert any(c["cache_read"] for c in answered), "no cache hit: the dialect's cache fields went untested"
    if "reasoner" in model or "grok" in model or "r1" in model or "oss" in model:
        assert all(c["reasoning_tokens"] > 0 for c in answered)


@pytest.mark.anyio
async def test_openrouter_byok_reports_fee_plus_upstream_and_the_difference_is_kept(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[models."openrouter/openai/gpt-4o-mini"]\nprovider = "openrouter"\nbyok = true\n'
        "output_tokens = { median = 200, sigma = 0.3, min = 16, max = 1000 }\n"
    )
    with SimServer(seed=2, speed=0.0, profiles=profiles) as sim:
        plan = prepare_run(
            RunOptions(
                suites=[TinySuite(4)],
                models=["openrouter/openai/gpt-4o-mini"],
                budget_usd=Decimal("1"),
                simulated=True,
                retry=FAST_RETRY,
            )
        )
        store = Store.open(str(db_path))
        try:
            await run(plan, store, simulator=sim)
        finally:
            store.close()
    calls = _rows(db_path, "select * from calls where status = 'ok'")
    assert len(calls) == 4
    for c in calls:
        # OpenRouter says: 5% fee + the upstream cost. Ours: the upstream price only.
        assert c["provider_cost_nano"] == pytest.approx(c["cost_nano"] * 1.05, abs=2)
    # `show` and `costs` print the difference.
    from harness.cli.main import main

    run_id = calls[0]["run_id"]
    theirs = sum(c["provider_cost_nano"] for c in calls)
    ours = sum(c["cost_nano"] for c in calls)
    assert main(["show", run_id, "--db", str(db_path)]) == 0
    shown = capsys.readouterr()[0]
    assert "the provider reported" in shown and "where tollbench computed" in shown
    assert main(["costs", "--by", "model", "--db", str(db_path), "--json"]) == 0
    row = json.loads(capsys.readouterr()[0])[0]
    assert row["provider_reported_calls"] == 4
    assert Decimal(row["provider_reported_difference_usd"]) == Decimal(theirs - ours) / 10**9
    assert main(["costs", "--by", "model", "--db", str(db_path)]) == 0
    assert "provider says (difference)" in capsys.readouterr()[0]
