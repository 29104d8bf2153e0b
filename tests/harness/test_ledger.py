"""The budget ledger on real SQLite files: the hard cap, durability, group commit, faults, processes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from ledger_fixtures import (
    SHARED_BUDGET,
    assert_consistent,
    check_text_with_nul_and_service_tier,
    end,
    item,
    new_run,
    raw_state,
    run_processes,
    start,
)

from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.store.engine import Store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(str(db))
    yield s
    s.close()


@pytest.mark.anyio
async def test_reserve_admits_exactly_what_fits(store: Store, db: Path) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id) as ledger:
        a = start(run_id, 600)
        assert await ledger.reserve(a)
        # Durable before reserve() returned: another connection sees the row and the ledger.
        state = raw_state(db, run_id)
        assert state["rows"] == 1 and state["committed"] == 600
        assert not await ledger.reserve(start(run_id, 401))
        assert await ledger.reserve(start(run_id, 400))
        assert not await ledger.reserve(start(run_id, 1))
        assert await ledger.reserve(start(run_id, 0))
        assert ledger.committed_nano == 1000 and ledger.budget_nano == 1000 and ledger.spent_nano == 0
    state = raw_state(db, run_id)
    assert state["rows"] == 3 and state["committed"] == 1000 and state["open"] == 1000


@pytest.mark.anyio
async def test_settle_moves_reservation_to_spend(store: Store, db: Path) -> None:
    run_id = new_run(store, 10_000)
    async with Ledger(store, run_id) as ledger:
        ok, failed, dropped = start(run_id, 1000), start(run_id, 2000), start(run_id, 3000)
        for s in (ok, failed, dropped):
            assert await ledger.reserve(s)
        await ledger.settle(end(ok.call_id, 250))
        await ledger.settle(end(failed.call_id, 0, status="error", error_message="503 overloaded"))
        await ledger.settle(end(dropped.call_id, 3000, status="interrupted"))
        # Not yet flushed: the database may still count whole reservations, never less.
        assert raw_state(db, run_id)["committed"] >= 3250
        await ledger.flush()
        assert (ledger.spent_nano, ledger.committed_nano) == (3250, 3250)
    state = raw_state(db, run_id)
    assert (state["spent"], state["committed"], state["open"]) == (3250, 3250, 0)
    rows = {r["id"]: r for r in store.calls(run_id)}
    assert rows[ok.call_id]["status"] == "ok" and rows[ok.call_id]["cost_nano"] == 250
    assert rows[ok.call_id]["input_uncached"] == 100 and rows[ok.call_id]["reasoning_tokens"] == 30
    assert rows[ok.call_id]["raw_usage"] == {"prompt_tokens": 123} and rows[ok.call_id]["usage_known"] is True
    assert (
        rows[failed.call_id]["error_message"] == "503 overloaded"
        and rows[failed.call_id]["http_status"] == 503
    )
    assert rows[dropped.call_id]["usage_known"] is False and rows[dropped.call_id]["output_tokens"] is None


@pytest.mark.anyio
async def test_cost_above_reservation_is_recorded_not_clamped(
    store: Store, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id) as ledger:
        s = start(run_id, 100)
        assert await ledger.reserve(s)
        with caplog.at_level(logging.WARNING, logger="tollbench.ledger"):
            await ledger.settle(end(s.call_id, 150))
            await ledger.flush()
    assert raw_state(db, run_id)["spent"] == 150
    assert any("cost 150 > its reservation 100" in p for p in ledger.problems)
    assert "cost 150 > its reservation 100" in caplog.text


@pytest.mark.anyio
async def test_double_and_unknown_settles_are_ignored(store: Store, db: Path) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id) as ledger:
        s = start(run_id, 500)
        assert await ledger.reserve(s)
        await ledger.settle(end(s.call_id, 100))
        await ledger.settle(end(s.call_id, 100))
        await ledger.settle(end("f" * 32, 100))
    state = raw_state(db, run_id)
    assert (state["spent"], state["committed"]) == (100, 100)
    assert ledger.problems == [
        f"settle ignored for {s.call_id}: already settled",
        f"settle ignored for {'f' * 32}: unknown call",
    ]


@pytest.mark.anyio
async def test_group_commit_batches_concurrent_reserves(store: Store, db: Path) -> None:
    run_id = new_run(store, 150 * 10)
    results: list[bool] = []
    async with Ledger(store, run_id) as ledger:

        async def one() -> None:
            results.append(await ledger.reserve(start(run_id, 10)))

        async with anyio.create_task_group() as tg:
            for _ in range(400):
                tg.start_soon(one)
        assert ledger.batches <= 20
    assert results.count(True) == 150
    state = raw_state(db, run_id)
    assert state["rows"] == 150 and state["committed"] == 1500


@pytest.mark.anyio
async def test_record_item_upserts(store: Store) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id) as ledger:
        await ledger.record_item(item(run_id, "q1", status="error", correct=None))
        await ledger.flush()
        first = store.item_results(run_id)[0]
        await ledger.record_item(item(run_id, "q1", cost=77))
        await ledger.record_item(item(run_id, "q2", correct=False))
    rows = store.item_results(run_id)
    assert [(r["item_id"], r["status"], r["correct"], r["cost_nano"]) for r in rows] == [
        ("q1", "scored", True, 77),
        ("q2", "scored", False, 0),
    ]
    assert rows[0]["created_at"] == first["created_at"] and rows[0]["meta"] == {"seed": 1}
    with pytest.raises(TypeError):
        async with Ledger(store, run_id) as ledger:
            bad = item(run_id, "q3")
            await ledger.record_item(
                bad.__class__(**{**{f: getattr(bad, f) for f in bad.__slots__}, "meta": {"x": object()}})
            )


@pytest.mark.anyio
async def test_add_budget(store: Store, db: Path) -> None:
    run_id = new_run(store, 100)
    async with Ledger(store, run_id) as ledger:
        assert await ledger.reserve(start(run_id, 100))
        assert not await ledger.reserve(start(run_id, 50))
        await ledger.add_budget(50)
        assert ledger.budget_nano == 150
        assert await ledger.reserve(start(run_id, 50))
    assert raw_state(db, run_id)["budget"] == 150


@pytest.mark.anyio
async def test_cancelled_reserve_gives_the_reservation_back(store: Store, db: Path) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id, batch_window_s=0.3) as ledger:
        s = start(run_id, 700)
        with anyio.move_on_after(0.05) as scope:
            await ledger.reserve(s)
        assert scope.cancelled_caught
        await ledger.flush()
        assert await ledger.reserve(start(run_id, 1000))  # the 700 came back
    row = next(r for r in store.calls(run_id) if r["id"] == s.call_id)
    assert (row["status"], row["cost_nano"], row["error_type"]) == ("interrupted", 0, "Cancelled")
    assert_consistent(raw_state(db, run_id))


@pytest.mark.anyio
async def test_exit_under_cancellation_still_writes_queued_settles(store: Store, db: Path) -> None:
    run_id = new_run(store, 1000)
    s = start(run_id, 500)
    with anyio.CancelScope() as scope:
        async with Ledger(store, run_id, batch_window_s=0.5) as ledger:
            assert await ledger.reserve(s)
            await ledger.settle(end(s.call_id, 123))
            await ledger.record_item(item(run_id, "i1", cost=123))
            scope.cancel()
            await anyio.sleep(5)
    state = raw_state(db, run_id)
    assert (state["spent"], state["committed"], state["open"]) == (123, 123, 0)
    assert len(store.item_results(run_id)) == 1


@pytest.mark.anyio
async def test_database_errors_fail_reserve_and_keep_settles(db: Path) -> None:
    setup = Store.open(str(db))
    run_id = new_run(setup, 10_000)
    setup.close()
    store = Store.open(str(db), busy_timeout_s=0.1)
    async with Ledger(store, run_id, batch_window_s=0) as ledger:
        a = start(run_id, 1000)
        assert await ledger.reserve(a)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            await ledger.settle(end(a.call_id, 10))
            b = start(run_id, 1000)
            with pytest.raises(StorageError, match="locked"):
                await ledger.reserve(b)
            with pytest.raises(StorageError, match="locked"):
                await ledger.flush()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await ledger.flush()  # the queued settle was kept and is written now
    state = raw_state(db, run_id)
    assert (state["rows"], state["spent"], state["committed"]) == (1, 10, 10)
    store.close()


@pytest.mark.anyio
async def test_close_raises_when_settles_cannot_be_written(db: Path) -> None:
    setup = Store.open(str(db))
    run_id = new_run(setup, 10_000)
    setup.close()
    store = Store.open(str(db), busy_timeout_s=0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        with pytest.raises(StorageError, match="1 call settlements or item results could not be written"):
            async with Ledger(store, run_id, batch_window_s=0) as ledger:
                a = start(run_id, 1000)
                assert await ledger.reserve(a)
                holder.execute("BEGIN EXCLUSIVE")
                await ledger.settle(end(a.call_id, 10))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    state = raw_state(db, run_id)
    assert (state["committed"], state["open"], state["spent"]) == (1000, 1000, 0)  # worst case still counted
    store.close()


@pytest.mark.anyio
async def test_crash_leaves_reservations_counted(store: Store, db: Path) -> None:
    run_id = new_run(store, 1000)
    async with Ledger(store, run_id, batch_window_s=0.5) as ledger:
        s = start(run_id, 600)
        assert await ledger.reserve(s)
        await ledger.settle(end(s.call_id, 1))
        ledger._simulate_crash()
    state = raw_state(db, run_id)
    assert (state["committed"], state["open"], state["spent"]) == (600, 600, 0)
    assert [r["id"] for r in store.open_reservations(run_id)] == [s.call_id]
    async with Ledger(store, run_id) as again:
        assert again.committed_nano == 600
        assert not await again.reserve(start(run_id, 401))
        await again.settle(end(s.call_id, 1))  # reconciled later, by another ledger
    assert raw_state(db, run_id)["committed"] == 1


@pytest.mark.anyio
async def test_argument_checks(store: Store) -> None:
    run_id = new_run(store, 1000)
    with pytest.raises(StorageError, match="no run 'nope'"):
        async with Ledger(store, "nope"):
            pass
    async with Ledger(store, run_id) as ledger:
        with pytest.raises(ValueError, match="belongs to run"):
            await ledger.reserve(start("other", 1))
        with pytest.raises(ValueError, match=">= 0"):
            await ledger.reserve(start(run_id, -1))
        with pytest.raises(ValueError, match=">= 0"):
            await ledger.add_budget(-1)
        with pytest.raises(ValueError, match="unknown item status 'wrong'"):
            await ledger.record_item(item(run_id, "q", status="wrong"))
    with pytest.raises(RuntimeError, match="closed"):
        await ledger.reserve(start(run_id, 1))


@pytest.mark.parametrize("settle", [False, True])
def test_two_processes_never_commit_more_than_the_budget(store: Store, db: Path, settle: bool) -> None:
    # Reserving only: a budget neither process can use up alone, so both are granted (see
    # SHARED_BUDGET). Settling gives reservations back, so 40,000 is contended for long enough.
    budget = 40_000 if settle else SHARED_BUDGET
    run_id = new_run(store, budget)
    seen: list[dict[str, int]] = []

    def observe() -> None:
        state = raw_state(db, run_id)
        assert_consistent(state)
        assert state["committed"] <= budget
        seen.append(state)

    grants = run_processes(str(db), run_id, settle=settle, observe=observe)
    assert all(grants), "both processes must have been granted reservations"
    state = raw_state(db, run_id)
    assert_consistent(state)
    assert state["rows"] == sum(len(g) for g in grants)  # every True has a durable row
    if not settle:
        assert sum(amount for g in grants for _, amount, _ in g) == state["committed"] <= budget
        assert state["committed"] > budget - 1000  # the budget really was contended for
    else:
        assert state["spent"] == sum(cost for g in grants for _, _, cost in g) <= budget
    assert len(seen) > 5


@pytest.mark.anyio
async def test_text_with_nul_and_the_service_tier_are_stored(store: Store) -> None:
    await check_text_with_nul_and_service_tier(store)
