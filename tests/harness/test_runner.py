"""End-to-end: the runner through the real adapters and SDKs against the real simulator (loopback HTTP),
metering into a real SQLite file, checked against the simulator's own invoice."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.pricing.money import usd_to_nano
from harness.run.retry import RetryPolicy
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import FaultConfig, SimServer
from harness.store.engine import Store
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_attempts=10, initial_wait_s=0.01, max_wait_s=0.05, max_retry_after_s=0.2)


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=7, speed=0.0) as server:
        yield server


async def _run(db: Path, sim: Any, *, models: list[str], budget: str, n: int = 12, **kw: Any) -> RunOutcome:
    opts = RunOptions(
        suites=[TinySuite(n)],
        models=models,
        budget_usd=Decimal(budget),
        simulated=True,
        concurrency=kw.pop("concurrency", 6),
        retry=kw.pop("retry", FAST_RETRY),
        **kw,
    )
    plan = prepare_run(opts)
    store = Store.open(str(db))
    try:
        return await run(plan, store, simulator=sim)
    finally:
        store.close()


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _invoice_nano(inv: dict[str, Any]) -> int:
    return usd_to_nano(Decimal(inv["total"]["usd"]))


async def test_run_meters_exactly_what_the_simulator_bills(db_path: Path, sim: Any) -> None:
    outcome = await _run(
        db_path,
        sim,
        models=["openai/o4-mini", "anthropic/claude-haiku-4-5-thinking", "openai/gpt-4o-mini"],
        budget="20",
        max_output_tokens=10000,
    )
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    calls = _rows(db_path, "select * from calls")
    invoice = sim.invoice()
    assert len(calls) == len(invoice["requests"]) == 36
    for c in calls:
        assert c["status"] == "ok" and c["usage_known"]
        billed = invoice["requests"][c["request_id"]]
        # Request by request: the meter's cost equals the simulator's bill, and so do the tokens.
        assert c["cost_nano"] == usd_to_nano(Decimal(billed["usd"]))
        assert c["output_tokens"] == billed["tokens"]["output"]
        assert c["reasoning_tokens"] == billed["tokens"]["reasoning"]
        assert c["input_uncached"] == billed["tokens"]["input_uncached"]
        assert c["cache_read"] == billed["tokens"]["cache_read"]
        assert c["cost_nano"] <= c["reserved_nano"]
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["spent_nano"] == sum(c["cost_nano"] for c in calls) == _invoice_nano(invoice)
    assert run_row["committed_nano"] == run_row["spent_nano"]
    assert run_row["simulated"]
    items = _rows(db_path, "select * from item_results")
    assert len(items) == 36 and all(i["status"] in ("scored", "unusable") for i in items)
    # The simulator's models answer from the key: most answers are right, and not all.
    correct = sum(1 for i in items if i["correct"])
    assert 12 <= correct < 36


async def test_budget_too_small_stops_at_the_cap(db_path: Path, sim: Any) -> None:
    budget = "0.05"
    outcome = await _run(db_path, sim, models=["openai/o4-mini"], budget=budget, n=40, max_output_tokens=2000)
    assert (outcome.status, outcome.exit_code) == ("budget_exhausted", 3)
    invoice_total = _invoice_nano(sim.invoice())
    limit = usd_to_nano(Decimal(budget))
    run_row = _rows(db_path, "select * from runs")[0]
    assert invoice_total <= limit
    assert run_row["spent_nano"] <= limit and run_row["committed_nano"] <= limit
    assert run_row["spent_nano"] >= invoice_total
    items = _rows(db_path, "select status, count(*) n from item_results group by status")
    counts = {r["status"]: r["n"] for r in items}
    assert counts.get("not_run", 0) > 0, counts
    assert sum(counts.values()) == 40  # every item accounted for: answered or recorded as not run
    assert "wrong" not in counts


async def test_faults_complete_and_meter_covers_the_invoice(db_path: Path) -> None:
    faults = FaultConfig(
        rate_limit_429=0.10,
        error_500=0.05,
        overloaded_529=0.03,
        disconnect_mid_stream=0.05,
        stream_error_event=0.03,
        malformed_chunk=0.02,
        retry_after_s=0.05,
    )
    with SimServer(seed=3, speed=0.0, faults=faults) as sim:
        outcome = await _run(
            db_path,
            sim,
            models=["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"],
            budget="10",
            n=30,
            max_output_tokens=3000,
        )
        invoice = sim.invoice()
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    calls = _rows(db_path, "select * from calls")
    assert len(calls) == len(invoice["requests"])  # every attempt is a call row
    assert any(c["status"] == "error" for c in calls), "the fault schedule injected nothing"
    items = _rows(db_path, "select * from item_results")
    assert len(items) == 60 and all(i["status"] in ("scored", "unusable") for i in items)
    metered = sum(c["cost_nano"] for c in calls)
    assert metered >= _invoice_nano(invoice)
    for c in calls:
        billed = invoice["requests"].get(c["request_id"]) if c["request_id"] else None
        if c["usage_known"]:
            assert billed is not None and c["cost_nano"] == usd_to_nano(Decimal(billed["usd"]))
        elif billed is not None:
            # usage unknown: charged the full reservation, never less than the provider billed
            assert c["cost_nano"] >= usd_to_nano(Decimal(billed["usd"]))
    refused = [c for c in calls if c["status"] == "error" and c["http_status"] in (429, 500, 529)]
    assert refused and all(c["cost_nano"] == 0 for c in refused)


def test_no_price_and_unknown_suite_are_config_errors(db_path: Path) -> None:
    from harness.errors import PricingMissing, UnknownSuite

    with pytest.raises(PricingMissing, match="openai/gpt-nonexistent"):
        prepare_run(
            RunOptions(suites=[TinySuite()], models=["openai/gpt-nonexistent"], budget_usd=Decimal(1))
        )
    with pytest.raises(UnknownSuite):
        prepare_run(RunOptions(suites=["no-such-suite"], models=["openai/o4-mini"], budget_usd=Decimal(1)))
    assert not db_path.exists()  # nothing written


async def test_target_ci_stops_early_with_an_honest_summary(db_path: Path, sim: Any) -> None:
    outcome = await _run(
        db_path,
        sim,
        models=["openai/gpt-4o-mini"],
        budget="20",
        n=300,
        max_output_tokens=1500,
        target_ci=0.15,
        concurrency=4,
    )
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    items = _rows(db_path, "select status, reason from item_results")
    assert len(items) == 300
    skipped = [i for i in items if i["status"] == "not_run"]
    assert skipped and all(i["reason"] == "target_ci_reached" for i in skipped)
    answered = len(items) - len(skipped)
    assert answered < 200  # stopped well before the full run
    store = Store.open(str(db_path))
    try:
        config = store.get_run(outcome.run_id)["config"]  # type: ignore[index]
    finally:
        store.close()
    (summary,) = config["target_ci"]
    assert summary["reached"] and summary["population"] == 300
    assert summary["interval"]["high"] - summary["interval"]["low"] <= 2 * 0.15 + 1e-9
    assert summary["n_items"] <= answered
    assert Decimal(summary["full_run_projected_usd"]) > Decimal(summary["spent_usd"])


async def test_budget_split_keeps_the_cheap_model_going(db_path: Path, sim: Any) -> None:
    # o4-mini reserves ~30x what gpt-4o-mini does; with equal shares it stops at its own share and
    # the cheap model is not starved.
    budget = Decimal("0.30")
    outcome = await _run(
        db_path,
        sim,
        models=["openai/o4-mini", "openai/gpt-4o-mini"],
        budget=str(budget),
        n=40,
        max_output_tokens=4000,
    )
    assert outcome.status == "budget_exhausted"
    rows = {
        r["model"]: r
        for r in _rows(
            db_path,
            "select model, sum(cost_nano) spent, sum(status = 'ok') ok from calls group by model",
        )
    }
    assert rows["openai/gpt-4o-mini"]["ok"] == 40  # the cheap model finished everything
    assert rows["openai/o4-mini"]["ok"] < 40
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["committed_nano"] <= usd_to_nano(budget)
    not_run = _rows(db_path, "select model, reason from item_results where status = 'not_run'")
    assert not_run and {r["model"] for r in not_run} == {"openai/o4-mini"}
    assert {r["reason"] for r in not_run} == {"budget_share_exhausted"}
