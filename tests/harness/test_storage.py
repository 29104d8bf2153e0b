"""Storage: URLs, schema, migrations, queries, and the database faults that must give clear errors."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from ledger_fixtures import end, item, new_run, start

from harness.budget.ledger import Ledger
from harness.errors import StorageError
from harness.store import migrations
from harness.store.engine import (
    Store,
    UTCDateTime,
    calls_table,
    item_results_table,
    new_run_id,
    prices_table,
    resolve_db_url,
    runs_table,
)

#: The tables docs/storage.md describes column by column.
DOCUMENTED_TABLES = (runs_table, calls_table, item_results_table, prices_table)


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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _calls(store: Store, run_id: str, specs: list[tuple[dict[str, Any], int | None]]) -> list[str]:
    """Reserve one call per spec (start kwargs, reservation 1000) and settle it at ``cost`` (None = open)."""
    ids = []
    async with Ledger(store, run_id, batch_window_s=0) as ledger:
        for kwargs, cost in specs:
            s = start(run_id, 1000, **kwargs)
            assert await ledger.reserve(s)
            ids.append(s.call_id)
            if cost is not None:
                await ledger.settle(end(s.call_id, cost))
    return ids


# -- URLs and ids ---------------------------------------------------------------------------------------


def test_resolve_db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_db_url(None, env={}) == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_db_url(None, env={"TOLLBENCH_DB": "x/y.db"}) == f"sqlite:///{tmp_path / 'x/y.db'}"
    assert resolve_db_url("other.db", env={"TOLLBENCH_DB": "x.db"}) == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_db_url("postgresql://u@h:5432/d", env={}) == "postgresql+psycopg://u@h:5432/d"
    assert resolve_db_url("postgres://u@h/d", env={}) == "postgresql+psycopg://u@h/d"
    assert resolve_db_url("sqlite:////abs/r.db", env={}) == "sqlite:////abs/r.db"
    assert resolve_db_url("postgresql+psycopg://h/d", env={}) == "postgresql+psycopg://h/d"
    with pytest.raises(StorageError, match="unsupported"):
        resolve_db_url("mysql://h/d", env={})


def test_run_ids_are_short_and_sortable() -> None:
    a = new_run_id(datetime(2026, 11, 28, 4, 44, 19, tzinfo=UTC))
    b = new_run_id(datetime(2026, 11, 28, 4, 44, 20, tzinfo=UTC))
    assert re.fullmatch(r"20261128-044419-[0-9a-f]{6}", a)
    assert a < b


def test_datetimes_must_be_aware(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), store.engine.dialect)


# -- schema ---------------------------------------------------------------------------------------------


def test_open_creates_wal_database_with_current_schema(store: Store, db: Path) -> None:
    assert store.dialect == "sqlite" and store.url == f"sqlite:///{db}"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        insp = sa.inspect(conn)
        for table in DOCUMENTED_TABLES:
            live = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
            model = {c.name: c.nullable for c in table.columns}
            assert live == model, table.name
        assert {"ix_calls_run_status", "ix_calls_started_at"} <= {
            i["name"] for i in insp.get_indexes("calls")
        }
        names = [r[0] for r in conn.execute(sa.text("SELECT name FROM _tollbench_migrations ORDER BY name"))]
        version = conn.execute(
            sa.text("SELECT value FROM _tollbench_meta WHERE key = 'schema_version'")
        ).scalar()
    assert names == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert version == str(migrations.SCHEMA_VERSION)


def test_migrates_an_old_database_keeping_its_data(db: Path) -> None:
    old = Store.open(str(db), migrate_until="m001_initial")
    run_id = new_run(old, 5000)
    anyio.run(_calls, old, run_id, [({}, 400), ({"item": "i2"}, None)])
    with old.engine.connect() as conn:
        assert "ix_calls_run_status" not in {i["name"] for i in sa.inspect(conn).get_indexes("calls")}
    old.close()

    new = Store.open(str(db))
    with new.engine.connect() as conn:
        assert "ix_calls_run_status" in {i["name"] for i in sa.inspect(conn).get_indexes("calls")}
        applied = {r[0] for r in conn.execute(sa.text("SELECT name FROM _tollbench_migrations"))}
    assert applied == {fn.__name__ for fn in migrations.MIGRATIONS}
    run = new.get_run(run_id)
    assert run is not None and run["spent_nano"] == 400 and run["committed_nano"] == 1400
    assert len(new.calls(run_id)) == 2
    new.close()


@pytest.mark.parametrize("how", ["unknown_migration", "higher_version"])
def test_refuses_a_database_from_a_newer_tollbench(db: Path, how: str) -> None:
    Store.open(str(db)).close()
    with sqlite3.connect(db) as conn:
        if how == "unknown_migration":
            conn.execute("INSERT INTO _tollbench_migrations VALUES ('m099_future', '2030-01-01')")
        else:
            conn.execute("UPDATE _tollbench_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    before = _sha(db)
    with pytest.raises(StorageError) as info:
        Store.open(str(db))
    msg = str(info.value)
    assert msg.startswith(f"{db}: written by a newer tollbench (schema 99 > {migrations.SCHEMA_VERSION})")
    assert "upgrade" in msg and "\n" not in msg
    assert _sha(db) == before


# -- runs, prices, reports ------------------------------------------------------------------------------


def test_run_lifecycle(store: Store) -> None:
    run_id = new_run(store, 10**9, simulated=False)
    run = store.get_run(run_id)
    assert run is not None
    assert run["status"] == "running" and run["finished_at"] is None and run["simulated"] is False
    assert run["suites"] == ["demo"] and run["config"] == {"concurrency": 4, "limit": None}
    assert run["budget_nano"] == 10**9 and run["committed_nano"] == run["spent_nano"] == 0
    assert run["created_at"].tzinfo is UTC
    store.set_run_status(run_id, "budget_exhausted")
    run = store.get_run(run_id)
    assert run is not None and run["status"] == "budget_exhausted" and run["finished_at"] is not None
    store.set_run_status(run_id, "running")
    run = store.get_run(run_id)
    assert run is not None and run["finished_at"] is None
    with pytest.raises(ValueError, match="unknown run status"):
        store.set_run_status(run_id, "paused")
    with pytest.raises(StorageError, match="no run 'nope'"):
        store.set_run_status("nope", "done")
    assert store.get_run("nope") is None


def test_ensure_price_is_idempotent(store: Store) -> None:
    store.ensure_price("a" * 64, "openai", "o3", {"input_mtok": "2"}, "s" * 64)
    store.ensure_price("a" * 64, "openai", "o3", {"input_mtok": "2"}, "s" * 64)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT provider, model, row FROM prices")).all()
    assert len(rows) == 1 and rows[0][2] == '{"input_mtok": "2"}'


def test_list_runs_newest_first_with_call_counts(store: Store) -> None:
    first = new_run(store, 10**6)
    second = new_run(store, 10**6, simulated=False)
    anyio.run(_calls, store, first, [({}, 10), ({}, 20), ({}, None)])
    runs = store.list_runs()
    assert [r["id"] for r in runs] == [second, first]
    assert runs[1]["calls"] == 3 and runs[0]["calls"] == 0
    assert runs[1]["spent_nano"] == 30 and runs[1]["committed_nano"] == 1030
    assert runs[0]["simulated"] is False and runs[1]["simulated"] is True


def test_run_report_per_model_and_suite(store: Store) -> None:
    run_id = new_run(store, 10**6)
    other = {"model": "anthropic/claude", "provider": "anthropic"}

    async def scenario() -> None:
        async with Ledger(store, run_id, batch_window_s=0) as ledger:
            for item_id, cost, status in [
                ("a", 100, "ok"),
                ("a", 0, "error"),
                ("b", 300, "ok"),
                ("c", None, ""),
            ]:
                s = start(run_id, 1000, item=item_id)
                assert await ledger.reserve(s)
                if cost is not None:
                    await ledger.settle(end(s.call_id, cost, status=status))
            s = start(run_id, 1000, item="a", **other)
            assert await ledger.reserve(s)
            await ledger.settle(end(s.call_id, 7))
            await ledger.record_item(item(run_id, "a", cost=100))
            await ledger.record_item(item(run_id, "b", status="unusable", correct=None, cost=300))
            await ledger.record_item(item(run_id, "d", status="not_run", correct=None))

    anyio.run(scenario)
    report = store.run_report(run_id)
    assert [(r["model"], r["suite"]) for r in report] == [
        ("anthropic/claude", "demo"),
        ("openai/o3-mini", "demo"),
    ]
    claude, o3 = report
    assert (
        claude["calls"] == 1 and claude["spent_nano"] == 7 and claude["items"] == 1 and claude["scored"] == 0
    )
    assert o3["calls"] == 4 and o3["errors"] == 1
    assert o3["items"] == 4  # a, b, c (in flight), d (not run)
    assert (o3["scored"], o3["correct"], o3["unusable"], o3["not_run"]) == (1, 1, 1, 1)
    assert o3["spent_nano"] == 400 and o3["unsettled_nano"] == 1000 and o3["unusable_nano"] == 300
    assert o3["input_uncached"] == 200 and o3["output_tokens"] == 100 and o3["reasoning_tokens"] == 60
    assert o3["cache_read"] == 40 and o3["cache_write_5m"] == 6 and o3["cache_write_1h"] == 2
    assert o3["cache_write"] == 8


def test_cost_summary_matches_the_call_rows(store: Store, db: Path) -> None:
    sim_run = new_run(store, 10**6)
    live_run = new_run(store, 10**6, simulated=False)
    day1 = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    day2 = datetime(2026, 3, 2, 0, 1, tzinfo=UTC)
    anyio.run(_calls, store, sim_run, [({"started_at": day1}, 10), ({"started_at": day2, "suite": "x"}, 20)])
    anyio.run(
        _calls,
        store,
        live_run,
        [
            ({"started_at": day2}, 300),
            ({"started_at": day2, "model": "anthropic/c", "provider": "anthropic"}, None),
        ],
    )

    by_model = {r["model"]: r for r in store.cost_summary(by=["model"])}
    assert by_model["openai/o3-mini"]["calls"] == 3 and by_model["openai/o3-mini"]["spent_nano"] == 330
    assert by_model["openai/o3-mini"]["simulated"] == "mixed"
    assert by_model["anthropic/c"]["unsettled_nano"] == 1000 and by_model["anthropic/c"]["spent_nano"] == 0
    assert by_model["anthropic/c"]["simulated"] is False

    rows = store.cost_summary(by=["run", "suite", "day", "provider"])
    keys = [(r["run"], r["suite"], r["day"], r["provider"]) for r in rows]
    assert (sim_run, "demo", "2026-03-01", "openai") in keys and (
        live_run,
        "demo",
        "2026-03-02",
        "anthropic",
    ) in keys
    assert len(rows) == 4

    assert [r["spent_nano"] for r in store.cost_summary(by=["day"], until=date(2026, 3, 1))] == [10]
    assert [r["spent_nano"] for r in store.cost_summary(by=["day"], since=date(2026, 3, 2))] == [320]
    assert store.cost_summary(by=["model"], run_id=sim_run)[0]["spent_nano"] == 30
    assert store.cost_summary(by=["model"], since=date(2027, 1, 1)) == []

    # Independent check straight from the file.
    with sqlite3.connect(db) as raw:
        total = raw.execute("SELECT SUM(cost_nano), SUM(input_uncached), COUNT(*) FROM calls").fetchone()
    raw.close()
    everything = store.cost_summary(by=[])
    assert len(everything) == 1
    assert (everything[0]["spent_nano"], everything[0]["input_uncached"], everything[0]["calls"]) == total
    assert everything[0]["cache_write"] == everything[0]["cache_write_5m"] + everything[0]["cache_write_1h"]
    with pytest.raises(ValueError, match="cannot group costs by week"):
        store.cost_summary(by=["week"])


# -- faults ---------------------------------------------------------------------------------------------


def test_not_a_database(db: Path) -> None:
    db.write_bytes(b"this is a text file, not a database\n" * 200)
    before = _sha(db)
    with pytest.raises(StorageError, match=rf"^{re.escape(str(db))}: not a SQLite database .*--db"):
        Store.open(str(db))
    assert _sha(db) == before


@pytest.mark.parametrize("where", ["schema_page", "data_pages"])
def test_corrupt_database(db: Path, where: str) -> None:
    s = Store.open(str(db))
    new_run(s, 100)
    s.close()
    data = bytearray(db.read_bytes())
    page = 4096
    if where == "schema_page":
        data[100:page] = os.urandom(page - 100)
    else:
        data[page:] = b"\xa5" * (len(data) - page)
    db.write_bytes(bytes(data))
    with pytest.raises(StorageError) as info:
        s = Store.open(str(db))
        s.list_runs()
    msg = str(info.value)
    assert msg.startswith(f"{db}: ") and "corrupt" in msg and "\n" not in msg


def test_foreign_sqlite_file_is_left_alone(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.close()
    before = _sha(db)
    with pytest.raises(StorageError, match=r"not a tollbench database \(it has other tables: users\)"):
        Store.open(str(db))
    assert _sha(db) == before
    assert not Path(f"{db}-wal").exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Store.open(str(tmp_path / "nope" / "runs.db"))


def test_locked_database_at_open(db: Path) -> None:
    s = Store.open(str(db))
    run_id = new_run(s, 100)
    s.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET status = 'running'")
    try:
        with pytest.raises(StorageError, match=r"locked by another process \(waited 0.2s"):
            Store.open(str(db), busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    s = Store.open(str(db))
    assert s.get_run(run_id) is not None
    s.close()


def test_locked_database_on_write(store: Store, db: Path) -> None:
    run_id = new_run(store, 100)
    store.close()
    s = Store.open(str(db), busy_timeout_s=0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match=r"^.*runs\.db: the database is locked by another process"):
            s.set_run_status(run_id, "done")
        assert s.get_run(run_id) is not None  # WAL readers still work
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    s.set_run_status(run_id, "done")
    s.close()


def test_disk_full_keeps_committed_rows(db: Path) -> None:
    s = Store.open(str(db))
    run_id = new_run(s, 10**12)
    with s.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    s.close()
    full = Store.open(str(db), sqlite_pragmas={"max_page_count": int(pages or 0) + 8})
    granted: list[str] = []

    async def fill() -> None:
        async with Ledger(full, run_id, batch_window_s=0, max_batch=20) as ledger:
            with pytest.raises(StorageError) as info:
                for n in range(100_000):
                    s = start(run_id, 1000, item=f"item-{n}-" + "x" * 150)
                    assert await ledger.reserve(s)
                    granted.append(s.call_id)
            assert "database or disk is full" in str(info.value) and str(db) in str(info.value)

    anyio.run(fill)
    full.close()
    assert len(granted) > 10
    again = Store.open(str(db))
    rows = again.calls(run_id)
    assert {r["id"] for r in rows} == set(granted)
    run = again.get_run(run_id)
    assert run is not None and run["committed_nano"] == 1000 * len(granted)
    again.close()


def test_no_api_key_reaches_the_database(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-" + os.urandom(16).hex()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + os.urandom(16).hex())
    s = Store.open(str(db))
    run_id = s.create_run(
        suites=["demo"],
        models=["openai/o3-mini"],
        budget_nano=10**9,
        simulated=False,
        config={"base_url": "http://127.0.0.1", "note": f"Bearer {key}"},
        price_table_sha256="t" * 64,
    )
    s.ensure_price("p" * 64, "openai", "o3-mini", {"input_mtok": "1"}, "t" * 64)

    async def write() -> None:
        async with Ledger(s, run_id) as ledger:
            for n in range(20):
                st = start(run_id, 1000, item=str(n))
                assert await ledger.reserve(st)
                message = f"401 Incorrect API key provided: {key}" if n % 2 else None
                await ledger.settle(
                    end(
                        st.call_id,
                        0 if n % 2 else 10,
                        status="error" if n % 2 else "ok",
                        error_message=message,
                        raw_usage={"echo": key},
                    )
                )
                await ledger.record_item(item(run_id, str(n)))

    anyio.run(write)
    messages = {c["error_message"] for c in s.calls(run_id)}
    assert "401 Incorrect API key provided: [redacted]" in messages
    s.close()
    for path in db.parent.iterdir():
        blob = path.read_bytes()
        assert key.encode() not in blob, path
        assert os.environ["ANTHROPIC_API_KEY"].encode() not in blob, path


DOC = Path(__file__).resolve().parents[2] / "docs" / "storage.md"


def test_docs_describe_every_column_and_their_queries_run(store: Store, db: Path) -> None:
    text = DOC.read_text()
    for table in DOCUMENTED_TABLES:
        section = text.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        missing = [c.name for c in table.columns if f"`{c.name}`" not in section]
        assert not missing, f"docs/storage.md does not describe {table.name}.{missing}"
    run_id = new_run(store, 10**6)
    anyio.run(_calls, store, run_id, [({}, 10), ({}, None)])
    with sqlite3.connect(db) as raw:
        for block in re.findall(r"```sql\n(.*?)```", text, re.S):
            for stmt in block.split(";"):
                lines = [line for line in stmt.strip().splitlines() if not line.strip().startswith("--")]
                if lines:
                    raw.execute(stmt).fetchall()
        # The documented invariant queries find nothing wrong.
        assert raw.execute("SELECT id FROM runs WHERE committed_nano > budget_nano").fetchall() == []
    raw.close()
