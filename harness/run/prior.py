"""What earlier sessions (or other workers) of a run did per unit, read from the database alone (see
:mod:`harness.run.resume` for what each state means)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from harness.run.cache import answers_of_run
from harness.run.plan import PriorUnit
from harness.store.engine import Store, calls_table
from harness.types import UnitKey

__all__ = ["prior_units"]


def prior_units(store: Store, run_id: str) -> dict[UnitKey, PriorUnit]:
    """What earlier sessions of ``run_id`` did, per unit: item status, cost and attempts so far, and an
    answer bought but not recorded."""
    prior: dict[UnitKey, dict[str, Any]] = {}
    for r in store.item_results(run_id):
        key = (r["model"], r["suite"], r["item_id"], int(r["repeat"]))
        prior[key] = {"status": r["status"], "correct": r["correct"], "cost_nano": 0, "attempts": 0}
    c = calls_table
    stmt = (
        sa.select(
            c.c.model,
            c.c.suite,
            c.c.item_id,
            c.c.repeat,
            sa.func.count().label("attempts"),
            sa.func.sum(sa.func.coalesce(c.c.cost_nano, 0)).label("cost"),
        )
        .where(c.c.run_id == run_id, c.c.cached.is_(False))
        .group_by(c.c.model, c.c.suite, c.c.item_id, c.c.repeat)
    )
    with store.begin_read("reading a run's calls") as conn:
        for row in conn.execute(stmt):
            key = (row.model, row.suite, row.item_id, int(row.repeat))
            entry = prior.setdefault(key, {"status": None, "correct": None, "cost_nano": 0, "attempts": 0})
            entry["cost_nano"] = int(row.cost or 0)
            entry["attempts"] = int(row.attempts or 0)
    answers = answers_of_run(store, run_id)
    out: dict[UnitKey, PriorUnit] = {}
    for key, e in prior.items():
        done = e["status"] in ("scored", "unusable")
        out[key] = PriorUnit(
            status=e["status"],
            correct=e["correct"],
            cost_nano=e["cost_nano"],
            attempts=e["attempts"],
            answer=None if done else answers.get(key),
        )
    return out
