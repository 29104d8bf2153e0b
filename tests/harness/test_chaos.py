"""Crash-proof spend under the worst conditions (issue 6): kill -9 of the run process at seeded moments
with a resume after each, a chaos run against a faulty simulator, and database faults mid-run.

Every check compares the meter (the database) with the simulator's own invoice, request by request,
matched through the ``x-client-request-id`` header the runner sends (the call id).
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.audit.reconcile import reconcile_run
from harness.errors import StorageError
from harness.pricing.money import usd_to_nano
from harness.run.resume import plan_resume, resume_run
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import FaultConfig, SimServer
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import count as _count
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

ROOT = Path(__file__).resolve().parents[2]
CHAOS_RETRY = replace(FAST_RETRY, max_attempts=10)  # 10% 429s and 5% 5xx: more tries than usual


def _child(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _quiet(sim: SimServer, timeout: float = 20.0) -> dict[str, Any]:
    """The invoice once nothing is in progress (streams to killed clients have been billed)."""
    deadline = time.monotonic() + timeout
    while True:
        invoice = sim.invoice()
        if not invoice["in_progress"] or time.monotonic() > deadline:
            return invoice
        time.sleep(0.05)


def _check_meter_against_invoice(db: Path, invoice: dict[str, Any], budget_nano: int) -> dict[str, int]:
    """The invariants shared by the kill and chaos tests; returns a few counts for the report."""
    calls = {c["id"]: c for c in _rows(db, "select * from calls")}
    run_row = _rows(db, "select * from runs")[0]
    settled = sum(int(c["cost_nano"]) for c in calls.values() if c["status"] != "reserved")
    open_nano = sum(int(c["reserved_nano"]) for c in calls.values() if c["status"] == "reserved")
    assert run_row["spent_nano"] == settled and run_row["committed_nano"] == settled + open_nano
    invoice_nano = usd_to_nano(Decimal(invoice["total"]["usd"]))
    assert settled + open_nano >= invoice_nano, "the meter must never show less than the bill"
    assert invoice_nano <= budget_nano
    assert run_row["committed_nano"] <= run_row["budget_nano"]
    # Every request the simulator saw is a call row (every attempt is metered).
    requests = list(invoice["requests"].values())
    assert all(r["client_request_id"] in calls for r in requests)
    # Per call: a settled call with known usage costs exactly what was billed; never less.
    for r in requests:
        c = calls[r["client_request_id"]]
        billed = usd_to_nano(Decimal(r["usd"]))
        if c["status"] == "reserved":
            assert c["reserved_nano"] >= billed
        elif c["usage_known"]:
            assert c["cost_nano"] == billed, (dict(c), r)
        else:
            assert c["cost_nano"] >= billed
    # Every unit answered exactly once, by one ok call; other billed requests of the same unit were
    # in flight at a kill (their call rows are still open reservations).
    items = _rows(db, "select * from item_results")
    assert all(i["status"] in ("scored", "unusable") for i in items), Counter(i["status"] for i in items)
    billed_by_unit: dict[tuple[str, str, str, int], list[Any]] = defaultdict(list)
    for r in requests:
        if r["billed"]:
            c = calls[r["client_request_id"]]
            billed_by_unit[(c["model"], c["suite"], c["item_id"], c["repeat"])].append(c)
    paid_twice = 0
    for i in items:
        key = (i["model"], i["suite"], i["item_id"], i["repeat"])
        answered = [c for c in billed_by_unit[key] if c["status"] == "ok"]
        assert len(answered) == 1, (key, [dict(c) for c in billed_by_unit[key]])
        assert i["final_call_id"] == answered[0]["id"]
        extra = [c for c in billed_by_unit[key] if c["status"] != "ok"]
        assert all(c["status"] in ("reserved", "reconciled", "error", "interrupted") for c in extra)
        paid_twice += sum(1 for c in extra if c["status"] in ("reserved", "reconciled"))
    return {
        "items": len(items),
        "calls": len(calls),
        "requests": len(requests),
        "open": sum(1 for c in calls.values() if c["status"] == "reserved"),
        "paid_twice": paid_twice,
    }


@pytest.mark.timeout(600)  # 22 kills and resumes: about a minute, more on a loaded machine
def test_kill_9_at_seeded_moments_then_resume_pays_each_answer_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    budget = Decimal("2")
    rng = random.Random(20261128)
    started = time.monotonic()
    with SimServer(seed=13, speed=0.04) as sim:
        run_args = [
            "run", "demo", "-m", "openai/gpt-4o-mini", "--budget", str(budget), "--repeats", "5",
            "-c", "4", "--max-output-tokens", "1500", "--run-id", "kill-run", "--allow-partial",
            "--sim-url", sim.base_url, "--db", str(db),
        ]  # fmt: skip
        resume_args = ["resume", "kill-run", "--sim-url", sim.base_url, "--db", str(db)]
        kills = 0
        rounds = 0
        while kills < 22:
            rounds += 1
            assert rounds < 40, "the run finished before enough kills; make it longer"
            exists = _count(db, "select count(*) from runs") > 0
            proc = _child(resume_args if exists else run_args)
            # A seeded moment: after a seeded number of new calls (0 = during start-up or the first
            # reservation), plus a seeded delay, so kills land before, during and after calls.
            target = _count(db, "select count(*) from calls") + rng.choice([0, 1, 1, 2, 3, 4])
            delay = rng.uniform(0.0, 0.3)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                if _count(db, "select count(*) from calls") >= target:
                    break
                time.sleep(0.005)
            time.sleep(delay)
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no cleanup, no settle, nothing flushed
                kills += 1
            proc.wait(timeout=30)
            assert proc.poll() is not None
        # The last resume runs to the end.
        final = _child(resume_args)
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        invoice = _quiet(sim)
        before = _check_meter_against_invoice(db, invoice, usd_to_nano(budget))
        assert before["items"] == 200 and before["requests"] == len(invoice["requests"])
        # Reconcile the reservations the kills left open: now the meter equals the bill exactly.
        store = Store.open(str(db))
        try:
            result = reconcile_run(store, "kill-run", invoice, grace_s=0)
        finally:
            store.close()
        after = _check_meter_against_invoice(db, invoice, usd_to_nano(budget))
    assert result.left_open == 0 and result.matched + result.absent == before["open"]
    run_row = _rows(db, "select * from runs")[0]
    assert run_row["status"] == "done"
    assert run_row["committed_nano"] == run_row["spent_nano"] == usd_to_nano(Decimal(invoice["total"]["usd"]))
    assert after["paid_twice"] == before["paid_twice"] <= kills * 4  # at most what was in flight
    elapsed = time.monotonic() - started
    print(
        f"\nkill -9: {kills} kills in {rounds} rounds, {elapsed:.1f}s; {before['calls']} call rows, "
        f"{before['open']} left open (reconciled: {result.matched} billed, {result.absent} never arrived), "
        f"{before['paid_twice']} answers paid twice (in flight at a kill)"
    )


async def _run_tiny(db: Path, sim: Any, *, store: Store | None = None, **kw: Any) -> Any:
    opts = RunOptions(
        suites=[kw.pop("suite", TinySuite(30))],
        models=kw.pop("models", ["openai/gpt-4o-mini"]),
        budget_usd=Decimal(kw.pop("budget", "5")),
        simulated=True,
        concurrency=kw.pop("concurrency", 6),
        retry=kw.pop("retry", CHAOS_RETRY),
        max_output_tokens=kw.pop("max_output_tokens", 2000),
        **kw,
    )
    plan = prepare_run(opts)
    own = store is None
    s = store or Store.open(str(db))
    try:
        return await run(plan, s, simulator=sim)
    finally:
        if own:
            s.close()


@pytest.mark.anyio
async def test_chaos_run_completes_and_every_attempt_is_metered(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    faults = FaultConfig(
        rate_limit_429=0.10,
        error_500=0.025,
        error_503=0.025,
        disconnect_mid_stream=0.03,
        stall=0.01,
        stall_s=0.6,
        retry_after_s=0.05,
    )
    with SimServer(seed=21, speed=0.0, faults=faults) as sim:
        outcome = await _run_tiny(
            db,
            sim,
            suite=TinySuite(60, repeats=2),
            models=["openai/o4-mini", "anthropic/claude-haiku-4-5"],
            stall_timeout_s=0.2,
            concurrency=8,
        )
        invoice = await anyio.to_thread.run_sync(_quiet, sim)
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    calls = _rows(db, "select * from calls")
    # Every request the simulator saw is a call row (checked below). Under CPU load an attempt can
    # also fail before the server read its request (a stall timeout while the loaded server had not
    # yet parsed it): such a row is an error, never an answer, and is charged its full reservation
    # unless the adapter proved it never left (then 0), so the meter stays >= the bill.
    seen = {r["client_request_id"] for r in invoice["requests"].values()}
    unseen = [c for c in calls if c["id"] not in seen]
    assert len(unseen) <= 3, [dict(c) for c in unseen]
    assert all(c["status"] == "error" and c["cost_nano"] in (0, c["reserved_nano"]) for c in unseen)
    kinds = Counter(r["fault"] for r in invoice["requests"].values())
    assert kinds["rate_limit_429"] and kinds["disconnect_mid_stream"] and kinds["stall"], kinds
    assert kinds["error_500"] + kinds["error_503"] > 0, kinds
    counts = _check_meter_against_invoice(db, invoice, usd_to_nano(Decimal("5")))
    assert counts["items"] == 240 and counts["open"] == 0 and counts["paid_twice"] == 0
    stalled = [c for c in calls if "stalled" in (c["error_message"] or "")]
    assert stalled and all(c["cost_nano"] == c["reserved_nano"] for c in stalled)  # usage unknown: charged


@pytest.mark.anyio
async def test_full_disk_mid_run_keeps_everything_committed_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    Store.open(str(db)).close()
    pages = _rows(db, "pragma page_count")[0][0]
    full = Store.open(str(db), sqlite_pragmas={"max_page_count": int(pages) + 12})
    with SimServer(seed=4, speed=0.0) as sim:
        with pytest.raises(StorageError) as info:
            await _run_tiny(db, sim, store=full, suite=TinySuite(80), run_id="full-run")
        full.close()
        message = str(info.value)
        assert "database or disk is full" in message and str(db) in message and "\n" not in message
        calls_before = _rows(db, "select * from calls")
        assert calls_before, "the disk was meant to fill up mid-run, not at the start"
        run_row = _rows(db, "select * from runs")[0]
        settled = sum(c["cost_nano"] or 0 for c in calls_before if c["status"] != "reserved")
        open_nano = sum(c["reserved_nano"] for c in calls_before if c["status"] == "reserved")
        assert run_row["spent_nano"] == settled and run_row["committed_nano"] == settled + open_nano
        # With space again, resume finishes the run; nothing committed was lost or bought twice.
        store = Store.open(str(db))
        try:
            plan = plan_resume(store, "full-run", suites=[TinySuite(80)])
            outcome = await resume_run(store, plan, simulator=sim)
        finally:
            store.close()
        invoice = await anyio.to_thread.run_sync(_quiet, sim)
    assert outcome.status == "done"
    ids = {c["id"] for c in calls_before}
    assert ids <= {c["id"] for c in _rows(db, "select id from calls")}
    _check_meter_against_invoice(db, invoice, usd_to_nano(Decimal("5")))


@pytest.mark.anyio
async def test_a_locked_database_mid_run_ends_it_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.05) as sim:
        store = Store.open(str(db), busy_timeout_s=0.3)
        locker = sqlite3.connect(db, timeout=5, isolation_level=None)
        error: list[BaseException] = []
        failed = anyio.Event()

        async def go() -> None:
            try:
                await _run_tiny(db, sim, store=store, suite=TinySuite(60), run_id="locked-run", concurrency=4)
            except StorageError as exc:
                error.append(exc)
            failed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            while _count(db, "select count(*) from calls") < 5:  # noqa: ASYNC110 (polls the file)
                await anyio.sleep(0.01)
            locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with anyio.fail_after(30):
                await failed.wait()
            locker.execute("ROLLBACK")
        locker.close()
        store.close()
        assert error, "the run was meant to fail on the lock"
        assert "locked by another process" in str(error[0]) and "\n" not in str(error[0])
        calls = _rows(db, "select * from calls")
        run_row = _rows(db, "select * from runs")[0]
        settled = sum(c["cost_nano"] or 0 for c in calls if c["status"] != "reserved")
        open_nano = sum(c["reserved_nano"] for c in calls if c["status"] == "reserved")
        assert run_row["committed_nano"] == settled + open_nano  # reservations still counted
        store = Store.open(str(db))
        try:
            plan = plan_resume(store, "locked-run", suites=[TinySuite(60)], concurrency=16)
            outcome = await resume_run(store, plan, simulator=sim)
        finally:
            store.close()
        invoice = await anyio.to_thread.run_sync(_quiet, sim)
    assert outcome.status == "done"
    _check_meter_against_invoice(db, invoice, usd_to_nano(Decimal("5")))
