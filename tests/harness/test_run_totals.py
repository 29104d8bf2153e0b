"""``tollbench costs`` from per-run snapshots (``run_totals``, migration m008) equals the live query.

For random small databases, every grouping and filter of :meth:`Store.cost_summary` gives the same
rows with snapshots as summed live from the calls, before and after random writes to ``calls`` and
status changes (the triggers drop the stale snapshot). The real writers (a late call settled by the
ledger, resume, reconcile, import) are checked one by one, on SQLite and on PostgreSQL, as is the
migration of a schema-7 database holding finished runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import end, new_run, start

from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.store import migrations
from harness.store.engine import (
    RUN_STATUSES,
    TERMINAL_STATUSES,
    Store,
    calls_table,
    run_totals_state_table,
    run_totals_table,
    runs_table,
)

GROUPINGS: list[list[str]] = [
    [],
    ["run"],
    ["model"],
    ["suite"],
    ["day"],
    ["provider"],
    ["model", "suite"],
    ["day", "model"],
    ["run", "model", "suite", "day", "provider"],
]
FILTERS: list[dict[str, Any]] = [
    {},
    {"since": date(2026, 3, 2)},
    {"until": date(2026, 3, 1)},
    {"since": date(2026, 3, 2), "until": date(2026, 3, 2)},
    {"run_id": "run-0"},
]
TIMES = [
    datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
    datetime(2026, 3, 2, 23, 0, tzinfo=UTC),
    datetime(2026, 3, 3, 0, 0, 0, 1, tzinfo=UTC),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.open(str(tmp_path / "runs.db"))
    else:
        s = Store.open(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def assert_same_as_live(store: Store, groupings: list[list[str]] = GROUPINGS) -> None:
    for by in groupings:
        for filters in FILTERS:
            assert store.cost_summary(by=by, **filters) == store.cost_summary(
                by=by, snapshots=False, **filters
            ), (by, filters)


def ready_runs(store: Store) -> set[str]:
    s = run_totals_state_table
    with store.begin_read() as conn:
        return set(conn.execute(sa.select(s.c.run_id).where(s.c.state == "ready")).scalars())


def finished_runs(store: Store) -> set[str]:
    with store.begin_read() as conn:
        rows = conn.execute(sa.select(runs_table.c.id, runs_table.c.status)).all()
    return {r.id for r in rows if r.status in TERMINAL_STATUSES}


def wipe(store: Store) -> None:
    with store.begin_write() as conn:
        for t in (calls_table, run_totals_table, run_totals_state_table, runs_table):
            conn.execute(sa.delete(t))


calls_st = st.fixed_dictionaries(
    {
        "run": st.integers(0, 2),
        "model": st.sampled_from(["openai/a", "openai/b"]),
        "suite": st.sampled_from(["demo", "math"]),
        "provider": st.sampled_from(["openai", "xai"]),
        "started_at": st.sampled_from(TIMES),
        "status": st.sampled_from(["reserved", "ok", "error"]),
        "reserved_nano": st.integers(0, 10**6),
        "cost_nano": st.none() | st.integers(0, 10**6),
        "usage_known": st.none() | st.booleans(),
        "input_uncached": st.none() | st.integers(0, 1000),
        "output_tokens": st.none() | st.integers(0, 1000),
        "cache_write_1h": st.none() | st.integers(0, 10),
        "cached": st.booleans(),
        "reproduce_nano": st.none() | st.integers(0, 1000),
        "provider_cost_nano": st.none() | st.integers(0, 1000),
        "output_bound": st.none() | st.integers(0, 1000),
    }
)
ops_st = st.lists(
    st.tuples(st.sampled_from(["insert", "update", "delete", "status"]), calls_st, st.integers(0, 50)),
    max_size=4,
)


def call_row(spec: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in spec.items() if k != "run"}
    return {
        **row,
        "id": uuid.uuid4().hex,
        "run_id": f"run-{spec['run']}",
        "api": "chat",
        "provider_model": "m",
        "item_id": "i",
        "repeat": 0,
        "attempt": 1,
        "role": "target",
    }


def apply(store: Store, op: str, spec: dict[str, Any], pick: int) -> None:
    with store.begin_write() as conn:
        ids = sorted(conn.execute(sa.select(calls_table.c.id)).scalars())
        if op == "insert" or not ids and op != "status":
            conn.execute(sa.insert(calls_table).values(call_row(spec)))
        elif op == "update":
            values = {k: spec[k] for k in ("cost_nano", "status", "usage_known", "provider_cost_nano")}
            where = calls_table.c.id == ids[pick % len(ids)]
            conn.execute(sa.update(calls_table).where(where).values(values))
        elif op == "delete":
            conn.execute(sa.delete(calls_table).where(calls_table.c.id == ids[pick % len(ids)]))
    if op == "status":
        store.set_run_status(f"run-{spec['run']}", RUN_STATUSES[pick % len(RUN_STATUSES)])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    statuses=st.lists(st.sampled_from(RUN_STATUSES), min_size=3, max_size=3),
    sims=st.lists(st.booleans(), min_size=3, max_size=3),
    calls=st.lists(calls_st, max_size=20),
    ops=ops_st,
)
def test_snapshots_equal_the_live_query(
    store: Store, statuses: list[str], sims: list[bool], calls: list[dict[str, Any]], ops: list[Any]
) -> None:
    wipe(store)
    for n, (status, sim) in enumerate(zip(statuses, sims, strict=True)):
        store.create_run(
            suites=["demo"], models=[], budget_nano=10**9, simulated=sim, config={},
            price_table_sha256="t", run_id=f"run-{n}",
        )  # fmt: skip
        store.set_run_status(f"run-{n}", status)
    if calls:
        with store.begin_write() as conn:
            conn.execute(sa.insert(calls_table), [call_row(c) for c in calls])
    assert_same_as_live(store)
    assert ready_runs(store) == finished_runs(store)  # the snapshots were made and used
    for op, spec, pick in ops:
        apply(store, op, spec, pick)
        assert_same_as_live(store, [["run", "model", "suite", "day", "provider"], ["model", "suite"]])


def test_a_stale_snapshot_would_be_caught(store: Store) -> None:
    """The comparison above can fail: without the triggers, a changed call leaves a stale snapshot."""
    run = new_run(store, 10**9)
    anyio.run(settle_calls, store, run, [100, 200])
    store.set_run_status(run, "done")
    assert_same_as_live(store, [["model"]])
    with store.begin_write() as conn:
        if store.dialect == "postgresql":
            conn.execute(sa.text("DROP TRIGGER calls_drop_totals ON calls"))
        else:
            for name in ("insert", "update", "move", "delete"):
                conn.execute(sa.text(f"DROP TRIGGER calls_{name}_drop_totals"))
        conn.execute(sa.update(calls_table).values(cost_nano=1))
    assert store.cost_summary(by=["model"]) != store.cost_summary(by=["model"], snapshots=False)


async def settle_calls(store: Store, run_id: str, costs: list[int | None]) -> list[str]:
    ids = []
    async with Ledger(store, run_id, batch_window_s=0) as ledger:
        for cost in costs:
            s = start(run_id, 1000)
            assert await ledger.reserve(s)
            ids.append(s.call_id)
            if cost is not None:
                await ledger.settle(end(s.call_id, cost))
    return ids


def test_real_writers_drop_the_snapshot(store: Store, tmp_path: Path) -> None:
    from harness.audit.reconcile import reconcile_run
    from harness.store.bundle import export_to_file, import_bundle

    run = new_run(store, 10**9)
    open_id, *_ = anyio.run(settle_calls, store, run, [None, 100, 200])
    with store.begin_write() as conn:
        conn.execute(sa.update(calls_table).where(calls_table.c.id == open_id).values(sent_to="sim:x"))
    store.set_run_status(run, "interrupted")
    assert_same_as_live(store)
    assert ready_runs(store) == {run}

    # reconcile settles the open reservation from the invoice
    invoice = {"instance": "x", "requests": {"r": {"client_request_id": open_id, "usd": "0.0000005"}}}
    assert reconcile_run(store, run, invoice).matched == 1
    assert ready_runs(store) == set()
    assert store.cost_summary(by=["run"])[0]["spent_nano"] == 800
    assert_same_as_live(store)

    # a late call of the finished run, reserved then settled by the ledger
    late = start(run, 1000)

    async def late_call() -> None:
        async with Ledger(store, run, batch_window_s=0) as ledger:
            assert await ledger.reserve(late)
            assert ready_runs(store) == set()
            assert_same_as_live(store, [["model"]])
            assert ready_runs(store) == {run}
            await ledger.settle(end(late.call_id, 50))

    anyio.run(late_call)
    assert ready_runs(store) == set()
    assert store.cost_summary(by=["run"])[0]["spent_nano"] == 850
    assert_same_as_live(store)

    # resume: the run is running again (no snapshot until it ends)
    store.set_run_status(run, "running")
    assert ready_runs(store) == set()
    assert_same_as_live(store, [["run"]])
    assert ready_runs(store) == set()
    store.set_run_status(run, "done")

    # import: a new finished run, summed on the way
    bundle = tmp_path / "run.jsonl"
    export_to_file(store, run, bundle)
    loaded = import_bundle(store, bundle)
    assert_same_as_live(store)
    assert ready_runs(store) == {run, loaded.run_id}
    by_run = {r["run"]: r for r in store.cost_summary(by=["run"])}
    assert by_run[run]["spent_nano"] == by_run[loaded.run_id]["spent_nano"] == 850


def test_a_write_error_falls_back_to_the_live_query(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    run = new_run(store, 10**9)
    anyio.run(settle_calls, store, run, [100, 200])
    store.set_run_status(run, "done")

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise StorageError("read-only")

    monkeypatch.setattr(store, "begin_write", refuse)
    (row,) = store.cost_summary(by=["run"])
    assert row["spent_nano"] == 300 and row["calls"] == 2
    assert ready_runs(store) == set()


def test_migrates_a_schema_7_database_with_finished_runs(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    old = Store.open(db, migrate_until="m007_batches")
    with old.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("run_totals")
    runs = [new_run(old, 10**9) for _ in range(2)]
    for n, run in enumerate(runs):
        anyio.run(settle_calls, old, run, [100 * (n + 1), None])
    old.set_run_status(runs[0], "done")
    old.close()

    store = Store.open(db)
    with store.engine.connect() as conn:
        assert migrations.applied_migrations(conn) == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert migrations.SCHEMA_VERSION == 8
    assert_same_as_live(store)
    assert ready_runs(store) == {runs[0]}
    by_run = {r["run"]: r for r in store.cost_summary(by=["run"])}
    assert by_run[runs[0]]["spent_nano"] == 100 and by_run[runs[1]]["unsettled_nano"] == 1000
    anyio.run(settle_calls, store, runs[0], [5])  # the triggers exist on the migrated database
    assert ready_runs(store) == set()
    assert_same_as_live(store, [["run"]])
    store.close()


@pytest.mark.postgres
def test_migrates_a_schema_7_postgres_database(pg_url: str) -> None:
    old = Store.open(pg_url, migrate_until="m007_batches")
    run = new_run(old, 10**9)
    anyio.run(settle_calls, old, run, [100])
    old.set_run_status(run, "done")
    old.close()
    store = Store.open(pg_url)
    assert_same_as_live(store, [["run"], ["model", "suite"]])
    assert ready_runs(store) == {run}
    anyio.run(settle_calls, store, run, [5])
    assert ready_runs(store) == set()
    assert store.cost_summary(by=["run"])[0]["spent_nano"] == 105
    store.close()
