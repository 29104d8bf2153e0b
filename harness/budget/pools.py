"""Budget pools: one hard cap shared by several runs (docs/workers.md).

A pool is a row of ``pools`` with its own ``budget_nano``, ``committed_nano`` (settled spend + open
reservations of all its runs) and ``spent_nano``. A run draws from at most one pool (``run_pools``).
The money itself moves only in the ledger's transaction (:mod:`harness.budget.ledger`): a reservation
is admitted only if it fits the run's budget AND the pool's, both read under their row locks (the run
row first, then the pool row, in every transaction, so two runs never deadlock), and every settlement
moves the pool's totals by the same amounts as the run's. Reconciliation does the same
(:func:`adjust`). So for every pool, at every instant: ``committed_nano <= budget_nano``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from harness.errors import ConfigError
from harness.store.engine import Store, UTCDateTime, runs_table

__all__ = [
    "PoolBooks",
    "adjust",
    "attach_run",
    "check_pool",
    "create_pool",
    "lock_pool",
    "pool_of_run",
    "pool_report",
    "pool_runs_table",
    "pools_table",
    "write_pool",
]

_md = sa.MetaData()
pools_table = sa.Table(
    "pools",
    _md,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("budget_nano", sa.BigInteger, nullable=False),
    sa.Column("committed_nano", sa.BigInteger, nullable=False),
    sa.Column("spent_nano", sa.BigInteger, nullable=False),
)
pool_runs_table = sa.Table(
    "run_pools",
    _md,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pool", sa.String(200), nullable=False),
)

PoolBooks = tuple[int, int, int]
"""(budget, committed, spent) of a pool, in nano-dollars."""


def create_pool(store: Store, name: str, budget_nano: int) -> None:
    """Create pool ``name`` with ``budget_nano``.

    Raises:
        ConfigError: The name is empty or too long, the budget negative, or the pool exists.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise ConfigError("a pool name must be 1 to 200 characters")
    if budget_nano < 0:
        raise ConfigError("a pool's budget must not be negative")
    p = pools_table
    with store.begin_write("creating a pool") as conn:
        if conn.execute(sa.select(p.c.name).where(p.c.name == name)).first() is not None:
            raise ConfigError(f"pool {name!r} exists already (see `tollbench pool show {name}`)")
        conn.execute(
            sa.insert(p).values(
                name=name,
                created_at=datetime.now(UTC),
                budget_nano=budget_nano,
                committed_nano=0,
                spent_nano=0,
            )
        )


def check_pool(store: Store, name: str) -> None:
    """Raises ConfigError unless pool ``name`` exists."""
    p = pools_table
    with store.begin_read("reading a pool") as conn:
        found = conn.execute(sa.select(p.c.name).where(p.c.name == name)).first()
    if found is None:
        raise ConfigError(
            f"no pool {name!r} in {store.label}; create it with `tollbench pool create {name} --budget USD`"
        )


def attach_run(store: Store, run_id: str, name: str) -> None:
    """Make run ``run_id`` draw from pool ``name`` (before it spends anything; once)."""
    check_pool(store, name)
    t = pool_runs_table
    with store.begin_write("adding a run to a pool") as conn:
        row = conn.execute(sa.select(t.c.pool).where(t.c.run_id == run_id)).first()
        if row is None:
            conn.execute(sa.insert(t).values(run_id=run_id, pool=name))
        elif row.pool != name:
            raise ConfigError(f"run {run_id} draws from pool {row.pool!r}, not {name!r}")


def pool_of_run(conn: Connection, run_id: str) -> str | None:
    """The pool ``run_id`` draws from, or None (also on a database without pools)."""
    if not sa.inspect(conn).has_table("run_pools"):
        return None
    t = pool_runs_table
    value = conn.execute(sa.select(t.c.pool).where(t.c.run_id == run_id)).scalar()
    return None if value is None else str(value)


def lock_pool(conn: Connection, name: str) -> PoolBooks:
    """Read a pool's books under its row lock (inside the caller's write transaction)."""
    p = pools_table
    row = conn.execute(
        sa.select(p.c.budget_nano, p.c.committed_nano, p.c.spent_nano)
        .where(p.c.name == name)
        .with_for_update()
    ).one_or_none()
    if row is None:
        from harness.errors import StorageError

        raise StorageError(f"pool {name!r} is missing from the database")
    return int(row[0]), int(row[1]), int(row[2])


def write_pool(conn: Connection, name: str, committed: int, spent: int) -> None:
    p = pools_table
    conn.execute(sa.update(p).where(p.c.name == name).values(committed_nano=committed, spent_nano=spent))


def adjust(conn: Connection, run_id: str, committed_delta: int, spent_delta: int) -> None:
    """Move the pool of ``run_id`` (if any) by the same amounts as the run, in the caller's
    transaction, after the run row is locked (reconciliation)."""
    name = pool_of_run(conn, run_id)
    if name is None or (committed_delta == 0 and spent_delta == 0):
        return
    _, committed, spent = lock_pool(conn, name)
    write_pool(conn, name, committed + committed_delta, spent + spent_delta)


def pool_report(store: Store, name: str) -> dict[str, Any]:
    """A pool's budget, spent, committed, and its runs (one snapshot).

    Raises:
        ConfigError: No such pool.
    """
    p, t, r = pools_table, pool_runs_table, runs_table
    with store.begin_read("reading a pool") as conn:
        row = conn.execute(sa.select(p).where(p.c.name == name)).one_or_none()
        if row is None:
            raise ConfigError(f"no pool {name!r} in {store.label} (create it with `tollbench pool create`)")
        runs = conn.execute(
            sa.select(r.c.id, r.c.status, r.c.budget_nano, r.c.committed_nano, r.c.spent_nano, r.c.simulated)
            .select_from(t.join(r, r.c.id == t.c.run_id))
            .where(t.c.pool == name)
            .order_by(r.c.created_at)
        ).all()
    return {
        "name": row.name,
        "budget_nano": int(row.budget_nano),
        "committed_nano": int(row.committed_nano),
        "spent_nano": int(row.spent_nano),
        "runs": [dict(x._mapping) for x in runs],
    }
