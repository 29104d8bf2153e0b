"""``--control MODEL``: a cheap model's answers on every item, as a control variate for ``--target-ci``.

The control variate sequence (:class:`harness.stats.betting.ControlVariateCS`) needs the cheap
model's score of every item of the population *before* the expensive model is sampled. They come
from a run of the control model on the same suite (same name, data file and suite options, simulated
or not like this run) whose item results cover every item: the newest such run in the database is
reused (its money is already spent), otherwise ``tollbench run`` runs the control first, as a run of
its own, inside the same ``--budget``.

Any fixed control scores keep the interval valid; scores that agree with the expensive model's make
it narrower (docs/statistics.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.run.plan import DONE_STATUSES, Plan, RunOptions
from harness.store.engine import Store

__all__ = ["control_options", "find_control", "missing_controls"]


def control_options(options: RunOptions, control: str) -> RunOptions:
    """The control's own run: the same suites, items, seed and simulator, the control model alone, all
    items, no stopping rule."""
    return replace(
        options,
        models=[control],
        target_ci=None,
        control=None,
        split=None,
        run_id=None,
    )


def find_control(store: Store, plan: Plan, suite: str) -> dict[str, Any] | None:
    """The newest run of the plan's control model on ``suite`` that answered every item of the plan.

    Returns:
        ``{"run_id", "model", "scores": {item_id: score or None}, "spent_nano", "reused": True}``, or
        None when no run covers every item.
    """
    control = plan.control
    if control is None:
        return None
    opts = plan.options
    wanted = {u.item.id for mp in plan.models.values() for u in mp.units if u.suite == suite}
    for row in store.list_runs():
        if control not in row["models"] or suite not in row["suites"]:
            continue
        if bool(row["simulated"]) != opts.simulated:  # simulated answers never stand in for real ones
            continue
        run = store.get_run(row["id"])
        stored = ((run or {}).get("config") or {}).get("options") or {}
        if dict(stored.get("suite_options") or {}) != dict(opts.suite_options):
            continue
        data = str(opts.data.expanduser().absolute()) if opts.data else None
        if stored.get("data") != data:
            continue
        per_item: dict[str, list[bool | None]] = {}
        spent = 0
        for r in store.item_results(row["id"]):
            if r["model"] != control or r["suite"] != suite:
                continue
            spent += int(r["cost_nano"] or 0)
            if r["status"] in DONE_STATUSES:
                per_item.setdefault(r["item_id"], []).append(
                    bool(r["correct"]) if r["status"] == "scored" else None
                )
        if not wanted <= per_item.keys():
            continue
        scores: dict[str, float | None] = {}
        for item_id in wanted:
            scored = [c for c in per_item[item_id] if c is not None]
            scores[item_id] = sum(scored) / len(scored) if scored else None
        return {"run_id": row["id"], "model": control, "scores": scores, "spent_nano": spent, "reused": True}
    return None


def missing_controls(store: Store, plan: Plan) -> list[str]:
    """Fill ``plan.controls`` and ``plan.control_runs`` from the database; return the suites that have
    no control run covering every item yet."""
    missing = []
    for suite in plan.suites:
        if suite in plan.controls:
            continue
        found = find_control(store, plan, suite)
        if found is None:
            missing.append(suite)
            continue
        plan.controls[suite] = found.pop("scores")
        plan.control_runs[suite] = found
    return missing
