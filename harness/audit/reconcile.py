"""Reconcile: settle the reservations a crash left open, from what the provider actually billed.

A call row still ``reserved`` after its process died counts as spent at its worst case (invariant 2).
``tollbench reconcile`` replaces that upper bound by the truth where the provider's bill can prove it.
Today the bill is the simulator's invoice (``GET /sim/invoice``); provider usage/cost APIs can plug in
the same way later (they would need the same per-request matching).

Matching: tollbench sends each attempt's call id as the ``x-client-request-id`` header, and the
simulator records it on every request of its invoice (``client_request_id``), refused ones included.

For each open reservation of the run:

1. **on the invoice**: settled at the billed amount, with the billed tokens and the provider's request
   id; status ``reconciled``;
2. **still in progress** on the simulator (arrived, not billed yet): left open; run reconcile again;
3. **absent**: settled at 0 (status ``reconciled``) only if the invoice can prove the request never
   arrived: the call was sent to *this* simulator instance (``calls.sent_to`` = ``sim:<instance>``;
   every request it receives is on its invoice from the moment it arrives), and the reservation is
   older than a grace period (default 30 s; a request still in a socket buffer is processed within
   milliseconds, so the grace covers it with a wide margin);
4. **anything else** (another or a restarted simulator, an invoice reset since the call was sent, a
   live provider, too recent): left open, still counted at its worst case, shown as unsettled by
   ``show`` and ``costs``, and each such call's ``reason`` says why.

The simulator's invoice reset (``POST /sim/invoice/reset``) starts a new invoice with a new instance
id, so a call billed before the reset (absent from the new invoice) never looks "never arrived".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from harness.budget import pools
from harness.errors import ConfigError, StorageError
from harness.pricing.money import usd_to_nano
from harness.store.engine import Store, calls_table, runs_table

__all__ = ["DEFAULT_GRACE_S", "ReconcileResult", "reconcile_run"]

#: Minimum age of a reservation before an absence from the invoice settles it at 0.
DEFAULT_GRACE_S = 30.0


@dataclass
class ReconcileResult:
    """What one reconcile pass did."""

    run_id: str
    matched: int = 0
    """Open reservations found on the invoice and settled at the billed cost."""
    absent: int = 0
    """Open reservations proven never to have arrived, settled at 0."""
    left_open: int = 0
    """Open reservations the invoice cannot settle (still counted at their worst case)."""
    released_nano: int = 0
    """How much the run's committed spend went down (reservations minus billed costs)."""
    billed_nano: int = 0
    """What the matched calls were billed."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """Per open reservation: ``id``, ``outcome`` (matched, absent, in_progress, unproven), cost; a call
    left open has a ``reason``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (money as decimal strings)."""
        from harness.pricing.money import usd_str

        return {
            "run_id": self.run_id,
            "matched": self.matched,
            "absent": self.absent,
            "left_open": self.left_open,
            "released_usd": usd_str(self.released_nano),
            "billed_usd": usd_str(self.billed_nano),
            "calls": self.calls,
        }


def _tokens(rec: Mapping[str, Any]) -> dict[str, int]:
    t = rec.get("tokens") or {}
    return {
        "input_uncached": int(t.get("input_uncached", 0)),
        "cache_read": int(t.get("cache_read", 0)),
        "cache_write_5m": int(t.get("cache_write_5m", 0)),
        "cache_write_1h": int(t.get("cache_write_1h", 0)),
        "output_tokens": int(t.get("output", 0)),
        "reasoning_tokens": int(t.get("reasoning", 0)),
    }


def reconcile_run(
    store: Store,
    run_id: str,
    invoice: Mapping[str, Any],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    now: datetime | None = None,
) -> ReconcileResult:
    """Settle the run's open reservations from ``invoice`` (the simulator's ``GET /sim/invoice`` JSON).

    Everything is written in one transaction that holds the run row's lock, like the ledger's
    batches, so the run's ``spent_nano``/``committed_nano`` stay equal to its call rows.

    Raises:
        ConfigError: No such run, or ``invoice`` is not a simulator invoice.
        StorageError: The database failed (nothing is changed then).
    """
    if not isinstance(invoice.get("requests"), Mapping) or "instance" not in invoice:
        raise ConfigError("not a simulator invoice (it has no requests or no instance id)")
    by_client: dict[str, Mapping[str, Any]] = {}
    for rec in invoice["requests"].values():
        cid = rec.get("client_request_id")
        if cid:
            by_client[str(cid)] = rec
    in_progress = {str(x) for x in invoice.get("in_progress") or ()}
    sent_here = f"sim:{invoice['instance']}"
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=grace_s)
    result = ReconcileResult(run_id)
    r, c = runs_table, calls_table
    with store.begin_write("reconciling a run") as conn:
        row = conn.execute(
            sa.select(r.c.committed_nano, r.c.spent_nano).where(r.c.id == run_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
        committed, spent = int(row.committed_nano), int(row.spent_nano)
        before = (committed, spent)
        open_calls = conn.execute(
            sa.select(c.c.id, c.c.reserved_nano, c.c.sent_to, c.c.started_at)
            .where(c.c.run_id == run_id, c.c.status == "reserved")
            .order_by(c.c.started_at, c.c.id)
        ).all()
        for call in open_calls:
            reserved = int(call.reserved_nano)
            rec = by_client.get(call.id)
            values: dict[str, Any]
            reason: str | None = None
            if rec is not None:
                cost = usd_to_nano(Decimal(str(rec.get("usd", "0"))))
                values = {
                    "status": "reconciled",
                    "cost_nano": cost,
                    "usage_known": True,  # the bill's own tokens (zero for a refused request)
                    **_tokens(rec),
                    "raw_usage": rec.get("raw_usage"),
                    "request_id": rec.get("request_id"),
                    "http_status": rec.get("http_status"),
                    "error_type": "reconciled",
                    "error_message": f"settled from the simulator invoice (request {rec.get('status')})",
                    "finished_at": now,
                }
                outcome = "matched"
                result.matched += 1
                result.billed_nano += cost
            elif call.id in in_progress:
                outcome, values = "in_progress", {}
                reason = "arrived at the simulator and not billed yet; run reconcile again later"
            elif (reason := _unproven(call.sent_to, call.started_at, sent_here, cutoff)) is None:
                cost = 0
                values = {
                    "status": "reconciled",
                    "cost_nano": 0,
                    "usage_known": True,
                    "error_type": "reconciled",
                    "error_message": "never reached the simulator: absent from its invoice",
                    "finished_at": now,
                }
                outcome = "absent"
                result.absent += 1
            else:
                outcome, values = "unproven", {}
            entry: dict[str, Any] = {"id": call.id, "outcome": outcome, "reserved_nano": reserved}
            if not values:
                entry["reason"] = reason
            if values:
                cost = int(values["cost_nano"])
                if cost > reserved:
                    raise StorageError(
                        f"call {call.id}: the invoice bills {cost} nano-USD, more than its reservation "
                        f"{reserved}; refusing to reconcile (the worst-case bound was wrong)"
                    )
                upd = conn.execute(
                    sa.update(c).where(c.c.id == call.id, c.c.status == "reserved").values(**values)
                )
                if upd.rowcount == 1:
                    spent += cost
                    committed += cost - reserved
                    result.released_nano += reserved - cost
                    entry["cost_nano"] = cost
            else:
                result.left_open += 1
            result.calls.append(entry)
        # A run in a pool moves the pool by the same amounts, in this transaction (after the run row).
        pools.adjust(conn, run_id, committed - before[0], spent - before[1])
        conn.execute(sa.update(r).where(r.c.id == run_id).values(committed_nano=committed, spent_nano=spent))
    return result


def _unproven(
    sent_to: str | None, started_at: datetime | None, sent_here: str, cutoff: datetime
) -> str | None:
    """Why the invoice cannot prove that a call absent from it never arrived (None: it can)."""
    if sent_to is None or not sent_to.startswith("sim:"):
        return "not sent to a simulator: no invoice can prove it was not billed; it stays at its worst case"
    if sent_to != sent_here:
        return (
            f"sent to another invoice ({sent_to}: another simulator, or before an invoice reset), "
            f"not to this one (sim:{sent_here.removeprefix('sim:')}); it stays at its worst case"
        )
    if started_at is None or _aware(started_at) > cutoff:
        return "reserved too recently (within --grace); run reconcile again later"
    return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
