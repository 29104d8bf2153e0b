"""The durable record of a run's provider batches (migration ``m007_batches``; docs/batch.md).

A batch is written ``submitting``, with every request's ``custom_id`` and reserved call id, before
the provider is asked to create it, and gets its ``provider_batch_id`` (state ``submitted``) once the
provider answered. ``tollbench resume`` reads the batches that are not ``ended`` or ``abandoned`` and
re-attaches to them; a ``submitting`` one is looked for at the provider (:mod:`harness.run.batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from harness.store.engine import Store, UTCDateTime, calls_table

__all__ = [
    "BatchRecord",
    "BatchRequestRecord",
    "batch_requests_table",
    "batches_table",
    "open_batches",
    "record_batch",
    "run_batches",
    "set_batch_state",
]

_md = sa.MetaData()
batches_table = sa.Table(
    "batches",
    _md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("provider_batch_id", sa.String(200), nullable=True),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("reserved_nano", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at", UTCDateTime, nullable=True),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
)
batch_requests_table = sa.Table(
    "batch_requests",
    _md,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("custom_id", sa.String(64), primary_key=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("suite", sa.String(200), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("repeat", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
)

#: States of a batch that is still the run's business (resume re-attaches to them).
OPEN_STATES = ("submitting", "submitted", "cancelling")


@dataclass(frozen=True, slots=True)
class BatchRequestRecord:
    custom_id: str
    call_id: str
    model: str
    suite: str
    item_id: str
    repeat: int
    attempt: int
    call_status: str | None = None
    """The status of the request's call row (``reserved`` until its result is settled)."""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: str
    run_id: str
    model: str
    provider: str
    endpoint: str
    state: str
    provider_batch_id: str | None
    created_at: datetime
    reserved_nano: int
    requests: tuple[BatchRequestRecord, ...]
    status: str | None = None
    role: str = "target"


def record_batch(
    store: Store,
    *,
    batch_id: str,
    run_id: str,
    model: str,
    provider: str,
    endpoint: str,
    reserved_nano: int,
    requests: Sequence[BatchRequestRecord],
    role: str = "target",
) -> datetime:
    """Write a batch ``submitting`` with its requests (one transaction); returns its ``created_at``."""
    now = datetime.now(UTC)
    with store.begin_write("recording a batch") as conn:
        conn.execute(
            sa.insert(batches_table).values(
                id=batch_id,
                run_id=run_id,
                model=model,
                role=role,
                provider=provider,
                endpoint=endpoint,
                state="submitting",
                provider_batch_id=None,
                requests=len(requests),
                reserved_nano=reserved_nano,
                created_at=now,
            )
        )
        if requests:
            conn.execute(
                sa.insert(batch_requests_table),
                [
                    {
                        "batch_id": batch_id,
                        "custom_id": r.custom_id,
                        "call_id": r.call_id,
                        "run_id": run_id,
                        "model": r.model,
                        "suite": r.suite,
                        "item_id": r.item_id,
                        "repeat": r.repeat,
                        "attempt": r.attempt,
                    }
                    for r in requests
                ],
            )
    return now


def set_batch_state(
    store: Store,
    batch_id: str,
    state: str,
    *,
    provider_batch_id: str | None = None,
    status: str | None = None,
) -> None:
    """Move a batch on (``submitted`` with its provider id, ``cancelling``, ``ended``, ``abandoned``)."""
    values: dict[str, Any] = {"state": state}
    now = datetime.now(UTC)
    if provider_batch_id is not None:
        values["provider_batch_id"] = provider_batch_id
        values["submitted_at"] = now
    if state in ("ended", "abandoned"):
        values["ended_at"] = now
    if status is not None:
        values["status"] = status
    with store.begin_write("recording a batch") as conn:
        conn.execute(sa.update(batches_table).where(batches_table.c.id == batch_id).values(**values))


def _load(conn: Any, rows: Sequence[Any]) -> list[BatchRecord]:
    out: list[BatchRecord] = []
    r, c = batch_requests_table, calls_table
    for row in rows:
        reqs = conn.execute(
            sa.select(r, c.c.status.label("call_status"))
            .select_from(r.outerjoin(c, c.c.id == r.c.call_id))
            .where(r.c.batch_id == row.id)
            .order_by(r.c.custom_id)
        ).all()
        out.append(
            BatchRecord(
                id=row.id,
                run_id=row.run_id,
                model=row.model,
                provider=row.provider,
                endpoint=row.endpoint,
                state=row.state,
                provider_batch_id=row.provider_batch_id,
                created_at=row.created_at,
                reserved_nano=int(row.reserved_nano),
                status=row.status,
                role=row.role,
                requests=tuple(
                    BatchRequestRecord(
                        q.custom_id,
                        q.call_id,
                        q.model,
                        q.suite,
                        q.item_id,
                        int(q.repeat),
                        int(q.attempt),
                        q.call_status,
                    )
                    for q in reqs
                ),
            )
        )
    return out


def open_batches(store: Store, run_id: str) -> list[BatchRecord]:
    """The run's batches still in flight or never confirmed (``submitting``, ``submitted``,
    ``cancelling``), oldest first."""
    b = batches_table
    with store.begin_read("reading batches") as conn:
        rows = conn.execute(
            sa.select(b)
            .where(b.c.run_id == run_id, b.c.state.in_(OPEN_STATES))
            .order_by(b.c.created_at, b.c.id)
        ).all()
        return _load(conn, rows)


def run_batches(store: Store, run_id: str) -> list[BatchRecord]:
    """Every batch of the run, oldest first."""
    b = batches_table
    with store.begin_read("reading batches") as conn:
        rows = conn.execute(sa.select(b).where(b.c.run_id == run_id).order_by(b.c.created_at, b.c.id)).all()
        return _load(conn, rows)


def known_provider_ids(store: Store, provider: str) -> set[str]:
    """Provider batch ids any run of this database recorded (never adopted twice)."""
    b = batches_table
    with store.begin_read("reading batches") as conn:
        return {
            str(x)
            for x in conn.execute(
                sa.select(b.c.provider_batch_id).where(
                    b.c.provider == provider, b.c.provider_batch_id.is_not(None)
                )
            ).scalars()
        }


def run_paths(store: Store, run_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model, the calls that went through a batch and those sent live: ``{model: {"batch" |
    "live": {"calls", "ok", "spent_nano", "unsettled_nano"}}}`` (empty when the run had no batch)."""
    c, r, b = calls_table, batch_requests_table, batches_table
    with store.begin_read("reading batches") as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(b).where(b.c.run_id == run_id)).scalar() == 0:
            return {}
        in_batch = sa.exists().where(r.c.call_id == c.c.id)
        path = sa.case((in_batch, "batch"), else_="live").label("path")
        rows = conn.execute(
            sa.select(
                c.c.model,
                path,
                sa.func.count().label("calls"),
                sa.func.sum(sa.case((c.c.status == "ok", 1), else_=0)).label("ok"),
                sa.func.sum(sa.func.coalesce(c.c.cost_nano, 0)).label("spent"),
                sa.func.sum(sa.case((c.c.status == "reserved", c.c.reserved_nano), else_=0)).label("open"),
            )
            .where(c.c.run_id == run_id, c.c.cached.is_(False))
            .group_by(c.c.model, path)
        ).all()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.model, {})[row.path] = {
            "calls": int(row.calls or 0),
            "ok": int(row.ok or 0),
            "spent_nano": int(row.spent or 0),
            "unsettled_nano": int(row.open or 0),
        }
    return out
