"""``run --batch`` on the simulator: the batch price, the meter equal to the invoice, the cap, resume
after kill -9, expiry with partial output, errored lines re-run (docs/batch.md)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.pricing.money import usd_to_nano
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.batches import run_batches
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"]


class BatchableSuite(TinySuite):
    batchable = True


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=17, speed=0.0) as server:
        server.state.batch_settings.complete_s = 0.6
        yield server


def _options(**kw: Any) -> RunOptions:
    base: dict[str, Any] = {
        "suites": [BatchableSuite(12)],
        "models": MODELS,
        "budget_usd": Decimal("5"),
        "simulated": True,
        "concurrency": 4,
        "retry": FAST_RETRY,
        "max_output_tokens": 400,
        "batch_poll_s": 0.1,
        "batch_poll_max_s": 0.3,
        "batch_cancel_wait_s": 5.0,
        "use_cache": False,
    }
    base.update(kw)
    return RunOptions(**base)


async def _run(db: Path, sim: Any, **kw: Any) -> RunOutcome:
    store = Store.open(str(db))
    try:
        return await run(prepare_run(_options(**kw)), store, simulator=sim)
    finally:
        store.close()


def _invoice_nano(sim: Any) -> int:
    return usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


async def test_batch_costs_half_and_meter_equals_invoice(tmp_path: Path, sim: Any) -> None:
    # Answers cut at a small output limit use the same tokens on both paths (the simulator draws an
    # answer's length from the request body, which differs between a stream and a batch line).
    live = await _run(tmp_path / "live.db", sim, max_output_tokens=48)
    live_bill = _invoice_nano(sim)
    live_calls = _rows(tmp_path / "live.db", "select * from calls")
    sim.reset_invoice()
    batch = await _run(tmp_path / "batch.db", sim, batch=True, max_output_tokens=48)
    batch_bill = _invoice_nano(sim)
    db = tmp_path / "batch.db"
    calls = _rows(db, "select * from calls")
    items = _rows(db, "select * from item_results")
    assert live.status == batch.status == "done"
    assert len(items) == 24 and all(i["status"] in ("scored", "unusable") for i in items)
    assert len(calls) == 24 and all(c["status"] == "ok" for c in calls)
    assert all(c["service_tier"] == "batch" for c in calls)
    meter = sum(int(c["cost_nano"]) for c in calls)
    assert meter == batch_bill
    # same usage (the simulator's output depends on the request body, which is the same)
    usage = lambda cs: sorted(  # noqa: E731
        (c["item_id"], c["model"], c["input_uncached"], c["cache_read"], c["output_tokens"]) for c in cs
    )
    assert usage(calls) == usage(live_calls)
    live_meter = sum(int(c["cost_nano"]) for c in live_calls)
    assert live_meter == live_bill
    assert abs(2 * batch_bill - live_bill) <= len(calls)  # half, to rounding (1 nano per call)
    store = Store.open(str(db))
    try:
        batches = run_batches(store, batch.run_id)
    finally:
        store.close()
    assert len(batches) == 2 and all(b.state == "ended" and b.provider_batch_id for b in batches)
    print(f"live ${Decimal(live_bill) / 10**9} batch ${Decimal(batch_bill) / 10**9}")
