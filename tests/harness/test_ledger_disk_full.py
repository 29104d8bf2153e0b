"""A full disk with more than a batch of writes pending (issue 10, defect 6): every wait of the ledger
ends, with a StorageError, and nothing committed is lost.

The disk is SQLite's ``PRAGMA max_page_count`` on the ledger's connections: reservations fit, the
settles (with their stored answers) do not.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from ledger_fixtures import end, item, new_run, raw_state, start

from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.store.engine import Store
from tests.helpers.db import rows

pytestmark = pytest.mark.anyio

CALLS = 700  # more than Ledger.max_batch (512) settles pending behind a failing batch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _full_store(db: Path, headroom_pages: int) -> Store:
    Store.open(str(db)).close()
    pages = int(rows(db, "pragma page_count")[0][0])
    return Store.open(str(db), sqlite_pragmas={"max_page_count": pages + headroom_pages}, busy_timeout_s=2)


async def test_flush_behind_more_than_a_batch_of_failed_writes_raises_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    full = _full_store(db, headroom_pages=400)
    run_id = new_run(full, 10**12)
    starts = [start(run_id, 1000, item=f"i{k}") for k in range(CALLS)]
    answer = {"text": "x" * 6000, "finish_reason": "stop"}
    flush_error: list[StorageError] = []
    with pytest.raises(StorageError, match="database or disk is full"):
        with anyio.fail_after(30):  # before the fix: the flush never completed
            async with Ledger(full, run_id) as ledger:
                async with anyio.create_task_group() as tg:
                    for s in starts:
                        tg.start_soon(ledger.reserve, s)
                assert raw_state(db, run_id)["rows"] == CALLS  # every reservation is durable
                for s in starts:
                    await ledger.settle(replace(end(s.call_id, 300), response=answer))
                await ledger.record_item(item(run_id, "i0"))
                try:
                    await ledger.flush()
                except StorageError as exc:
                    flush_error.append(exc)
                    raise
    full.close()
    assert flush_error and "\n" not in str(flush_error[0])
    state = raw_state(db, run_id)
    # Nothing committed was lost: every reservation is still there, counted at its worst case.
    assert state["rows"] == CALLS and state["open"] == CALLS * 1000
    assert state["committed"] == CALLS * 1000 and state["spent"] == 0
    # With space again, the calls are settled (what resume and reconcile do) and the books balance.
    store = Store.open(str(db))
    try:
        async with Ledger(store, run_id) as ledger:
            for s in starts:
                await ledger.settle(replace(end(s.call_id, 300), response=answer))
            await ledger.flush()
    finally:
        store.close()
    state = raw_state(db, run_id)
    assert state["open"] == 0 and state["spent"] == state["committed"] == CALLS * 300


async def test_a_reserve_and_a_budget_raise_behind_failed_writes_also_end(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    full = _full_store(db, headroom_pages=400)
    run_id = new_run(full, 10**12)
    starts = [start(run_id, 1000, item=f"i{k}") for k in range(CALLS)]
    answer = {"text": "y" * 6000, "finish_reason": "stop"}
    outcomes: list[str] = []
    with pytest.raises(StorageError):
        with anyio.fail_after(30):
            async with Ledger(full, run_id) as ledger:
                async with anyio.create_task_group() as tg:
                    for s in starts:
                        tg.start_soon(ledger.reserve, s)
                for s in starts:
                    await ledger.settle(replace(end(s.call_id, 300), response=answer))

                async def late_reserve() -> None:
                    try:
                        await ledger.reserve(start(run_id, 1000, item="late"))
                    except StorageError:
                        outcomes.append("reserve")

                async def budget() -> None:
                    try:
                        await ledger.add_budget(5)
                    except StorageError:
                        outcomes.append("budget")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(late_reserve)
                    tg.start_soon(budget)
    full.close()
    assert sorted(outcomes) == ["budget", "reserve"]
    assert raw_state(db, run_id)["rows"] == CALLS  # the late call was never reserved, never sent
