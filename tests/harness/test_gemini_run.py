"""Gemini end to end: a faulty simulated run metered call by call against the simulator's invoice, and
``tollbench run demo -m google/gemini-2.5-flash --budget 1 --sim`` as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from harness.pricing.money import usd_to_nano
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import FaultConfig, SimServer
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
async def test_faulty_gemini_run_meter_equals_invoice_per_call(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    faults = FaultConfig(
        rate_limit_429=0.12, error_503=0.05, disconnect_mid_stream=0.06, stream_error_event=0.04,
        retry_after_s=0.05,
    )  # fmt: skip
    with SimServer(seed=17, faults=faults) as sim:
        opts = RunOptions(
            suites=[TinySuite(24)],
            models=["google/gemini-2.5-flash", "google/gemini-3-flash-preview"],
            budget_usd=Decimal("2"),
            simulated=True,
            concurrency=4,
            retry=FAST_RETRY,
            max_output_tokens=6000,
        )
        store = Store.open(str(db))
        try:
            outcome = await run(prepare_run(opts), store, simulator=sim)
        finally:
            store.close()
        invoice = await anyio.to_thread.run_sync(sim.invoice)
    assert (outcome.status, outcome.exit_code) == ("done", 0), outcome.errors
    calls = {c["id"]: c for c in _rows(db, "select * from calls")}
    requests = list(invoice["requests"].values())
    assert {r["provider"] for r in requests} == {"google"}
    kinds = Counter(r["fault"] for r in requests)
    assert kinds["rate_limit_429"] and kinds["disconnect_mid_stream"] and kinds["stream_error_event"], kinds
    # every request the simulator saw is a call row; per call the meter equals the bill (usage known)
    # or is at least it (a failed attempt is charged its reservation: billed unless proven free)
    assert all(r["client_request_id"] in calls for r in requests)
    for r in requests:
        c = calls[r["client_request_id"]]
        billed = usd_to_nano(Decimal(r["usd"]))
        if c["usage_known"]:
            assert c["status"] == "ok" and c["cost_nano"] == billed, (dict(c), r)
        elif r["status"] == "refused":
            assert c["cost_nano"] == 0 and billed == 0  # an HTTP error before output is free
        else:
            assert c["status"] == "error" and c["cost_nano"] == c["reserved_nano"] >= billed > 0
    run_row = _rows(db, "select * from runs")[0]
    settled = sum(int(c["cost_nano"]) for c in calls.values())
    assert run_row["spent_nano"] == settled >= usd_to_nano(Decimal(invoice["total"]["usd"]))
    items = _rows(db, "select * from item_results")
    assert len(items) == 48 and all(i["status"] in ("scored", "unusable") for i in items)


@pytest.mark.timeout(240)
def test_cli_run_demo_on_gemini_with_the_simulator(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    env = {**os.environ, "GEMINI_API_KEY": "AIzaSy-not-used-by-a-sim-run-0000"}
    args = [
        sys.executable, "-m", "harness", "run", "demo", "-m", "google/gemini-2.5-flash",
        "--budget", "1", "--sim", "--db", str(db),
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    calls = _rows(db, "select * from calls")
    assert calls and {c["model"] for c in calls} == {"google/gemini-2.5-flash"}
    ok = [c for c in calls if c["status"] == "ok"]
    assert ok and all(c["usage_known"] and c["cost_nano"] > 0 for c in ok)
    run_row = _rows(db, "select * from runs")[0]
    assert run_row["status"] == "done" and 0 < run_row["spent_nano"] <= usd_to_nano(Decimal("1"))
    assert b"AIzaSy" not in proc.stdout + proc.stderr
    assert not any("AIzaSy" in str(v) for c in calls for v in dict(c).values())
