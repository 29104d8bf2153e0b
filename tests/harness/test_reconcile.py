"""Reconcile: open reservations left by a crash are settled from the simulator's invoice (matched by the
client request id), settled at 0 only when the invoice proves the request never arrived, and otherwise
stay counted at their worst case and shown as unsettled."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.audit.reconcile import reconcile_run
from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.run.retry import RetryPolicy
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store.engine import Store
from tests.helpers.db import execute as _exec
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=23, speed=0.0) as server:
        yield server


async def _run(db: Path, sim: Any) -> str:
    opts = RunOptions(
        suites=[TinySuite(10)],
        models=["openai/o4-mini"],
        budget_usd=Decimal("5"),
        simulated=True,
        concurrency=4,
        retry=RetryPolicy(max_attempts=3, initial_wait_s=0.01),
        max_output_tokens=2000,
    )
    store = Store.open(str(db))
    try:
        return (await run(prepare_run(opts), store, simulator=sim)).run_id
    finally:
        store.close()


def _reopen(db: Path, call: sqlite3.Row) -> None:
    """What a kill -9 between sending and settling leaves: the call row still `reserved`."""
    _exec(
        db,
        "update calls set status = 'reserved', cost_nano = null, request_id = null where id = ?",
        call["id"],
    )
    _exec(
        db,
        "update runs set spent_nano = spent_nano - ?, committed_nano = committed_nano - ? + ?",
        call["cost_nano"],
        call["cost_nano"],
        call["reserved_nano"],
    )


def _fake_open_call(db: Path, like: sqlite3.Row, *, sent_to: str, age_s: float) -> str:
    """A reservation committed before a crash whose request may never have left the process."""
    call_id = uuid.uuid4().hex
    started = (datetime.now(UTC) - timedelta(seconds=age_s)).replace(tzinfo=None).isoformat(sep=" ")
    _exec(
        db,
        "insert into calls (id, run_id, model, provider, api, provider_model, suite, item_id, repeat,"
        " attempt, role, status, reserved_nano, price_id, started_at, cached, sent_to) values"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, 9, 'target', 'reserved', ?, ?, ?, 0, ?)",
        call_id,
        like["run_id"],
        like["model"],
        like["provider"],
        like["api"],
        like["provider_model"],
        like["suite"],
        like["item_id"],
        like["repeat"],
        like["reserved_nano"],
        like["price_id"],
        started,
        sent_to,
    )
    _exec(db, "update runs set committed_nano = committed_nano + ?", like["reserved_nano"])
    return call_id


async def test_reconcile_settles_what_the_invoice_proves_and_nothing_else(db_path: Path, sim: Any) -> None:
    run_id = await _run(db_path, sim)
    calls = _rows(db_path, "select * from calls order by item_id")
    instance = sim.invoice()["instance"]
    assert all(c["sent_to"] == f"sim:{instance}" for c in calls)
    billed = {c["id"]: c["cost_nano"] for c in calls}
    for c in calls[:3]:
        _reopen(db_path, c)
    never = _fake_open_call(db_path, calls[0], sent_to=f"sim:{instance}", age_s=120)
    other_sim = _fake_open_call(db_path, calls[0], sent_to="sim:0123456789abcdef", age_s=120)
    too_recent = _fake_open_call(db_path, calls[0], sent_to=f"sim:{instance}", age_s=1)
    arriving = _fake_open_call(db_path, calls[0], sent_to=f"sim:{instance}", age_s=120)
    sim.state.invoice.begin(arriving)  # arrived at the simulator, not billed yet
    before = _rows(db_path, "select * from runs")[0]
    store = Store.open(str(db_path))
    try:
        result = reconcile_run(store, run_id, sim.invoice(), grace_s=30)
        again = reconcile_run(store, run_id, sim.invoice(), grace_s=30)  # idempotent
        report = run_report_dict(store, run_id)
    finally:
        store.close()
    assert (result.matched, result.absent, result.left_open) == (3, 1, 3)
    assert (again.matched, again.absent, again.left_open) == (0, 0, 3)
    rows = {c["id"]: c for c in _rows(db_path, "select * from calls")}
    invoice = {r["client_request_id"]: r for r in sim.invoice()["requests"].values()}
    for c in calls[:3]:
        row = rows[c["id"]]
        assert row["status"] == "reconciled" and row["cost_nano"] == billed[c["id"]]
        assert row["cost_nano"] == usd_to_nano(Decimal(invoice[c["id"]]["usd"]))
        assert row["request_id"] == invoice[c["id"]]["request_id"]
        assert row["output_tokens"] == invoice[c["id"]]["tokens"]["output"]
    assert rows[never]["status"] == "reconciled" and rows[never]["cost_nano"] == 0
    for left in (other_sim, too_recent, arriving):
        assert rows[left]["status"] == "reserved" and rows[left]["cost_nano"] is None
    after = _rows(db_path, "select * from runs")[0]
    open_nano = 3 * calls[0]["reserved_nano"]
    assert after["spent_nano"] == sum(c["cost_nano"] or 0 for c in rows.values() if c["status"] != "reserved")
    assert after["committed_nano"] == after["spent_nano"] + open_nano
    assert after["committed_nano"] < before["committed_nano"]
    assert result.released_nano == before["committed_nano"] - after["committed_nano"]
    # What stays open is still shown as unsettled, at its worst case.
    assert usd_to_nano(Decimal(report["unsettled_usd"])) == open_nano


def test_cli_reconcile(db_path: Path, sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = anyio.run(_run, db_path, sim)
    code = main(["reconcile", run_id, "--db", str(db_path)])
    assert code == 0 and "nothing to reconcile" in capsys.readouterr().err
    victim = _rows(db_path, "select * from calls limit 1")[0]
    _reopen(db_path, victim)
    code = main(["reconcile", run_id, "--db", str(db_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--sim-url" in err and len(err.strip().splitlines()) == 1
    code = main(["reconcile", run_id, "--db", str(db_path), "--sim-url", sim.base_url, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["matched"] == 1 and out["left_open"] == 0
    assert Decimal(out["billed_usd"]) == Decimal(victim["cost_nano"]).scaleb(-9)
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["committed_nano"] == run_row["spent_nano"]
    # A live run cannot be reconciled yet: said clearly, nothing changed.
    _exec(db_path, "update runs set simulated = 0")
    _reopen(db_path, _rows(db_path, "select * from calls where status = 'ok' limit 1")[0])
    code = main(["reconcile", run_id, "--db", str(db_path), "--sim-url", sim.base_url])
    err = capsys.readouterr().err
    assert code == 2 and "live run" in err and "worst case" in err
    assert main(["reconcile", "nope", "--db", str(db_path)]) == 2


async def test_after_an_invoice_reset_billed_calls_stay_open_not_settled_at_zero(
    db_path: Path, sim: Any
) -> None:
    """The simulator's invoice reset starts a new invoice (a new instance id): a call sent before the
    reset is absent from the new bill but was billed, so reconcile must not settle it at $0."""
    from harness.sim import SimClient

    run_id = await _run(db_path, sim)
    calls = _rows(db_path, "select * from calls order by item_id")
    before_reset = sim.invoice()["instance"]
    for c in calls[:3]:
        _reopen(db_path, c)  # billed, then the process died before settling
    client = SimClient(sim.base_url)
    await anyio.to_thread.run_sync(client.reset_invoice)  # over HTTP, as a user would
    invoice = await anyio.to_thread.run_sync(client.invoice)
    assert invoice["instance"] != before_reset and not invoice["requests"]
    committed = _rows(db_path, "select committed_nano from runs")[0]["committed_nano"]
    store = Store.open(str(db_path))
    try:
        result = reconcile_run(store, run_id, invoice, grace_s=0)
    finally:
        store.close()
    assert (result.matched, result.absent, result.left_open) == (0, 0, 3)
    assert {c["outcome"] for c in result.calls} == {"unproven"}
    assert all("another invoice" in c["reason"] for c in result.calls)
    for c in calls[:3]:
        row = _rows(db_path, "select * from calls where id = ?", c["id"])[0]
        assert row["status"] == "reserved" and row["cost_nano"] is None  # still at its worst case
    assert _rows(db_path, "select committed_nano from runs")[0]["committed_nano"] == committed
    # A call sent after the reset, to the new invoice, is still proven absent when it never arrived.
    fresh = _fake_open_call(db_path, calls[0], sent_to=f"sim:{invoice['instance']}", age_s=120)
    store = Store.open(str(db_path))
    try:
        again = reconcile_run(store, run_id, invoice, grace_s=30)
    finally:
        store.close()
    assert again.absent == 1 and [c["id"] for c in again.calls if c["outcome"] == "absent"] == [fresh]
