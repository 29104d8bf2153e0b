"""Reading a test's SQLite file directly (what another process would see), and shared test settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from harness.run.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=6, initial_wait_s=0.01, max_wait_s=0.05, max_retry_after_s=0.2)
"""Retries fast enough for tests against a faulty simulator."""


def rows(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Run a query on the file with a connection of its own and return every row."""
    con = sqlite3.connect(db, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def execute(db: Path, sql: str, *args: Any) -> None:
    """Run one statement on the file and commit it (to damage or edit a database on purpose)."""
    con = sqlite3.connect(db, timeout=10)
    try:
        con.execute(sql, args)
        con.commit()
    finally:
        con.close()


def count(db: Path, sql: str) -> int:
    """The first column of the first row, or 0 while the file or its tables do not exist yet."""
    if not db.exists():
        return 0
    try:
        return int(rows(db, sql)[0][0])
    except sqlite3.OperationalError:  # not created yet, or mid-migration
        return 0
