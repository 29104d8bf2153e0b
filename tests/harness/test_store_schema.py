"""The Core tables of :mod:`harness.store.engine` describe the schema the migrations make: the same
columns, nullability and primary keys (the tables are what every query and insert is compiled from)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.store import engine


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "table",
    [
        engine.runs_table,
        engine.prices_table,
        engine.calls_table,
        engine.item_results_table,
        engine.endpoint_facts_table,
        engine.run_totals_table,
        engine.run_totals_state_table,
    ],
    ids=lambda t: t.name,
)
def test_core_table_matches_migrated_schema(tmp_path: Path, table: sa.Table) -> None:
    db = tmp_path / "runs.db"
    engine.Store.open(str(db)).close()
    con = sqlite3.connect(db)
    try:
        info = con.execute(f'PRAGMA table_info("{table.name}")').fetchall()
        fks = con.execute(f'PRAGMA foreign_key_list("{table.name}")').fetchall()
    finally:
        con.close()
    assert info, f"{table.name} is not in the migrated database"
    migrated = {name: (bool(notnull) or pk > 0, pk > 0) for _, name, _, notnull, _, pk in info}
    declared = {c.name: (not c.nullable, c.primary_key) for c in table.columns}
    assert declared == migrated
    migrated_fks = {(src, f"{dst_table}.{dst_col}") for _, _, dst_table, src, dst_col, *_ in fks}
    declared_fks = {(c.name, fk.target_fullname) for c in table.columns for fk in c.foreign_keys}
    assert declared_fks <= migrated_fks
