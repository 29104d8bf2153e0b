"""The tables and queries behind several workers on one run (docs/workers.md): who works on a run, and
which worker holds which unit.

A unit (model, suite, item, repeat) of a run is one ``unit_claims`` row: ``free``, ``claimed`` by one
worker until ``lease_until``, or ``done`` (the ledger marks it in the same transaction as the unit's
item result, see :mod:`harness.budget.ledger`). A worker takes units with ONE transaction that selects
free or expired rows and updates them: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` (two
workers never wait for, nor take, the same row), on SQLite under ``BEGIN IMMEDIATE`` (the write lock
serialises the workers of one machine). Its heartbeat renews its leases; a worker whose heartbeat
stops (killed, machine gone) loses its units when their leases expire, or at once when another worker
on the same host sees its process gone (:func:`mark_gone`).

The run's final status is written once: by the worker whose leaving finds no other live worker
(:func:`leave`, one transaction under the run row's lock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from harness.store.engine import Store, UTCDateTime, item_results_table, runs_table
from harness.types import UnitKey

__all__ = [
    "DONE_STATUSES",
    "Leave",
    "claim_units",
    "leave",
    "mark_gone",
    "open_workers",
    "register_worker",
    "release_units",
    "renew",
    "seed_units",
    "unit_claims_table",
    "units_left",
    "worker_progress",
    "run_workers_table",
]

#: Item statuses that finish a unit (its claim becomes ``done``); ``not_run`` leaves it to be claimed.
DONE_STATUSES = ("scored", "unusable", "error")

_md = sa.MetaData()
run_workers_table = sa.Table(
    "run_workers",
    _md,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("lease_s", sa.Float, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False),
)
"""One row per worker process of a run; ``closed`` once the run's final status counted it."""

unit_claims_table = sa.Table(
    "unit_claims",
    _md,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("suite", sa.String(200), primary_key=True),
    sa.Column("item_id", sa.String(200), primary_key=True),
    sa.Column("repeat", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("worker_id", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("claims", sa.Integer, nullable=False),
)
"""One row per unit of a run: ``free``, ``claimed`` (by ``worker_id`` until ``lease_until``) or ``done``."""

_KEY = ("model", "suite", "item_id", "repeat")


def _now() -> datetime:
    return datetime.now(UTC)


def register_worker(
    store: Store, run_id: str, worker_id: str, *, host: str, pid: int, lease_s: float
) -> None:
    """Record a worker of ``run_id`` (alive as of now)."""
    now = _now()
    with store.begin_write("registering a worker") as conn:
        conn.execute(
            sa.insert(run_workers_table).values(
                run_id=run_id,
                worker_id=worker_id,
                host=host,
                pid=pid,
                lease_s=lease_s,
                started_at=now,
                heartbeat_at=now,
                ended_at=None,
                status="running",
                closed=False,
            )
        )


def _insert_ignore(store: Store, table: sa.Table) -> Any:
    if store.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def seed_units(
    store: Store, run_id: str, units: Sequence[tuple[UnitKey, bool]], *, retry_errors: bool = False
) -> None:
    """Make sure every unit of the run has its claim row (``done`` if already answered); rows that
    exist are kept, so every worker may call this. The database's item results win over the rows, in
    the same transaction: a ``done`` row without a finishing item result (deleted, or written by an
    older tollbench) is free again, a ``free`` row with one is done. ``retry_errors`` (a resume, which
    sends failed units again) frees the units whose item result is an error too."""
    u, it = unit_claims_table, item_results_table
    with store.begin_read("reading a run's units") as conn:
        have = int(conn.execute(sa.select(sa.func.count()).where(u.c.run_id == run_id)).scalar_one())
    rows = [
        {
            "run_id": run_id,
            **dict(zip(_KEY, key, strict=True)),
            "seq": seq,
            "state": "done" if done else "free",
            "worker_id": None,
            "lease_until": None,
            "claims": 0,
        }
        for seq, (key, done) in enumerate(units)
    ]

    def finished(statuses: Sequence[str]) -> Any:
        return (
            sa.select(it.c.run_id)
            .where(it.c.run_id == u.c.run_id, *(it.c[k] == u.c[k] for k in _KEY), it.c.status.in_(statuses))
            .exists()
        )

    answered = [s for s in DONE_STATUSES if s != "error"] if retry_errors else DONE_STATUSES
    with store.begin_write("recording a run's units") as conn:
        if have < len(rows):
            stmt = _insert_ignore(store, u)
            for i in range(0, len(rows), 1000):
                conn.execute(stmt, rows[i : i + 1000])
        conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.state == "done", ~finished(answered))
            .values(state="free", lease_until=None)
        )
        conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.state == "free", finished(answered))
            .values(state="done")
        )


def claim_units(
    store: Store, run_id: str, worker_id: str, model: str, n: int, lease_s: float
) -> list[tuple[UnitKey, bool]]:
    """Claim up to ``n`` units of ``model`` that are free or whose lease expired, in plan order.

    Returns:
        ``(unit, taken)`` pairs; ``taken`` is True for a unit another worker held before (its lease
        expired, or its process is gone): that worker may have bought an answer for it.
    """
    u = unit_claims_table
    now = _now()
    claimable = sa.or_(u.c.state == "free", sa.and_(u.c.state == "claimed", u.c.lease_until < now))
    sel = (
        sa.select(*(u.c[k] for k in _KEY), u.c.state)
        .where(u.c.run_id == run_id, u.c.model == model, claimable)
        .order_by(u.c.seq)
        .limit(n)
        .with_for_update(skip_locked=True)
    )
    with store.begin_write("claiming units") as conn:
        rows = conn.execute(sel).all()
        if not rows:
            return []
        conn.execute(
            sa.update(u)
            .where(
                u.c.run_id == run_id,
                *(u.c[k] == sa.bindparam(f"b_{k}") for k in _KEY),
            )
            .values(
                state="claimed",
                worker_id=worker_id,
                lease_until=now + timedelta(seconds=lease_s),
                claims=u.c.claims + 1,
            ),
            [{f"b_{k}": getattr(r, k) for k in _KEY} for r in rows],
        )
    return [((r.model, r.suite, r.item_id, int(r.repeat)), r.state == "claimed") for r in rows]


def renew(store: Store, run_id: str, worker_id: str, lease_s: float) -> tuple[bool, set[UnitKey]]:
    """The worker's heartbeat: renew its leases and its row.

    Returns:
        ``(alive, held)``: alive is False when another worker declared this one gone (it must start
        nothing new); ``held`` is the units it still holds.
    """
    u, w = unit_claims_table, run_workers_table
    now = _now()
    with store.begin_write("renewing a worker's leases") as conn:
        alive = conn.execute(
            sa.update(w)
            .where(w.c.run_id == run_id, w.c.worker_id == worker_id, w.c.ended_at.is_(None))
            .values(heartbeat_at=now)
        ).rowcount
        conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.worker_id == worker_id, u.c.state == "claimed")
            .values(lease_until=now + timedelta(seconds=lease_s))
        )
        held = conn.execute(
            sa.select(*(u.c[k] for k in _KEY)).where(
                u.c.run_id == run_id, u.c.worker_id == worker_id, u.c.state == "claimed"
            )
        ).all()
    return bool(alive == 1), {(r.model, r.suite, r.item_id, int(r.repeat)) for r in held}


def release_units(store: Store, run_id: str, worker_id: str) -> int:
    """Give back every unit the worker still holds (not done): other workers may take them at once."""
    u = unit_claims_table
    with store.begin_write("releasing units") as conn:
        result = conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.worker_id == worker_id, u.c.state == "claimed")
            .values(state="free", lease_until=None)
        )
    return int(result.rowcount or 0)


def units_left(store: Store, run_id: str, model: str | None, worker_id: str) -> tuple[int, int]:
    """``(free, held_by_others)`` units of ``model`` (all models if None) not done yet."""
    u = unit_claims_table
    where = [u.c.run_id == run_id, u.c.state != "done"]
    if model is not None:
        where.append(u.c.model == model)
    others = sa.and_(u.c.state == "claimed", sa.or_(u.c.worker_id.is_(None), u.c.worker_id != worker_id))
    with store.begin_read("reading a run's units") as conn:
        row = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(sa.case((u.c.state == "free", 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((others, 1), else_=0)), 0),
            ).where(*where)
        ).one()
    return int(row[0]), int(row[1])


def open_workers(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's workers that have not ended (possibly dead: callers check pid and heartbeat)."""
    w = run_workers_table
    with store.begin_read("reading a run's workers") as conn:
        rows = conn.execute(sa.select(w).where(w.c.run_id == run_id, w.c.ended_at.is_(None))).all()
    return [dict(r._mapping) for r in rows]


def mark_gone(store: Store, run_id: str, worker_ids: Iterable[str], status: str = "lost") -> None:
    """End workers known to be dead and free their units at once (their reservations stay counted)."""
    ids = list(worker_ids)
    if not ids:
        return
    u, w = unit_claims_table, run_workers_table
    now = _now()
    with store.begin_write("ending a lost worker") as conn:
        conn.execute(
            sa.update(w)
            .where(w.c.run_id == run_id, w.c.worker_id.in_(ids), w.c.ended_at.is_(None))
            .values(ended_at=now, status=status)
        )
        conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.worker_id.in_(ids), u.c.state == "claimed")
            .values(state="free", lease_until=None)
        )


@dataclass(frozen=True, slots=True)
class Leave:
    """What :func:`leave` decided."""

    final: bool
    """This worker ended the run (with ``status``)."""
    status: str | None = None
    waiting: bool = False
    """Other workers look alive and the run is still running: one of them ends it (or, if they turn
    out dead, this worker does on a later call)."""


def leave(
    store: Store,
    run_id: str,
    worker_id: str,
    status: str,
    *,
    owner_token: str | None,
    is_live: Callable[[dict[str, Any]], bool],
    not_run_rows: Mapping[UnitKey, dict[str, Any]],
    mark_ended: bool = True,
) -> Leave:
    """End a worker; if no other live worker is left, end the run with its one final status.

    One transaction under the run row's lock (``FOR UPDATE``; SQLite's write lock), so of several
    workers leaving at once exactly one finds the others gone and writes the final status.
    ``is_live(row)`` says whether another worker's row is a live process (fresh heartbeat, process
    not known gone). The final status: ``done`` when every unit is done (``failed`` when none was
    answered and some failed); otherwise the most serious status any worker of this session ended with
    (``budget_exhausted`` > ``interrupted`` > ``failed``). Units not done get their ``not_run_rows``
    (an existing item result is kept).
    """
    r, u, w, it = runs_table, unit_claims_table, run_workers_table, item_results_table
    now = _now()
    with store.begin_write("ending a worker") as conn:
        run = conn.execute(
            sa.select(r.c.status, r.c.owner_token).where(r.c.id == run_id).with_for_update()
        ).one_or_none()
        if run is None:
            return Leave(False)
        if mark_ended:
            conn.execute(
                sa.update(w)
                .where(w.c.run_id == run_id, w.c.worker_id == worker_id, w.c.ended_at.is_(None))
                .values(ended_at=now, status=status, heartbeat_at=now)
            )
        others = conn.execute(
            sa.select(w).where(w.c.run_id == run_id, w.c.worker_id != worker_id, w.c.ended_at.is_(None))
        ).all()
        live = any(is_live(dict(o._mapping)) for o in others)
        if live or run.status != "running":
            # Someone else ends the run (or it ended already): give up ownership only.
            if owner_token:
                conn.execute(
                    sa.update(r)
                    .where(r.c.id == run_id, r.c.owner_token == owner_token)
                    .values(owner_token=None, owner_pid=None, owner_host=None, heartbeat_at=now)
                )
            return Leave(False, waiting=live and run.status == "running")
        # This worker is the last: end the dead ones it could not tell were dead, and the run.
        conn.execute(
            sa.update(w)
            .where(w.c.run_id == run_id, w.c.ended_at.is_(None))
            .values(ended_at=now, status="lost")
        )
        conn.execute(
            sa.update(u)
            .where(u.c.run_id == run_id, u.c.state == "claimed")
            .values(state="free", lease_until=None)
        )
        left = conn.execute(
            sa.select(*(u.c[k] for k in _KEY)).where(u.c.run_id == run_id, u.c.state != "done")
        ).all()
        statuses = {
            row.status
            for row in conn.execute(sa.select(w.c.status).where(w.c.run_id == run_id, w.c.closed.is_(False)))
        }
        if not left:
            counts: dict[str, int] = {
                str(st): int(n)
                for st, n in conn.execute(
                    sa.select(it.c.status, sa.func.count()).where(it.c.run_id == run_id).group_by(it.c.status)
                )
            }
            failed = status == "failed" or bool(counts.get("error"))
            final = "failed" if failed and not counts.get("scored") else "done"
        else:
            final = next(
                (s for s in ("budget_exhausted", "interrupted", "failed") if s in statuses | {status}),
                status if status != "running" else "interrupted",
            )
            keys = [(x.model, x.suite, x.item_id, int(x.repeat)) for x in left]
            rows = [not_run_rows[k] for k in keys if k in not_run_rows]
            stmt = _insert_ignore(store, it)
            for i in range(0, len(rows), 1000):
                conn.execute(stmt, rows[i : i + 1000])
        conn.execute(sa.update(w).where(w.c.run_id == run_id).values(closed=True))
        conn.execute(
            sa.update(r)
            .where(r.c.id == run_id)
            .values(
                status=final,
                finished_at=now,
                heartbeat_at=now,
                owner_token=None,
                owner_pid=None,
                owner_host=None,
            )
        )
    return Leave(True, final)


def worker_progress(store: Store, run_id: str) -> dict[str, Any]:
    """For ``show``: the run's workers (lease, heartbeat, units done and held) and the whole run's
    units by state; empty when the run has no claim rows (run by an older tollbench)."""
    u, w = unit_claims_table, run_workers_table
    with store.begin_read("reading a run's workers") as conn:
        workers = [
            dict(r._mapping)
            for r in conn.execute(sa.select(w).where(w.c.run_id == run_id).order_by(w.c.started_at))
        ]
        per = conn.execute(
            sa.select(u.c.worker_id, u.c.state, sa.func.count(), sa.func.max(u.c.lease_until))
            .where(u.c.run_id == run_id)
            .group_by(u.c.worker_id, u.c.state)
        ).all()
    states: dict[str, int] = {}
    by_worker: dict[str, dict[str, Any]] = {}
    for worker_id, state, count, lease in per:
        states[state] = states.get(state, 0) + int(count)
        if worker_id is not None:
            entry = by_worker.setdefault(worker_id, {"done": 0, "held": 0, "lease_until": None})
            if state == "done":
                entry["done"] += int(count)
            elif state == "claimed":
                entry["held"] += int(count)
                entry["lease_until"] = lease
    out_workers = []
    for row in workers:
        stats = by_worker.get(row["worker_id"], {"done": 0, "held": 0, "lease_until": None})
        out_workers.append({**row, **stats})
    return {"units": states, "total": sum(states.values()), "workers": out_workers}
