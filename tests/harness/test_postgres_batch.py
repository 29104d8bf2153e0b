"""``run --batch`` on the local PostgreSQL server (the same code ``test_batch`` proves on SQLite):
migration m007, the batch price with the meter equal to the invoice, and kill -9 then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store import migrations
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.tiny_suite import TinySuite

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"]


class BatchableSuite(TinySuite):
    batchable = True


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=17, speed=0.0) as server:
        server.state.batch_settings.complete_s = 0.6
        yield server


def _rows(store: Store, sql: str) -> list[dict[str, Any]]:
    with store.begin_read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql))]


def _invoice_nano(sim: Any) -> int:
    return usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


async def test_batch_run_on_postgres_meters_the_invoice(pg_url: str, sim: SimServer) -> None:
    store = Store.open(pg_url)
    try:
        assert store.dialect == "postgresql"
        with store.begin_read() as conn:
            assert "m007_batches" in (migrations.applied_migrations(conn) or [])
        opts = RunOptions(
            suites=[BatchableSuite(8)],
            models=MODELS,
            budget_usd=Decimal("5"),
            simulated=True,
            concurrency=4,
            retry=FAST_RETRY,
            max_output_tokens=48,
            batch=True,
            batch_poll_s=0.1,
            batch_poll_max_s=0.3,
            use_cache=False,
        )
        out = await run(prepare_run(opts), store, simulator=sim)
        assert out.status == "done"
        calls = _rows(store, "select * from calls")
        assert len(calls) == 16 and all(c["status"] == "ok" and c["service_tier"] == "batch" for c in calls)
        assert sum(int(c["cost_nano"]) for c in calls) == _invoice_nano(sim)
        batches = _rows(store, "select * from batches")
        assert len(batches) == 2 and all(b["state"] == "ended" for b in batches)
        assert len(_rows(store, "select * from batch_requests")) == 16
    finally:
        store.close()


def test_kill_9_then_resume_on_postgres(pg_url: str) -> None:
    with SimServer(seed=5, speed=0.0) as sim:
        sim.state.batch_settings.complete_s = 4.0
        cmd = [
            sys.executable, "-m", "harness", "run", "demo", "--limit", "6", "-m", MODELS[0],
            "--max-output-tokens", "300", "--sim-url", sim.base_url, "--batch", "--batch-poll", "0.2",
            "--db", pg_url, "--no-cache",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = Store.open(pg_url)
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                try:
                    got = _rows(store, "select state from batches")
                except Exception:
                    got = []
                if got and all(r["state"] == "submitted" for r in got):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("no batch was submitted")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            run_id = _rows(store, "select id from runs")[0]["id"]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            store.close()
        assert main(["resume", run_id, "--db", pg_url, "--sim-url", sim.base_url, "--json"]) == 0
        batches = sim.state.batches
        assert batches is not None and len(batches.list("openai")) == 1
        store = Store.open(pg_url)
        try:
            calls = _rows(store, "select * from calls")
            items = _rows(store, "select * from item_results")
        finally:
            store.close()
        assert len(calls) == 6 and all(c["status"] == "ok" for c in calls)
        assert len(items) == 6 and all(i["status"] in ("scored", "unusable") for i in items)
        assert sum(int(c["cost_nano"]) for c in calls) == _invoice_nano(sim)
