"""Resume, the response cache, reconcile, export/import and migration m003 on the local PostgreSQL server,
through the real runner and the simulator (the same code that ``test_resume``, ``test_cache``,
``test_reconcile`` and ``test_bundle`` prove on SQLite).

Each test gets a fresh schema (dropped afterwards). Without a reachable server the tests are skipped
with the reason shown, unless ``TOLLBENCH_REQUIRE_POSTGRES=1``, in which case they fail.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from ledger_fixtures import end, new_run, start

from harness.audit.reconcile import reconcile_run
from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.pricing.money import usd_to_nano
from harness.report import cost_rows, run_report_dict
from harness.run.cache import find_cached
from harness.run.resume import plan_resume, prior_units, resume_run
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store import migrations
from harness.store.bundle import export_to_file, import_bundle
from harness.store.engine import Store, calls_table, storage_error
from tests.helpers.db import FAST_RETRY
from tests.helpers.tiny_suite import TinySuite

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

MODEL = "openai/o4-mini"


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    s = Store.open(pg_url)
    assert s.dialect == "postgresql"
    yield s
    s.close()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=17, speed=0.0) as server:
        yield server


def _options(n: int, repeats: int, budget: str, **kw: Any) -> RunOptions:
    return RunOptions(
        suites=[TinySuite(n, repeats=repeats)],
        models=[MODEL],
        budget_usd=Decimal(budget),
        simulated=True,
        concurrency=4,
        retry=FAST_RETRY,
        max_output_tokens=2000,
        **kw,
    )


async def _run(
    store: Store, sim: SimServer, *, n: int = 8, repeats: int = 1, budget: str = "5", **kw: Any
) -> RunOutcome:
    return await run(prepare_run(_options(n, repeats, budget, **kw)), store, simulator=sim)


async def _resume(
    store: Store, sim: SimServer, run_id: str, *, n: int, repeats: int, add_nano: int = 0, **kw: Any
) -> RunOutcome:
    plan = plan_resume(store, run_id, suites=[TinySuite(n, repeats=repeats)], **kw)
    return await resume_run(store, plan, simulator=sim, add_budget_nano=add_nano)


def _rows(store: Store, sql: str, **params: Any) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


def _exec(store: Store, sql: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _totals(store: Store, run_id: str) -> dict[str, int]:
    """The run row's ledger and the same sums computed from its call rows, in one snapshot."""
    with store.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        budget, committed, spent = conn.execute(
            sa.text("SELECT budget_nano, committed_nano, spent_nano FROM runs WHERE id = :r"), {"r": run_id}
        ).one()
        settled, open_nano = conn.execute(
            sa.text(
                "SELECT COALESCE(SUM(CASE WHEN status <> 'reserved' THEN cost_nano END), 0), "
                "COALESCE(SUM(CASE WHEN status = 'reserved' THEN reserved_nano END), 0) "
                "FROM calls WHERE run_id = :r"
            ),
            {"r": run_id},
        ).one()
    state = {"budget": budget, "committed": committed, "spent": spent, "settled": settled, "open": open_nano}
    return {k: int(v) for k, v in state.items()}


def _billed_per_unit(sim: SimServer, store: Store) -> Counter[tuple[str, int]]:
    calls = {c["id"]: c for c in _rows(store, "SELECT id, item_id, repeat FROM calls")}
    out: Counter[tuple[str, int]] = Counter()
    for r in sim.invoice()["requests"].values():
        if r["billed"]:
            c = calls[r["client_request_id"]]
            out[(c["item_id"], c["repeat"])] += 1
    return out


def _invoice_nano(sim: SimServer) -> int:
    return usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


def _all_ints(rows: list[dict[str, Any]], *names: str) -> bool:
    return all(type(r[n]) is int for r in rows for n in names)  # never Decimal (PostgreSQL SUM)


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("id", "config")}


async def _settled_call(store: Store, call: Any) -> None:
    async with Ledger(store, call.run_id) as ledger:
        assert await ledger.reserve(call)
        await ledger.settle(end(call.call_id, 300))


# -- 1. the response cache -----------------------------------------------------------------------------


async def test_a_rerun_is_answered_from_the_cache_at_no_cost(store: Store, sim: SimServer) -> None:
    first = await _run(store, sim)
    invoice_before = sim.invoice()
    second = await _run(store, sim)
    assert (first.status, second.status) == ("done", "done")
    assert sim.invoice()["total"] == invoice_before["total"]  # the provider was not asked again
    assert len(sim.invoice()["requests"]) == len(invoice_before["requests"])

    paid = {c["id"]: c for c in store.calls(first.run_id)}
    cached = store.calls(second.run_id)
    assert len(paid) == len(cached) == 8
    for c in cached:
        src = paid[c["source_call_id"]]
        assert c["cached"] is True and c["status"] == "cached"
        assert c["cost_nano"] == 0 and c["reserved_nano"] == 0
        assert c["reproduce_nano"] == src["cost_nano"] > 0 and type(c["reproduce_nano"]) is int
        assert c["request_hash"] == src["request_hash"] and c["request"] == src["request"]
        assert c["response"] == src["response"] and isinstance(c["response"], dict)
    assert all(c["cached"] is False for c in paid.values())
    items_a = {r["item_id"]: r for r in store.item_results(first.run_id)}
    for r in store.item_results(second.run_id):
        want = items_a[r["item_id"]]
        assert (r["status"], r["correct"], r["answer_text"]) == (
            want["status"],
            want["correct"],
            want["answer_text"],
        )
        assert r["cost_nano"] == 0

    spent_a = sum(c["cost_nano"] for c in paid.values())
    assert _totals(store, second.run_id) == {
        "budget": usd_to_nano(Decimal("5")),
        "committed": 0,
        "spent": 0,
        "settled": 0,
        "open": 0,
    }
    # run_report: cached rows and what they saved.
    (ra,), (rb,) = store.run_report(first.run_id), store.run_report(second.run_id)
    assert _all_ints([ra, rb], "cached", "saved_nano", "spent_nano", "calls", "correct")
    assert (ra["cached"], ra["saved_nano"], ra["spent_nano"]) == (0, 0, spent_a)
    assert (rb["cached"], rb["saved_nano"], rb["spent_nano"], rb["calls"]) == (8, spent_a, 0, 8)
    assert (rb["scored"], rb["correct"], rb["unusable"]) == (ra["scored"], ra["correct"], ra["unusable"])
    a, b = run_report_dict(store, first.run_id), run_report_dict(store, second.run_id)
    assert Decimal(b["spent_usd"]) == 0 and b["results"][0]["cached"] == 8
    assert b["results"][0]["saved_usd"] == a["spent_usd"] == a["results"][0]["spent_usd"]
    # costs: per run, and per model and UTC day (func.date on timestamptz).
    by_run = {r["run"]: r for r in store.cost_summary(by=["run"])}
    assert _all_ints(list(by_run.values()), "cached", "saved_nano", "spent_nano", "calls")
    assert (by_run[second.run_id]["cached"], by_run[second.run_id]["saved_nano"]) == (8, spent_a)
    assert (by_run[first.run_id]["cached"], by_run[first.run_id]["saved_nano"]) == (0, 0)
    assert by_run[second.run_id]["spent_nano"] == 0 and by_run[first.run_id]["spent_nano"] == spent_a
    by_day = store.cost_summary(by=["model", "day"])
    days = sorted({c["started_at"].date().isoformat() for c in [*paid.values(), *cached]})  # UTC days
    assert [r["day"] for r in by_day] == days and {(r["model"], r["simulated"]) for r in by_day} == {
        (MODEL, True)
    }
    assert [sum(r[k] for r in by_day) for k in ("calls", "cached", "saved_nano", "spent_nano")] == [
        16,
        8,
        spent_a,
        spent_a,
    ]
    since = min(c["started_at"] for c in cached).date()
    only_second = store.cost_summary(by=["suite"], run_id=second.run_id, since=since)
    assert [(r["cached"], r["saved_nano"]) for r in only_second] == [(8, spent_a)]
    rows = {r["run"]: r for r in cost_rows(store, by=["run"])}
    assert rows[second.run_id]["cached"] == 8 and rows[second.run_id]["saved_usd"] == a["spent_usd"]
    # The cache lookup itself: one answer per key, always the call that paid, never a cached row.
    hashes = {c["request_hash"] for c in cached}
    found = find_cached(store, hashes)
    assert set(found) == hashes and {f.call_id for f in found.values()} == set(paid)


# -- 2. resume -----------------------------------------------------------------------------------------


async def test_a_budget_stop_resumes_with_more_budget_and_buys_nothing_twice(
    store: Store, sim: SimServer
) -> None:
    first = await _run(store, sim, n=16, repeats=2, budget="0.03")
    assert first.status == "budget_exhausted"
    results = store.item_results(first.run_id)
    statuses = Counter(r["status"] for r in results)
    assert statuses["not_run"] > 0 and statuses["scored"] + statuses["unusable"] > 0
    calls = store.calls(first.run_id)
    cost: Counter[tuple[str, int]] = Counter()
    attempts: Counter[tuple[str, int]] = Counter()
    for c in calls:
        cost[(c["item_id"], c["repeat"])] += c["cost_nano"] or 0
        attempts[(c["item_id"], c["repeat"])] += 1

    prior = prior_units(store, first.run_id)
    for r in results:
        p = prior[(MODEL, "tiny", r["item_id"], r["repeat"])]
        unit = (r["item_id"], r["repeat"])
        assert (p.status, p.correct) == (r["status"], r["correct"])
        assert (p.cost_nano, p.attempts) == (cost[unit], attempts[unit])
        assert type(p.cost_nano) is int and type(p.attempts) is int
        assert p.done == (r["status"] in ("scored", "unusable")) and (p.answer is None or not p.done)
    answered = {
        (r["item_id"], r["repeat"]): r["answer_text"]
        for r in results
        if r["status"] in ("scored", "unusable")
    }
    plan = plan_resume(store, first.run_id, suites=[TinySuite(16, repeats=2)])
    assert plan.done_units == len(answered) and plan.units_to_send == 32 - len(answered)

    outcome = await resume_run(store, plan, simulator=sim, add_budget_nano=usd_to_nano(Decimal("2")))
    assert (outcome.run_id, outcome.status, outcome.exit_code) == (first.run_id, "done", 0)
    items = store.item_results(first.run_id)
    assert len(items) == 32 and all(i["status"] in ("scored", "unusable") for i in items)
    for i in items:  # earlier answers were kept, not bought again
        if (i["item_id"], i["repeat"]) in answered:
            assert i["answer_text"] == answered[(i["item_id"], i["repeat"])]
    assert set(_billed_per_unit(sim, store).values()) == {1}  # every unit paid exactly once
    run_row = store.get_run(first.run_id)
    assert run_row is not None and run_row["status"] == "done" and run_row["finished_at"] is not None
    totals = _totals(store, first.run_id)
    assert totals["budget"] == usd_to_nano(Decimal("2.03"))
    assert totals["spent"] == totals["settled"] == totals["committed"] == _invoice_nano(sim)
    assert all(p.done for p in prior_units(store, first.run_id).values())


async def test_resume_rescores_answers_paid_but_not_recorded_and_resends_crashed_calls(
    store: Store, sim: SimServer
) -> None:
    first = await _run(store, sim, n=8, repeats=2)
    assert first.status == "done"
    requests = len(sim.invoice()["requests"])
    calls = {c["id"]: c for c in store.calls(first.run_id)}
    # A crash after the settle and before the item result: the call is paid, the result is gone.
    lost = [r for r in store.item_results(first.run_id) if r["repeat"] == 1][:3]
    for r in lost:
        _exec(store, "DELETE FROM item_results WHERE repeat = 1 AND item_id = :i", i=r["item_id"])
    # A crash after the reservation and before the settle: the call row stays `reserved`.
    victim = next(c for c in calls.values() if c["repeat"] == 0 and c["item_id"] == "q5")
    _exec(
        store,
        "UPDATE calls SET status = 'reserved', cost_nano = NULL, response = NULL WHERE id = :id",
        id=victim["id"],
    )
    _exec(
        store,
        "UPDATE runs SET status = 'running', spent_nano = spent_nano - :cost, "
        "committed_nano = committed_nano - :cost + :reserved",
        cost=victim["cost_nano"],
        reserved=victim["reserved_nano"],
    )
    _exec(store, "DELETE FROM item_results WHERE item_id = 'q5' AND repeat = 0")

    prior = prior_units(store, first.run_id)
    assert len(prior) == 16
    for r in lost:
        p = prior[(MODEL, "tiny", r["item_id"], 1)]
        assert p.status is None and not p.done and p.answer is not None
        assert p.answer.call_id == r["final_call_id"] and p.answer.run_id == first.run_id
        assert p.answer.text == calls[r["final_call_id"]]["response"]["text"]
        assert p.cost_nano == r["cost_nano"] == calls[r["final_call_id"]]["cost_nano"] > 0
        assert p.attempts == r["attempts"]
    crashed = prior[(MODEL, "tiny", "q5", 0)]
    assert (crashed.status, crashed.answer, crashed.cost_nano, crashed.attempts) == (None, None, 0, 1)
    plan = plan_resume(store, first.run_id, suites=[TinySuite(8, repeats=2)], use_cache=False)
    assert (plan.done_units, plan.recoverable_units, plan.units_to_send) == (12, 3, 1)

    outcome = await resume_run(store, plan, simulator=sim)
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    assert len(sim.invoice()["requests"]) == requests + 1  # only the crashed unit was sent again
    again = {r["item_id"]: r for r in store.item_results(first.run_id) if r["repeat"] == 1}
    for r in lost:  # re-scored from the stored answer, same call, same cost
        got = again[r["item_id"]]
        keys = ("status", "correct", "answer_text", "final_call_id", "cost_nano", "attempts")
        assert {k: got[k] for k in keys} == {k: r[k] for k in keys}
    resent = [c for c in store.calls(first.run_id) if (c["item_id"], c["repeat"]) == ("q5", 0)]
    assert sorted(c["status"] for c in resent) == ["ok", "reserved"]
    assert max(c["attempt"] for c in resent) == 2  # numbered after the earlier attempt
    (item,) = [r for r in store.item_results(first.run_id) if (r["item_id"], r["repeat"]) == ("q5", 0)]
    assert item["attempts"] == 2 and item["status"] in ("scored", "unusable")
    assert len(store.calls(first.run_id)) == requests + 1  # no cached rows for its own answers
    totals = _totals(store, first.run_id)
    assert totals["open"] == victim["reserved_nano"]  # the open reservation stays counted
    assert totals["spent"] == totals["settled"] and totals["committed"] == totals["spent"] + totals["open"]
    (report,) = store.run_report(first.run_id)
    assert report["unsettled_nano"] == victim["reserved_nano"] and report["items"] == 16


# -- 3. reconcile --------------------------------------------------------------------------------------


def _fake_open_call(store: Store, like: dict[str, Any], *, sent_to: str, age_s: float) -> str:
    """A reservation committed before a crash whose request may never have left the process."""
    call_id = uuid.uuid4().hex
    keys = ("run_id", "model", "provider", "api", "provider_model", "suite", "item_id", "repeat")
    row = {k: like[k] for k in keys}
    row.update(
        id=call_id,
        attempt=9,
        role="target",
        status="reserved",
        reserved_nano=like["reserved_nano"],
        price_id=like["price_id"],
        started_at=datetime.now(UTC) - timedelta(seconds=age_s),
        cached=False,
        sent_to=sent_to,
    )
    with store.engine.begin() as conn:
        conn.execute(sa.insert(calls_table).values(**row))
        conn.execute(
            sa.text("UPDATE runs SET committed_nano = committed_nano + :n WHERE id = :r"),
            {"n": like["reserved_nano"], "r": like["run_id"]},
        )
    return call_id


async def test_reconcile_settles_open_reservations_from_the_invoice(store: Store, sim: SimServer) -> None:
    first = await _run(store, sim)
    run_id = first.run_id
    calls = sorted(store.calls(run_id), key=lambda c: c["item_id"])
    instance = sim.invoice()["instance"]
    assert all(c["sent_to"] == f"sim:{instance}" for c in calls)
    billed = {c["id"]: c["cost_nano"] for c in calls}
    for c in calls[:2]:  # kill -9 between sending and settling
        _exec(
            store,
            "UPDATE calls SET status = 'reserved', cost_nano = NULL, request_id = NULL, "
            "output_tokens = NULL WHERE id = :id",
            id=c["id"],
        )
        _exec(
            store,
            "UPDATE runs SET spent_nano = spent_nano - :cost, committed_nano = committed_nano - :cost + :res",
            cost=c["cost_nano"],
            res=c["reserved_nano"],
        )
    never = _fake_open_call(store, calls[0], sent_to=f"sim:{instance}", age_s=120)
    other_sim = _fake_open_call(store, calls[0], sent_to="sim:0123456789abcdef", age_s=120)
    too_recent = _fake_open_call(store, calls[0], sent_to=f"sim:{instance}", age_s=1)
    arriving = _fake_open_call(store, calls[0], sent_to=f"sim:{instance}", age_s=120)
    sim.state.invoice.begin(arriving)  # arrived at the simulator, not billed yet
    before = _totals(store, run_id)
    assert before["committed"] == before["spent"] + before["open"] and before["open"] > 0

    result = reconcile_run(store, run_id, sim.invoice(), grace_s=30)
    assert (result.matched, result.absent, result.left_open) == (2, 1, 3)
    assert result.billed_nano == billed[calls[0]["id"]] + billed[calls[1]["id"]]
    again = reconcile_run(store, run_id, sim.invoice(), grace_s=30)  # idempotent
    assert (again.matched, again.absent, again.left_open, again.released_nano) == (0, 0, 3, 0)

    rows = {c["id"]: c for c in store.calls(run_id)}
    invoice = {r["client_request_id"]: r for r in sim.invoice()["requests"].values()}
    for c in calls[:2]:
        row = rows[c["id"]]
        assert row["status"] == "reconciled" and row["cost_nano"] == billed[c["id"]]
        assert row["cost_nano"] == usd_to_nano(Decimal(invoice[c["id"]]["usd"]))
        assert row["request_id"] == invoice[c["id"]]["request_id"]
        assert row["output_tokens"] == invoice[c["id"]]["tokens"]["output"]
        assert row["finished_at"] is not None and row["finished_at"].utcoffset() == timedelta(0)
    assert rows[never]["status"] == "reconciled" and rows[never]["cost_nano"] == 0
    for left in (other_sim, too_recent, arriving):
        assert rows[left]["status"] == "reserved" and rows[left]["cost_nano"] is None
    after = _totals(store, run_id)
    open_nano = 3 * calls[0]["reserved_nano"]
    assert after["open"] == open_nano
    assert after["spent"] == after["settled"] == _invoice_nano(sim)  # the meter equals the bill
    assert after["committed"] == after["spent"] + open_nano
    assert result.released_nano == before["committed"] - after["committed"] > 0
    (report,) = store.run_report(run_id)
    assert report["unsettled_nano"] == open_nano and report["spent_nano"] == after["spent"]
    assert usd_to_nano(Decimal(run_report_dict(store, run_id)["unsettled_usd"])) == open_nano
    (summary,) = store.cost_summary(by=["run"])
    assert (summary["spent_nano"], summary["unsettled_nano"]) == (after["spent"], open_nano)


# -- 4. export / import across databases ---------------------------------------------------------------


def _roundtrip(src: Store, run_id: str, dst: Store, bundle: Path) -> str:
    """Export ``run_id`` from ``src``, import it into ``dst``, check that both report the same."""
    exported = export_to_file(src, run_id, bundle)
    loaded = import_bundle(dst, bundle)
    assert (loaded.source_run_id, loaded.calls, loaded.items) == (run_id, exported.calls, exported.items)
    original, imported = run_report_dict(src, run_id), run_report_dict(dst, loaded.run_id)
    assert _comparable(imported) == _comparable(original)
    assert imported["config"]["imported"]["from_run"] == run_id
    assert dst.run_report(loaded.run_id) == src.run_report(run_id)
    assert dst.cost_summary(by=["model", "suite", "day"], run_id=loaded.run_id) == src.cost_summary(
        by=["model", "suite", "day"], run_id=run_id
    )
    keys = ("model", "suite", "item_id", "repeat", "status", "correct", "extracted", "answer_text")
    want = [{k: r[k] for k in (*keys, "cost_nano", "attempts")} for r in src.item_results(run_id)]
    got = [{k: r[k] for k in (*keys, "cost_nano", "attempts")} for r in dst.item_results(loaded.run_id)]
    assert got == want
    new_calls = dst.calls(loaded.run_id)
    assert all(c["request_hash"] is None for c in new_calls)  # imported answers never serve the cache
    assert all(isinstance(c["request"], dict) for c in new_calls if c["status"] in ("ok", "cached"))
    old_hashes = {c["request_hash"] for c in src.calls(run_id)} - {None}
    assert not find_cached(dst, old_hashes)
    return loaded.run_id


async def test_export_from_postgres_imports_into_sqlite(store: Store, sim: SimServer, tmp_path: Path) -> None:
    paid = await _run(store, sim, n=6, repeats=2)
    cached = await _run(store, sim, n=6, repeats=2)  # answered from the cache: cached rows travel too
    assert run_report_dict(store, cached.run_id)["results"][0]["cached"] == 12
    assert all(c["request_hash"] for c in store.calls(paid.run_id))
    lite = Store.open(str(tmp_path / "elsewhere.db"))
    try:
        for rid in (paid.run_id, cached.run_id):
            _roundtrip(store, rid, lite, tmp_path / f"{rid}.jsonl")
        assert len(lite.list_runs()) == 2
    finally:
        lite.close()


async def test_export_from_sqlite_imports_into_postgres(store: Store, sim: SimServer, tmp_path: Path) -> None:
    lite = Store.open(str(tmp_path / "runs.db"))
    try:
        outcome = await _run(lite, sim, n=6, budget="0.02")  # stopped by the budget: not_run items
        assert outcome.status == "budget_exhausted"
        assert all(c["request_hash"] for c in lite.calls(outcome.run_id))
        victim = lite.calls(outcome.run_id)[0]  # and an open reservation left by a crash
        with lite.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE calls SET status = 'reserved', cost_nano = NULL WHERE id = :id"),
                {"id": victim["id"]},
            )
            conn.execute(
                sa.text(
                    "UPDATE runs SET spent_nano = spent_nano - :c, committed_nano = committed_nano - :c + :r"
                ),
                {"c": victim["cost_nano"], "r": victim["reserved_nano"]},
            )
        new_id = _roundtrip(lite, outcome.run_id, store, tmp_path / "lite.jsonl")
    finally:
        lite.close()
    report = run_report_dict(store, new_id)
    assert report["status"] == "budget_exhausted" and report["simulated"] is True
    assert usd_to_nano(Decimal(report["unsettled_usd"])) == victim["reserved_nano"]
    totals = _totals(store, new_id)
    assert totals["committed"] == totals["spent"] + totals["open"] and totals["spent"] == totals["settled"]
    # And back out of PostgreSQL: a second generation bundle reports the same again.
    again = Store.open(str(tmp_path / "third.db"))
    try:
        _roundtrip(store, new_id, again, tmp_path / "pg.jsonl")
    finally:
        again.close()


async def test_export_reads_one_snapshot_while_reconcile_settles(
    store: Store, pg_url: str, sim: SimServer, tmp_path: Path
) -> None:
    """Another process settles a call between the export's first and second query: the bundle is still
    the state of one moment (PostgreSQL's default READ COMMITTED would mix two)."""
    first = await _run(store, sim, n=4)
    victim = store.calls(first.run_id)[0]
    _exec(store, "UPDATE calls SET status = 'reserved', cost_nano = NULL WHERE id = :id", id=victim["id"])
    _exec(
        store,
        "UPDATE runs SET spent_nano = spent_nano - :c, committed_nano = committed_nano - :c + :r",
        c=victim["cost_nano"],
        r=victim["reserved_nano"],
    )
    before = run_report_dict(store, first.run_id)
    other = Store.open(pg_url)  # the other process
    settled: list[int] = []

    def reconcile_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not settled and "FROM calls" in statement:  # after the run row was read
            settled.append(reconcile_run(other, first.run_id, sim.invoice()).matched)

    sa.event.listen(store.engine, "before_cursor_execute", reconcile_meanwhile)
    try:
        export_to_file(store, first.run_id, tmp_path / "b.jsonl")
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", reconcile_meanwhile)
        other.close()
    assert settled == [1]
    loaded = import_bundle(store, tmp_path / "b.jsonl")  # spend adds up: one moment, before the settle
    assert _comparable(run_report_dict(store, loaded.run_id)) == _comparable(before)
    after = _totals(store, first.run_id)
    assert after["open"] == 0 and after["spent"] == after["settled"] == after["committed"]


# -- 5. migration ---------------------------------------------------------------------------------------


async def test_a_schema_2_database_upgrades_to_the_current_schema(pg_url: str) -> None:
    old = Store.open(pg_url, migrate_until="m002_indexes")
    try:
        with old.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("calls")}
            version = conn.execute(
                sa.text("SELECT value FROM _tollbench_meta WHERE key = 'schema_version'")
            ).scalar()
        assert "request_hash" not in columns and "reproduce_nano" not in columns and version == "2"
        run_id = new_run(old, 10_000)
        async with Ledger(old, run_id) as ledger:  # an old tollbench's rows: no m003 columns
            a, b = start(run_id, 1000), start(run_id, 1000, item="i2")
            assert await ledger.reserve(a) and await ledger.reserve(b)
            await ledger.settle(end(a.call_id, 300))
    finally:
        old.close()

    new = Store.open(pg_url)
    try:
        with new.engine.connect() as conn:
            insp = sa.inspect(conn)
            cols = {c["name"]: c for c in insp.get_columns("calls")}
            run_cols = {c["name"]: c for c in insp.get_columns("runs")}
            indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("calls")}
            version = conn.execute(
                sa.text("SELECT value FROM _tollbench_meta WHERE key = 'schema_version'")
            ).scalar()
            applied = [r[0] for r in conn.execute(sa.text("SELECT name FROM _tollbench_migrations"))]
        assert version == str(migrations.SCHEMA_VERSION) == str(len(migrations.MIGRATIONS))
        assert sorted(applied) == [fn.__name__ for fn in migrations.MIGRATIONS]
        added = ("request_hash", "request", "response", "sent_to", "source_call_id", "reproduce_nano")
        for name in (*added, "service_tier"):
            assert cols[name]["nullable"], name
        assert isinstance(cols["reproduce_nano"]["type"], sa.BigInteger)
        assert isinstance(cols["request"]["type"], sa.JSON)
        assert isinstance(cols["response"]["type"], sa.JSON)
        for name in ("owner_token", "owner_pid", "owner_host"):  # m004: who owns a run
            assert run_cols[name]["nullable"], name
        for name in ("provider_cost_nano", "output_bound"):  # m005: provider-reported cost, output bound
            assert cols[name]["nullable"] and isinstance(cols[name]["type"], sa.BigInteger), name
        assert "ix_calls_unknown_or_reported" in indexes
        assert sa.inspect(new.engine).has_table("endpoint_facts")
        assert indexes["ix_calls_request_hash"] == ["request_hash"]
        assert indexes["ix_calls_cached"] == ["cached", "run_id"]
        assert "ix_calls_summary" in indexes and "ix_calls_run_status" in indexes
        # The old rows read through every new query.
        rows = new.calls(run_id)
        assert len(rows) == 2 and all(r["request_hash"] is None and r["response"] is None for r in rows)
        (report,) = new.run_report(run_id)
        assert (report["calls"], report["cached"], report["saved_nano"]) == (2, 0, 0)
        assert (report["spent_nano"], report["unsettled_nano"]) == (300, 1000)
        (summary,) = new.cost_summary(by=["run", "day"])
        assert (summary["cached"], summary["saved_nano"], summary["unsettled_nano"]) == (0, 0, 1000)
        prior = prior_units(new, run_id)
        assert {k[2]: (p.status, p.cost_nano, p.attempts, p.answer) for k, p in prior.items()} == {
            "i1": (None, 300, 1, None),  # settled, but no stored answer to re-score
            "i2": (None, 0, 1, None),  # still reserved
        }
    finally:
        new.close()
    Store.open(pg_url).close()  # reopening is a no-op


# -- 6. database faults and concurrent writers ---------------------------------------------------------


async def test_a_run_row_locked_by_another_process_ends_the_run_clearly_and_resume_finishes(
    pg_url: str, sim: SimServer
) -> None:
    store = Store.open(pg_url, busy_timeout_s=0.1)
    other = Store.open(pg_url)  # another process, holding the run row as a ledger batch does
    errors: list[BaseException] = []
    failed = anyio.Event()

    async def go() -> None:
        try:
            await run(prepare_run(_options(24, 1, "5", run_id="locked-run")), store, simulator=sim)
        except StorageError as exc:
            errors.append(exc)
        failed.set()

    try:
        with other.engine.connect() as locker:
            async with anyio.create_task_group() as tg:
                tg.start_soon(go)
                while len(_rows(other, "SELECT id FROM calls")) < 4:  # noqa: ASYNC110 (another process)
                    await anyio.sleep(0.01)
                with locker.begin():
                    # Held while this test waits (a slow batch of another process): the server's
                    # idle-in-transaction timeout, which frees a frozen worker's locks, must not end it.
                    locker.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = 0"))
                    locker.execute(sa.text("SELECT id FROM runs WHERE id = 'locked-run' FOR UPDATE"))
                    with anyio.fail_after(30):
                        await failed.wait()
    finally:
        store.close()
    assert errors, "the run was meant to fail on the lock"
    message = str(errors[0])
    assert "locked by another process" in message and "waited 0.1s" in message and "\n" not in message
    assert "check that the server is running" not in message
    try:
        totals = _totals(other, "locked-run")  # every reservation committed is still counted
        assert (
            totals["spent"] == totals["settled"] and totals["committed"] == totals["spent"] + totals["open"]
        )
        outcome = await _resume(other, sim, "locked-run", n=24, repeats=1)
        assert (outcome.status, outcome.exit_code) == ("done", 0)
        items = other.item_results("locked-run")
        assert len(items) == 24 and all(i["status"] in ("scored", "unusable") for i in items)
        totals = _totals(other, "locked-run")
        assert (
            totals["spent"] == totals["settled"] and totals["committed"] == totals["spent"] + totals["open"]
        )
        open_before = other.open_reservations("locked-run")
        assert open_before  # settles lost to the lock: still reserved, counted at their worst case
        assert totals["committed"] >= _invoice_nano(sim)
        result = reconcile_run(other, "locked-run", sim.invoice(), grace_s=0)
        assert (result.matched + result.absent, result.left_open) == (len(open_before), 0)
        totals = _totals(other, "locked-run")
        assert totals["open"] == 0 and totals["spent"] == totals["committed"] == _invoice_nano(sim)
    finally:
        other.close()


def test_postgres_lock_and_disk_errors_read_like_sqlite_ones() -> None:
    """What psycopg raises for a lock timeout and a full disk maps to the same one-line advice as SQLite's
    ``database is locked`` and ``database or disk is full`` (a run that ends on them can be resumed)."""
    import psycopg.errors

    label = "postgresql+psycopg://root@127.0.0.1:5432/test"
    locked = sa.exc.OperationalError(
        "UPDATE runs", {}, psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    )
    full = sa.exc.OperationalError(
        "INSERT INTO calls",
        {},
        psycopg.errors.DiskFull('could not extend file "base/16384/16397": No space left on device'),
    )
    assert str(storage_error(locked, label, "recording calls", 2)) == (
        f"{label}: the database is locked by another process (waited 2s while recording calls); "
        "retry when it is done, or use another --db"
    )
    assert str(storage_error(full, label, "recording calls")) == (
        f"{label}: database or disk is full while recording calls; free disk space and retry "
        "(committed rows are kept)"
    )


def test_two_processes_recording_the_same_new_price_at_once_both_succeed(pg_url: str, tmp_path: Path) -> None:
    """A run's start (``ensure_price``) and an import record price rows, which every run shares. Two
    processes recording the same new one at once on a shared server must both succeed: a look-up then
    an insert would let both see it missing (SQLite serialises writers with ``BEGIN IMMEDIATE``;
    PostgreSQL's write transactions lock nothing by themselves), and the second insert would fail."""
    lite = Store.open(str(tmp_path / "source.db"))
    try:
        run_id = new_run(lite, 10_000)
        one = start(run_id, 1000)
        anyio.run(_settled_call, lite, one)
        bundle = tmp_path / "b.jsonl"
        export_to_file(lite, run_id, bundle)
    finally:
        lite.close()
    stores = [Store.open(pg_url), Store.open(pg_url)]
    barrier = threading.Barrier(2, timeout=10)

    def both_looked(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO prices"):
            barrier.wait()  # both saw no such price before either inserts it

    for s in stores:
        sa.event.listen(s.engine, "before_cursor_execute", both_looked)
    try:
        for action in (
            lambda s: s.ensure_price("q" * 64, "openai", "o3-mini", {"input_mtok": "1.1"}, "t" * 64),
            lambda s: import_bundle(s, bundle),
        ):
            errors: list[BaseException] = []

            def go(s: Store, action: Any = action, errors: list[BaseException] = errors) -> None:
                try:
                    action(s)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=go, args=(s,)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert not errors, errors
            barrier.reset()
        assert len(_rows(stores[0], "SELECT id FROM prices")) == 2
        assert len(stores[0].list_runs()) == 2  # both imports
    finally:
        for s in stores:
            s.close()
