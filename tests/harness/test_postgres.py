"""The storage layer and the ledger on the local PostgreSQL server (same code as SQLite).

Each test gets a fresh schema (dropped afterwards). Without a reachable server the tests are skipped
with the reason shown, unless ``TOLLBENCH_REQUIRE_POSTGRES=1``, in which case they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_fixtures import (
    SHARED_BUDGET,
    check_text_with_nul_and_service_tier,
    end,
    item,
    new_run,
    run_processes,
    start,
)

from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.store import migrations
from harness.store.engine import Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    s = Store.open(pg_url)
    yield s
    s.close()


def pg_state(store: Store, run_id: str) -> dict[str, int]:
    with store.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        budget, committed, spent = conn.execute(
            sa.text("SELECT budget_nano, committed_nano, spent_nano FROM runs WHERE id = :r"), {"r": run_id}
        ).one()
        costs, open_reserved, rows = conn.execute(
            sa.text(
                "SELECT COALESCE(SUM(cost_nano), 0), COALESCE(SUM(CASE WHEN status = 'reserved' "
                "THEN reserved_nano END), 0), COUNT(*) FROM calls WHERE run_id = :r"
            ),
            {"r": run_id},
        ).one()
    state = {"budget": budget, "committed": committed, "spent": spent, "costs": costs, "open": open_reserved}
    out: dict[str, int] = {k: int(v) for k, v in state.items()}
    out["rows"] = int(rows)
    return out


def test_open_migrate_and_query(store: Store, pg_url: str) -> None:
    assert store.dialect == "postgresql" and "tb_test_" in store.url
    assert "root@127.0.0.1" in store.label
    run_id = new_run(store, 5 * 10**15)  # $5M: needs BIGINT
    run = store.get_run(run_id)
    assert run is not None and run["budget_nano"] == 5 * 10**15 and run["suites"] == ["demo"]
    assert run["created_at"].utcoffset() is not None and run["created_at"].utcoffset().total_seconds() == 0
    with store.engine.connect() as conn:
        applied = [
            r[0] for r in conn.execute(sa.text("SELECT name FROM _tollbench_migrations ORDER BY name"))
        ]
    assert applied == [fn.__name__ for fn in migrations.MIGRATIONS]
    Store.open(pg_url).close()  # reopening is a no-op
    store.set_run_status(run_id, "done")
    assert [r["id"] for r in store.list_runs()] == [run_id]


def test_old_schema_is_migrated(pg_url: str) -> None:
    old = Store.open(pg_url, migrate_until="m001_initial")
    run_id = new_run(old, 1000)
    old.close()
    new = Store.open(pg_url)
    with new.engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("calls")}
    assert "ix_calls_run_status" in indexes and new.get_run(run_id) is not None
    new.close()


def test_newer_schema_and_foreign_schema_are_refused(store: Store, pg_url: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE _tollbench_meta SET value = '42' WHERE key = 'schema_version'"))
    with pytest.raises(
        StorageError, match=rf"written by a newer tollbench \(schema 42 > {migrations.SCHEMA_VERSION}\)"
    ):
        Store.open(pg_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE _tollbench_migrations"))
    with pytest.raises(StorageError, match="not a tollbench database"):
        Store.open(pg_url)


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(
        StorageError, match=r"^postgresql\+psycopg://root:\*\*\*@127.0.0.1:1/test: cannot use"
    ):
        Store.open("postgresql://root:hunter2@127.0.0.1:1/test", busy_timeout_s=1)


@pytest.mark.anyio
async def test_ledger_on_postgres(store: Store) -> None:
    run_id = new_run(store, 2000)
    async with Ledger(store, run_id) as ledger:
        a, b = start(run_id, 1500), start(run_id, 600)
        assert await ledger.reserve(a)
        assert not await ledger.reserve(b)
        await ledger.settle(end(a.call_id, 300))
        assert await ledger.reserve(b)
        await ledger.record_item(item(run_id, "q", status="error", correct=None))
        await ledger.record_item(item(run_id, "q", cost=300))
        await ledger.add_budget(5)
    state = pg_state(store, run_id)
    assert (state["spent"], state["committed"], state["open"], state["budget"]) == (300, 900, 600, 2005)
    results = store.item_results(run_id)
    assert len(results) == 1 and results[0]["status"] == "scored" and results[0]["cost_nano"] == 300
    summary = store.cost_summary(by=["model", "day", "run"], since=date(2020, 1, 1))
    assert len(summary) == 1 and summary[0]["spent_nano"] == 300 and summary[0]["unsettled_nano"] == 600
    assert isinstance(summary[0]["day"], str) and summary[0]["simulated"] is True
    report = store.run_report(run_id)
    assert (
        report[0]["calls"] == 2 and report[0]["items"] == 2
    )  # i1 (calls) and q (result) and report[0]["scored"] == 1


@pytest.mark.parametrize("settle", [False, True])
def test_two_processes_share_one_budget(store: Store, pg_url: str, settle: bool) -> None:
    # Reserving only: a budget neither process can use up alone, so both are granted (see
    # SHARED_BUDGET). Settling gives reservations back, so 40,000 is contended for long enough.
    budget = 40_000 if settle else SHARED_BUDGET
    run_id = new_run(store, budget)
    seen: list[dict[str, Any]] = []

    def observe() -> None:
        state = pg_state(store, run_id)
        assert state["committed"] == state["spent"] + state["open"] <= budget
        seen.append(state)

    grants = run_processes(pg_url, run_id, settle=settle, observe=observe)
    assert all(grants)
    state = pg_state(store, run_id)
    assert state["spent"] == state["costs"] and state["committed"] == state["spent"] + state["open"]
    assert state["rows"] == sum(len(g) for g in grants)
    if not settle:
        assert sum(a for g in grants for _, a, _ in g) == state["committed"] <= budget
        assert state["committed"] > budget - 1000
    assert len(seen) > 3


@pytest.mark.anyio
async def test_text_with_nul_and_the_service_tier_are_stored_on_postgres(store: Store) -> None:
    await check_text_with_nul_and_service_tier(store)
