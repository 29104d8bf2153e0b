"""Shared helpers for the storage, ledger and PostgreSQL tests (not a test module)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.budget.ledger import CallEnd, CallStart, ItemResult
from harness.store.engine import Store
from harness.types import Usage

PRICE_ID = "p" * 64


def new_run(
    store: Store, budget_nano: int, *, simulated: bool = True, models: list[str] | None = None
) -> str:
    """Create a run (and the price its calls point to)."""
    store.ensure_price(PRICE_ID, "openai", "o3-mini", {"input_mtok": "1.10", "output_mtok": "4.40"}, "t" * 64)
    return store.create_run(
        suites=["demo"],
        models=models or ["openai/o3-mini"],
        budget_nano=budget_nano,
        simulated=simulated,
        config={"concurrency": 4, "limit": None},
        price_table_sha256="t" * 64,
    )


def start(
    run_id: str,
    reserved: int,
    *,
    model: str = "openai/o3-mini",
    suite: str = "demo",
    item: str = "i1",
    repeat: int = 0,
    attempt: int = 1,
    provider: str = "openai",
    started_at: datetime | None = None,
) -> CallStart:
    """A CallStart with a fresh id."""
    return CallStart(
        call_id=uuid.uuid4().hex,
        run_id=run_id,
        model=model,
        provider=provider,
        api="chat",
        provider_model=model.split("/")[-1],
        suite=suite,
        item_id=item,
        repeat=repeat,
        attempt=attempt,
        role="target",
        reserved_nano=reserved,
        price_id=PRICE_ID,
        started_at=started_at or datetime.now(UTC),
    )


def end(
    call_id: str,
    cost: int,
    *,
    status: str = "ok",
    usage: Usage | None = None,
    error_message: str | None = None,
    raw_usage: dict[str, Any] | None = None,
) -> CallEnd:
    """A CallEnd; ``usage`` defaults to a small known usage for ``ok`` and None otherwise."""
    if usage is None and status == "ok":
        usage = Usage(
            input_uncached=100, cache_read=20, cache_write_5m=3, cache_write_1h=1, output=50, reasoning=30
        )
    return CallEnd(
        call_id=call_id,
        status=status,  # type: ignore[arg-type]
        cost_nano=cost,
        usage=usage,
        usage_known=usage is not None,
        raw_usage=raw_usage if raw_usage is not None else ({"prompt_tokens": 123} if usage else None),
        request_id="req_" + call_id[:8],
        finish_reason="stop" if status == "ok" else None,
        error_type=None if status == "ok" else "ProviderUnavailable",
        error_message=error_message,
        http_status=200 if status == "ok" else 503,
        ttft_ms=12,
        latency_ms=34,
        retry_wait_ms=0,
        finished_at=datetime.now(UTC),
    )


def item(
    run_id: str, item_id: str, *, status: str = "scored", correct: bool | None = True, cost: int = 0
) -> ItemResult:
    """An ItemResult for model openai/o3-mini, suite demo, repeat 0."""
    return ItemResult(
        run_id=run_id,
        model="openai/o3-mini",
        suite="demo",
        item_id=item_id,
        repeat=0,
        status=status,  # type: ignore[arg-type]
        correct=correct,
        extracted="42",
        answer_text="The answer is 42",
        target="42",
        reason=None,
        meta={"seed": 1},
        cost_nano=cost,
        attempts=1,
        final_call_id=None,
    )


def raw_state(db: Path, run_id: str) -> dict[str, int]:
    """The run's ledger and its call rows, read by an independent connection (one snapshot)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("BEGIN")
        budget, committed, spent = conn.execute(
            "SELECT budget_nano, committed_nano, spent_nano FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        costs, open_reserved, rows = conn.execute(
            "SELECT COALESCE(SUM(cost_nano), 0),"
            " COALESCE(SUM(CASE WHEN status = 'reserved' THEN reserved_nano END), 0), COUNT(*)"
            " FROM calls WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {
        "budget": budget,
        "committed": committed,
        "spent": spent,
        "costs": costs,
        "open": open_reserved,
        "rows": rows,
    }


def assert_consistent(state: dict[str, int]) -> None:
    assert state["spent"] == state["costs"]
    assert state["committed"] == state["spent"] + state["open"]


# A worker process: reserves (and optionally settles) on a shared run, then prints what it was granted.
WORKER = r"""
import json, os, random, sys, uuid
from datetime import UTC, datetime
import anyio
from harness.budget.ledger import CallEnd, CallStart, Ledger
from harness.store.engine import Store

url, run_id, price_id, seed, tasks, attempts, settle, sync_dir = sys.argv[1:9]
rng = random.Random(int(seed))
store = Store.open(url)
granted = []

async def worker(ledger):
    for _ in range(int(attempts)):
        amount = rng.randint(1, 1000)
        s = CallStart(uuid.uuid4().hex, run_id, "openai/o3-mini", "openai", "chat", "o3-mini", "demo",
                      "i", 0, 1, "target", amount, price_id, datetime.now(UTC))
        if await ledger.reserve(s):
            cost = rng.randint(0, amount) if settle == "1" else None
            granted.append([s.call_id, amount, cost])
            if cost is not None:
                await ledger.settle(CallEnd(s.call_id, "ok", cost, None, False, None, None, None, None, None,
                                            None, None, None, 0, datetime.now(UTC)))

async def main():
    async with Ledger(store, run_id) as ledger:
        open(f"{sync_dir}/ready-{seed}", "w").close()
        while not os.path.exists(f"{sync_dir}/go"):
            await anyio.sleep(0.002)
        async with anyio.create_task_group() as tg:
            for _ in range(int(tasks)):
                tg.start_soon(worker, ledger)

anyio.run(main)
store.close()
print(json.dumps(granted))
"""


SHARED_BUDGET = 160_000
"""Budget (nano-USD) for :func:`run_processes` reserving without settling, with the default 2 x 16 x 15
attempts: more than either process reserves on its own (seed 0 draws 125,474 and seed 1 130,796 in
all), so each one is granted reservations however the OS schedules them (with 40,000 one process
could take it all before the other got the write lock), and less than both together, so they contend."""


def run_processes(
    url: str,
    run_id: str,
    *,
    procs: int = 2,
    tasks: int = 16,
    attempts: int = 15,
    settle: bool = False,
    observe: Callable[[], None] | None = None,
) -> list[list[list[Any]]]:
    """Run ``procs`` worker processes against one run at the same moment; return each one's grants.

    ``observe`` is called repeatedly while they run (to check the invariant from outside).
    """
    sync_dir = tempfile.mkdtemp(prefix="tollbench-sync-")
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                url,
                run_id,
                PRICE_ID,
                str(seed),
                str(tasks),
                str(attempts),
                "1" if settle else "0",
                sync_dir,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(procs)
    ]
    deadline = time.monotonic() + 60
    while len(os.listdir(sync_dir)) < procs and time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            break
        time.sleep(0.005)
    Path(sync_dir, "go").touch()  # all start reserving at the same moment
    while observe is not None and any(c.poll() is None for c in children):
        observe()
        time.sleep(0.01)
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(sync_dir, ignore_errors=True)
    return results


async def check_text_with_nul_and_service_tier(store: Store) -> None:
    """A NUL in a model's text (PostgreSQL text columns refuse it) is stored as U+FFFD and does not fail
    the batch; a settle's service tier is stored on the call row."""
    from dataclasses import replace

    from harness.budget.ledger import Ledger

    run_id = new_run(store, 10_000)
    async with Ledger(store, run_id) as ledger:
        a, b = start(run_id, 100), start(run_id, 100)
        assert await ledger.reserve(a) and await ledger.reserve(b)
        await ledger.settle(replace(end(a.call_id, 40), service_tier="flex"))
        await ledger.settle(end(b.call_id, 100, status="error", error_message="bad\x00byte"))
        await ledger.record_item(replace(item(run_id, "q"), answer_text="x\x00y", extracted="4\x002"))
    calls = {c["id"]: c for c in store.calls(run_id)}
    assert calls[a.call_id]["service_tier"] == "flex" and calls[b.call_id]["service_tier"] is None
    assert calls[b.call_id]["error_message"] == "bad\ufffdbyte"
    (result,) = store.item_results(run_id)
    assert (result["answer_text"], result["extracted"]) == ("x\ufffdy", "4\ufffd2")
