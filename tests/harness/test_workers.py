"""Several workers, one run, one budget (issue 14, docs/workers.md): units claimed in the database,
leases renewed by heartbeats, a dead worker's units taken by the others, budget pools across runs.

The process tests start real ``tollbench`` processes (``run --run-id``, ``worker``) against one
simulator and compare the meter with the simulator's invoice, request by request (the call id travels
as ``x-client-request-id``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from harness.audit.reconcile import reconcile_run
from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.run.claims import UnitClaims
from harness.sim import SimServer
from harness.store import workers as w
from harness.store.engine import Store
from tests.harness.test_chaos import _child, _quiet

DEMO_ITEMS = 40


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return str(request.getfixturevalue("pg_url"))


def _q(db: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    store = Store.open(db)
    try:
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        store.close()


def _count(db: str, sql: str) -> int:
    try:
        return int(next(iter(_q(db, sql)[0].values())))
    except Exception:  # the database or its tables do not exist yet
        return 0


def _run_args(db: str, sim: SimServer, run_id: str, *extra: str) -> list[str]:
    return [
        "run", "demo", "-m", "openai/gpt-4o-mini", "--budget", "5", "--repeats", "3", "-c", "4",
        "--max-output-tokens", "800", "--run-id", run_id, "--sim-url", sim.base_url, "--db", db,
        "--allow-partial", *extra,
    ]  # fmt: skip


def _wait_for(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _billed_by_unit(db: str, invoice: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    calls = {c["id"]: c for c in _q(db, "SELECT * FROM calls")}
    out: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in invoice["requests"].values():
        assert r["client_request_id"] in calls, "every request the simulator saw is a call row"
        if r["billed"]:
            c = calls[r["client_request_id"]]
            out[(c["item_id"], int(c["repeat"]))].append(c)
    return out


def _communicate_or_explain(
    db: str, procs: list[subprocess.Popen[bytes]], *, timeout: float
) -> list[tuple[bytes, bytes]]:
    """Each process's output; on a timeout, fail with what each printed and what the database's
    sessions are doing (a lock held by a frozen process shows there)."""
    deadline = time.monotonic() + timeout
    out: list[tuple[bytes, bytes]] = []
    for p in procs:
        try:
            out.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            sessions = _q(
                db,
                "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            tails = []
            for q in procs:
                q.kill()
                tails.append(q.communicate()[1].decode()[-1500:])
            pytest.fail(f"workers still running after {timeout:g}s; sessions {sessions}; stderr {tails}")
    return out


def _start_workers(
    db: str, sim: SimServer, run_id: str, *extra: str, first_extra: tuple[str, ...] = ()
) -> list[subprocess.Popen[bytes]]:
    """Two `run --run-id` processes started together, and one `worker RUN_ID` once the run exists."""
    procs = [_child(_run_args(db, sim, run_id, *extra, *(first_extra if k == 0 else ()))) for k in range(2)]
    _wait_for(lambda: _count(db, f"SELECT count(*) FROM runs WHERE id = '{run_id}'") == 1)
    args = ["worker", run_id, "--sim-url", sim.base_url, "--db", db, "-c", "4", *extra]
    procs.append(_child(args))
    return procs


@pytest.mark.timeout(240)
def test_three_workers_buy_every_unit_exactly_once_and_end_the_run_once(db: str) -> None:
    with SimServer(seed=41, speed=0.03) as sim:
        procs = _start_workers(db, sim, "three")
        results = [p.communicate(timeout=180) for p in procs]
        invoice = _quiet(sim)
    assert [p.returncode for p in procs] == [0, 0, 0], [e.decode()[-2000:] for _, e in results]
    units = DEMO_ITEMS * 3
    billed = _billed_by_unit(db, invoice)
    # Every unit bought exactly once: one billed request, its one ok call.
    assert len(billed) == units and all(len(v) == 1 for v in billed.values()), Counter(
        map(len, billed.values())
    )
    assert _count(db, "SELECT count(*) FROM calls") == units
    items = _q(db, "SELECT status FROM item_results WHERE run_id = 'three'")
    assert len(items) == units and {i["status"] for i in items} <= {"scored", "unusable"}
    # One final status, written once: every worker ended and was counted in it.
    run = _q(db, "SELECT * FROM runs")[0]
    assert run["status"] == "done" and run["owner_token"] is None and run["finished_at"] is not None
    workers = _q(db, "SELECT * FROM run_workers WHERE run_id = 'three'")
    assert len(workers) == 3 and all(x["ended_at"] is not None and x["closed"] for x in workers)
    claims = _q(db, "SELECT worker_id, state, claims FROM unit_claims WHERE run_id = 'three'")
    assert len(claims) == units and all(c["state"] == "done" and c["claims"] == 1 for c in claims)
    per_worker = Counter(c["worker_id"] for c in claims)
    assert len(per_worker) >= 2, per_worker  # the units were split
    # The meter equals the invoice.
    invoice_nano = usd_to_nano(Decimal(invoice["total"]["usd"]))
    spent = sum(int(c["cost_nano"]) for c in _q(db, "SELECT cost_nano FROM calls"))
    assert run["spent_nano"] == run["committed_nano"] == spent == invoice_nano
    print(f"\nthree workers: {dict(per_worker.most_common())} units each, invoice ${invoice['total']['usd']}")


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_kill_9_of_one_of_three_workers_the_others_finish_every_unit(pg_url: str) -> None:
    db = pg_url
    budget = usd_to_nano(Decimal(5))
    with SimServer(seed=43, speed=0.05) as sim:
        procs = _start_workers(db, sim, "killed")
        victim = procs[1]
        # Mid-run: the victim holds units and has calls in flight.
        _wait_for(lambda: _count(db, "SELECT count(*) FROM item_results") >= 20)
        _wait_for(
            lambda: (
                _count(
                    db,
                    "SELECT count(*) FROM unit_claims u JOIN run_workers w ON w.worker_id = u.worker_id "
                    f"WHERE u.state = 'claimed' AND w.pid = {victim.pid}",
                )
                > 0
            )
        )
        victim.kill()  # SIGKILL: nothing settled, nothing released
        victim.wait(timeout=30)
        survivors = [procs[0], procs[2]]
        results = [p.communicate(timeout=200) for p in survivors]
        invoice = _quiet(sim)
        assert [p.returncode for p in survivors] == [0, 0], [e.decode()[-2000:] for _, e in results]
        units = DEMO_ITEMS * 3
        calls = {c["id"]: c for c in _q(db, "SELECT * FROM calls")}
        open_calls = [c for c in calls.values() if c["status"] == "reserved"]
        # The others finished every unit, each answered by exactly one ok call.
        items = _q(db, "SELECT * FROM item_results")
        assert len(items) == units and {i["status"] for i in items} <= {"scored", "unusable"}
        billed = _billed_by_unit(db, invoice)
        assert len(billed) == units
        rebought = 0
        for i in items:
            paid = billed[(i["item_id"], int(i["repeat"]))]
            ok = [c for c in paid if c["status"] == "ok"]
            assert len(ok) == 1 and ok[0]["id"] == i["final_call_id"], paid
            rebought += int(len(paid) > 1)
            assert all(c["status"] in ("ok", "reserved") for c in paid)
        # Re-bought units are at most the dead worker's in-flight calls (its open reservations, at most
        # its concurrency), which stay counted at their worst case: the budget holds.
        assert rebought <= len(open_calls) <= 4
        run = _q(db, "SELECT * FROM runs")[0]
        assert run["status"] == "done"
        settled = sum(int(c["cost_nano"]) for c in calls.values() if c["status"] != "reserved")
        held = sum(int(c["reserved_nano"]) for c in open_calls)
        invoice_nano = usd_to_nano(Decimal(invoice["total"]["usd"]))
        assert run["spent_nano"] == settled and run["committed_nano"] == settled + held
        assert invoice_nano <= run["committed_nano"] <= budget
        gone = _q(db, f"SELECT * FROM run_workers WHERE pid = {victim.pid}")
        assert [g["status"] for g in gone] == ["lost"]
        # Reconciling the dead worker's calls makes the meter equal the invoice.
        store = Store.open(db)
        try:
            result = reconcile_run(store, "killed", invoice, grace_s=0)
        finally:
            store.close()
        assert result.left_open == 0
        run = _q(db, "SELECT * FROM runs")[0]
        assert run["spent_nano"] == run["committed_nano"] == invoice_nano
    print(f"\nkill -9 of a worker: {len(open_calls)} calls in flight at the kill, {rebought} units re-bought")


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_paused_worker_loses_its_leases_and_starts_none_of_its_units_after(pg_url: str) -> None:
    """SIGSTOP (a frozen process on another machine looks like this): its heartbeat stops, its leases
    expire after --lease seconds, the others take its units; woken up, it starts none of them.
    PostgreSQL ends a transaction the frozen process left open (its row locks), so the others go on;
    on SQLite a process frozen inside a write transaction holds the file's lock until it wakes."""
    db = pg_url
    with SimServer(seed=53, speed=0.05) as sim:
        # Only the victim has a short lease (a loaded machine can delay any heartbeat by seconds).
        procs = _start_workers(db, sim, "paused", first_extra=("--lease", "5"))
        victim = procs[0]
        _wait_for(lambda: _count(db, "SELECT count(*) FROM item_results") >= 10)
        held = (
            "SELECT count(*) FROM unit_claims u JOIN run_workers w ON w.worker_id = u.worker_id "
            f"WHERE u.state = 'claimed' AND w.pid = {victim.pid}"
        )
        _wait_for(lambda: _count(db, held) > 0)
        victim.send_signal(signal.SIGSTOP)
        try:
            # Frozen: the units it may have bought and not finished are those it still holds with a
            # call already started (reserved, or answered but not yet recorded as done: its ledger
            # writes a batch at a time). Read now, before its 5 s leases run out and others take them.
            started_held = {
                (r["item_id"], int(r["repeat"]))
                for r in _q(
                    db,
                    "SELECT DISTINCT u.item_id, u.repeat FROM unit_claims u "
                    "JOIN run_workers w ON w.worker_id = u.worker_id "
                    "JOIN calls c ON c.run_id = u.run_id AND c.model = u.model AND c.suite = u.suite "
                    "AND c.item_id = u.item_id AND c.repeat = u.repeat "
                    f"WHERE u.state = 'claimed' AND w.pid = {victim.pid}",
                )
            }
            survivors = [procs[1], procs[2]]
            results = _communicate_or_explain(db, survivors, timeout=200)
            in_flight = _count(db, "SELECT count(*) FROM calls WHERE status = 'reserved'")
        finally:
            victim.send_signal(signal.SIGCONT)
        _, victim_err = victim.communicate(timeout=120)
        invoice = _quiet(sim)
    assert [p.returncode for p in survivors] == [0, 0], [e.decode()[-2000:] for _, e in results]
    # Woken up, the victim stops: with 0, or with 1 when the server had ended the transaction it
    # froze in (idle_in_transaction_session_timeout) and that batch's reservations failed.
    assert victim.returncode in (0, 1), victim_err.decode()[-2000:]
    units = DEMO_ITEMS * 3
    items = _q(db, "SELECT * FROM item_results")
    assert len(items) == units and {i["status"] for i in items} <= {"scored", "unusable"}
    billed = _billed_by_unit(db, invoice)
    assert len(billed) == units
    # Only the units the victim had started and not finished when it froze can be bought twice:
    # its calls in flight (at most its -c 4) and answers it had received but not yet written.
    twice = [k for k, v in billed.items() if len(v) > 1]
    detail = {
        k: [(c["status"], c["error_type"], c["attempt"], str(c["started_at"])[11:23]) for c in billed[k]]
        for k in twice
    }
    assert set(twice) <= started_held, (sorted(started_held), in_flight, detail)
    assert all(len(v) == 2 for k, v in billed.items() if k in twice), detail
    victim_row = _q(db, f"SELECT * FROM run_workers WHERE pid = {victim.pid}")[0]
    assert victim_row["status"] == "lost"
    run = _q(db, "SELECT * FROM runs")[0]
    assert run["status"] == "done"
    # Its in-flight calls settled when it woke up: the meter equals the invoice.
    assert _count(db, "SELECT count(*) FROM calls WHERE status = 'reserved'") == 0
    assert run["spent_nano"] == run["committed_nano"] == usd_to_nano(Decimal(invoice["total"]["usd"]))
    print(f"\npaused worker: {len(twice)} units bought twice (in flight when it froze)")


def _pool_args(db: str, sim: SimServer, run_id: str) -> list[str]:
    return [
        "run", "demo", "-m", "openai/o4-mini", "--budget", "0.08", "--pool", "team", "--repeats", "2",
        "-c", "4", "--max-output-tokens", "3000", "--run-id", run_id, "--sim-url", sim.base_url,
        "--db", db, "--allow-partial",
    ]  # fmt: skip


@pytest.mark.timeout(300)
def test_four_runs_on_one_pool_never_bill_more_than_the_pool(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pool_budget = Decimal("0.12")  # four runs of $0.08 each: $0.32 > $0.12
    assert main(["pool", "create", "team", "--budget", str(pool_budget), "--db", db]) == 0
    assert main(["pool", "create", "team", "--budget", "1", "--db", db]) == 2  # exists: refused
    capsys.readouterr()
    with SimServer(seed=47, speed=0.02) as sim:
        procs = [_child(_pool_args(db, sim, f"pool-run-{k}")) for k in range(4)]
        results = [p.communicate(timeout=240) for p in procs]
        invoice = _quiet(sim)
        codes = [p.returncode for p in procs]
        assert set(codes) <= {0, 3}, [e.decode()[-2000:] for _, e in results]
        assert 3 in codes, "the pool was meant to run out"
        assert any("(pool team exhausted:" in e.decode() for _, e in results), [e[-500:] for _, e in results]
        invoice_nano = usd_to_nano(Decimal(invoice["total"]["usd"]))
        limit = usd_to_nano(pool_budget)
        pool = _q(db, "SELECT * FROM pools")[0]
        runs = _q(db, "SELECT * FROM runs")
        calls = _q(db, "SELECT cost_nano, reserved_nano, status FROM calls")
        # The pool's invoice total never exceeds the pool's budget; its books are its runs' books.
        assert invoice_nano <= limit and pool["committed_nano"] <= limit
        assert (
            pool["spent_nano"]
            == sum(r["spent_nano"] for r in runs)
            == sum(c["cost_nano"] or 0 for c in calls)
        )
        assert pool["committed_nano"] == sum(r["committed_nano"] for r in runs)
        assert pool["spent_nano"] == invoice_nano  # nothing left open: the meter equals the bill
        assert all(r["committed_nano"] <= r["budget_nano"] for r in runs)
        # `pool show`: spent, committed and the four runs.
        capsys.readouterr()
        assert main(["pool", "show", "team", "--db", db, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["budget_usd"] == "0.12" and len(shown["runs"]) == 4
        assert usd_to_nano(Decimal(shown["spent_usd"])) == pool["spent_nano"]
        # Joining a run with another pool is refused, naming the difference; an unknown pool too.
        other = ["other" if a == "team" else a for a in _pool_args(db, sim, "pool-run-0")]
        assert main(["pool", "create", "other", "--budget", "1", "--db", db]) == 0
        code = main(other)
        err = capsys.readouterr().err
        assert code == 2 and "pool team -> other" in err, err
        code = main(["run", "demo", "-m", "openai/o4-mini", "--budget", "1", "--pool", "nope",
                     "--sim-url", sim.base_url, "--db", db, "--limit", "2"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "no pool 'nope'" in err and len(err.strip().splitlines()) == 1
    assert _count(db, "SELECT count(*) FROM runs") == 4  # the refused runs created nothing


def test_a_lease_expires_and_another_worker_takes_the_unit(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims at the store level: SKIP LOCKED / BEGIN IMMEDIATE, leases, renewal, release.

    The store's clock is the test's: a loaded machine (CI once took over 0.5 s between two claims)
    must not expire a lease the test means to be live, nor the test sleep to expire one."""
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(w, "_now", lambda: clock[0])
    store = Store.open(db)
    try:
        run_id = store.create_run(
            suites=["tiny"], models=["m"], budget_nano=10, simulated=True, config={}, price_table_sha256="x"
        )
        keys = [("m", "tiny", f"q{i}", 0) for i in range(5)]
        w.seed_units(store, run_id, [(k, k[2] == "q4") for k in keys])
        # A second worker: existing rows are kept, but the item results win: q4 has none, so it is free.
        w.seed_units(store, run_id, [(k, False) for k in keys])
        for name in ("a", "b"):
            w.register_worker(store, run_id, name, host="h", pid=1, lease_s=0.5)
        got_a = w.claim_units(store, run_id, "a", "m", 2, lease_s=0.5)
        assert [k for k, _ in got_a] == keys[:2] and not any(t for _, t in got_a)  # plan order
        got_b = w.claim_units(store, run_id, "b", "m", 10, lease_s=0.5)
        assert [k for k, _ in got_b] == keys[2:] and w.claim_units(store, run_id, "b", "m", 10, 0.5) == []
        assert w.units_left(store, run_id, "m", "b") == (0, 2)
        # b renews its leases; a does not: after the lease, a's units are b's, marked as taken.
        clock[0] += timedelta(seconds=0.6)
        alive, held = w.renew(store, run_id, "b", 0.5)
        assert alive and held == set(keys[2:])
        taken = w.claim_units(store, run_id, "b", "m", 10, lease_s=0.5)
        assert [k for k, _ in taken] == keys[:2] and all(t for _, t in taken)
        assert w.renew(store, run_id, "a", 0.5) == (True, set())  # a lost them
        # A worker ended by another one learns it on its next heartbeat; its units are free at once.
        w.mark_gone(store, run_id, ["b"])
        assert w.renew(store, run_id, "b", 0.5)[0] is False
        assert w.units_left(store, run_id, "m", "a") == (5, 0)
        assert len(w.claim_units(store, run_id, "a", "m", 10, 0.5)) == 5
        assert w.release_units(store, run_id, "a") == 5
        info = w.worker_progress(store, run_id)
        assert info["total"] == 5 and info["units"] == {"free": 5}
    finally:
        store.close()


def test_a_worker_paused_past_its_lease_learns_before_it_sends(db: str) -> None:
    """What the runner asks just before sending a reserved attempt (Runner.lease_holds): a worker
    that slept past its lease, whose unit another worker took meanwhile, is told it is not its own."""
    store = Store.open(db)
    try:
        run_id = store.create_run(
            suites=["tiny"], models=["m"], budget_nano=10, simulated=True, config={}, price_table_sha256="x"
        )
        key = ("m", "tiny", "q0", 0)

        async def go() -> tuple[bool, bool]:
            a = UnitClaims(store, run_id, lease_s=0.4)
            await a.join([(key, False)])
            assert [k for k, _ in await a.claim("m", 1)] == [key]
            before = await a.still_mine(key)
            await anyio.sleep(0.5)  # paused: no heartbeat, the lease runs out
            w.register_worker(store, run_id, "b", host="h", pid=1, lease_s=5)
            assert [k for k, _ in w.claim_units(store, run_id, "b", "m", 1, lease_s=5)] == [key]
            return before, await a.still_mine(key)

        assert anyio.run(go) == (True, False)
    finally:
        store.close()


def test_the_last_worker_to_leave_ends_the_run_once(db: str) -> None:
    store = Store.open(db)
    try:
        run_id = store.create_run(
            suites=["tiny"], models=["m"], budget_nano=10, simulated=True, config={}, price_table_sha256="x"
        )
        w.seed_units(store, run_id, [(("m", "tiny", "q0", 0), False)])
        for name in ("a", "b"):
            w.register_worker(store, run_id, name, host="h", pid=1, lease_s=60)

        def live(row: dict[str, Any]) -> bool:
            return row["heartbeat_at"] > datetime.now(UTC) - timedelta(seconds=60)

        row = {("m", "tiny", "q0", 0): {
            "run_id": run_id, "model": "m", "suite": "tiny", "item_id": "q0", "repeat": 0,
            "status": "not_run", "correct": None, "extracted": None, "answer_text": "", "target": None,
            "reason": "budget_exhausted", "meta": {}, "cost_nano": 0, "attempts": 0, "final_call_id": None,
            "created_at": datetime.now(UTC),
        }}  # fmt: skip
        first = w.leave(
            store, run_id, "a", "budget_exhausted", owner_token=None, is_live=live, not_run_rows=row
        )
        assert not first.final and first.waiting
        assert store.get_run(run_id)["status"] == "running"  # type: ignore[index]
        last = w.leave(store, run_id, "b", "done", owner_token=None, is_live=live, not_run_rows=row)
        assert last.final and last.status == "budget_exhausted"  # a unit was left, a worker hit the budget
        run = store.get_run(run_id)
        assert run is not None and run["status"] == "budget_exhausted"
        assert [r["reason"] for r in store.item_results(run_id)] == ["budget_exhausted"]
        again = w.leave(store, run_id, "b", "done", owner_token=None, is_live=live, not_run_rows=row)
        assert not again.final and not again.waiting  # ended once
    finally:
        store.close()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=3, speed=0.0) as server:
        yield server


def test_show_lists_the_workers_and_worker_joins_by_id(
    db: str, sim: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "demo", "-m", "openai/gpt-4o-mini", "--budget", "1", "--limit", "4",
            "--sim-url", sim.base_url, "--db", db, "--run-id", "shown", "--lease", "30"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    # A finished run is not joined by `worker` (resume continues it); an unknown run neither.
    assert main(["worker", "shown", "--db", db, "--sim-url", sim.base_url]) == 2
    assert "has ended (done)" in capsys.readouterr().err
    assert main(["worker", "nope", "--db", db]) == 2
    capsys.readouterr()
    assert main(["show", "shown", "--db", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    info = shown["workers"]
    assert info["units_total"] == info["units_done"] == 4
    assert len(info["workers"]) == 1 and info["workers"][0]["units_done"] == 4
    assert info["workers"][0]["status"] == "done" and info["workers"][0]["lease_s"] == 30
    assert main(["show", "shown", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 done" in out and "workers" in out
