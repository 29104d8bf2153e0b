"""``--control MODEL``: a cheap model's answers on every item, as a control variate for ``--target-ci``.

The control variate sequence (:class:`harness.stats.betting.ControlVariateCS`) needs the cheap
model's score of every item of the population *before* the expensive model is sampled. They come
from a run of the control model on the same suite (same name, data file and suite options, simulated
or not like this run) whose item results cover every item: the newest such run in the database is
reused (its money is already spent), otherwise ``tollbench run`` runs the control first, as a run of
its own, inside the same ``--budget``.

``--control history`` buys nothing: where the database holds earlier runs of at least
:data:`MIN_HISTORY_MODELS` other models on the same suite, a Rasch fit of their per-item results
(:mod:`harness.stats.irt`) predicts each item's score, and that prediction is the control, where it
is forecast to pay (:func:`history_pays`: at the history's own leave-one-model-out correlation, fewer
items than the interval without a control); elsewhere the run uses its interval without one.

Any fixed control scores keep the interval valid; scores that agree with the expensive model's make
it narrower (docs/statistics.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.run.plan import DONE_STATUSES, Plan, RunOptions
from harness.store.engine import Store

__all__ = [
    "HISTORY",
    "MIN_HISTORY_MODELS",
    "control_options",
    "find_control",
    "find_history",
    "history_pays",
    "missing_controls",
]

#: ``--control history``: item difficulty from earlier runs of other models instead of a cheap model.
HISTORY = "history"
#: Models with results on the suite that ``--control history`` needs.
MIN_HISTORY_MODELS = 2


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


def _same_suite_runs(store: Store, plan: Plan, suite: str) -> list[str]:
    """Runs on ``suite`` with the same data file and suite options, simulated or not like ``plan``,
    newest first."""
    opts = plan.options
    data = str(opts.data.expanduser().absolute()) if opts.data else None
    out = []
    for row in store.list_runs():
        if suite not in row["suites"]:
            continue
        if bool(row["simulated"]) != opts.simulated:  # simulated answers never stand in for real ones
            continue
        run = store.get_run(row["id"])
        stored = ((run or {}).get("config") or {}).get("options") or {}
        if dict(stored.get("suite_options") or {}) != dict(opts.suite_options) or stored.get("data") != data:
            continue
        out.append(str(row["id"]))
    return out


def _per_item(results: list[dict[str, Any]], model: str, suite: str) -> tuple[dict[str, float | None], int]:
    """A model's score per item (mean over scored repeats; None when only unusable) and the cost."""
    per_item: dict[str, list[bool | None]] = {}
    spent = 0
    for r in results:
        if r["model"] != model or r["suite"] != suite:
            continue
        spent += int(r["cost_nano"] or 0)
        if r["status"] in DONE_STATUSES:
            per_item.setdefault(r["item_id"], []).append(
                bool(r["correct"]) if r["status"] == "scored" else None
            )
    scores: dict[str, float | None] = {}
    for item_id, outcomes in per_item.items():
        scored = [c for c in outcomes if c is not None]
        scores[item_id] = sum(scored) / len(scored) if scored else None
    return scores, spent


def find_history(store: Store, plan: Plan, suite: str) -> dict[str, Any] | None:
    """``--control history``: the Rasch prediction of every item from other models' earlier runs.

    A resumed run reads only the runs older than itself, so its control (and the choice to use it)
    stays what it was when it started, unless those runs changed.

    Returns:
        ``{"run_id": None, "history": {"models", "runs", "items_covered", "correlation"}, "scores",
        "spent_nano": 0, "reused": True}`` (``correlation``: the median leave-one-model-out correlation
        of the prediction with each historical model's scores, None if undefined),
        or None with fewer than :data:`MIN_HISTORY_MODELS` other models.
    """
    from harness.stats.irt import history_correlation, predicted_scores

    own = set(plan.models)
    wanted = sorted({u.item.id for mp in plan.models.values() for u in mp.units if u.suite == suite})
    responses: dict[str, dict[str, float]] = {}
    runs: list[str] = []
    candidates = _same_suite_runs(store, plan, suite)
    own_run = plan.options.run_id
    if own_run in candidates:  # resuming: runs newer than this one were not its history
        candidates = candidates[candidates.index(own_run) + 1 :]
    for run_id in candidates:
        results = store.item_results(run_id)
        used = False
        for model in sorted({r["model"] for r in results if r["suite"] == suite} - own):
            seen, _ = _per_item(results, model, suite)
            got = responses.setdefault(model, {})
            for item_id, x in seen.items():
                if x is not None and item_id not in got:  # the newest run's answer wins
                    got[item_id] = x
                    used = True
        if used:
            runs.append(run_id)
    responses = {m: s for m, s in responses.items() if s}
    if len(responses) < MIN_HISTORY_MODELS:
        return None
    predicted = predicted_scores(responses, wanted)
    covered = sum(1 for i in wanted if any(i in s for s in responses.values()))
    return {
        "run_id": None,
        "model": HISTORY,
        "history": {
            "models": sorted(responses),
            "runs": runs,
            "items_covered": covered,
            # how well the history predicted each of its models from the others: the forecast's rho
            "correlation": history_correlation(responses),
        },
        "scores": dict(predicted),
        "spent_nano": 0,
        "reused": True,
    }


def find_control(store: Store, plan: Plan, suite: str) -> dict[str, Any] | None:
    """The newest run of the plan's control model on ``suite`` that answered every item of the plan.

    Returns:
        ``{"run_id", "model", "scores": {item_id: score or None}, "spent_nano", "reused": True}``, or
        None when no run covers every item.
    """
    control = plan.control
    if control is None:
        return None
    wanted = {u.item.id for mp in plan.models.values() for u in mp.units if u.suite == suite}
    for run_id in _same_suite_runs(store, plan, suite):
        row = store.get_run(run_id)
        if row is None or control not in row["models"]:
            continue
        scores, spent = _per_item(store.item_results(run_id), control, suite)
        if not wanted <= scores.keys():
            continue
        picked = {i: scores[i] for i in wanted}
        return {"run_id": run_id, "model": control, "scores": picked, "spent_nano": spent, "reused": True}
    return None


def history_pays(plan: Plan, suite: str, correlation: float | None) -> dict[str, Any]:
    """Whether ``--control history`` is forecast to need fewer items than the run's interval without
    it, at the history's own (leave-one-model-out) correlation and accuracy 0.5.

    Decided before the model answers anything, so using or not using the history keeps the interval
    valid. Returns ``{"used", "items_with", "items_without", "without"}``.
    """
    from harness.stats.sequential import planned_items

    units = [u for mp in plan.models.values() for u in mp.units if u.suite == suite]
    n = len({u.item.id for u in units}) or 1
    repeats = max(1, len(units) // n // max(1, len(plan.models)))
    without = "betting" if plan.options.ci_method == "betting" and repeats == 1 else "eb"
    h = plan.options.target_ci or 0.05
    items_without = planned_items(without, 0.5, h, n) or n
    items_with = planned_items("control", 0.5, h, n, rho=max(0.0, correlation or 0.0)) or n
    return {
        "used": items_with < items_without,
        "items_with": items_with,
        "items_without": items_without,
        "without": without,
    }


def missing_controls(store: Store, plan: Plan) -> list[str]:
    """Fill ``plan.controls`` and ``plan.control_runs`` from the database; return the suites that have
    no control run covering every item yet.

    With ``--control history``, a suite whose history is forecast not to pay (:func:`history_pays`) gets
    its ``control_runs`` entry (``history.used`` False) but no controls: the run uses its interval
    without a control there."""
    missing = []
    for suite in plan.suites:
        if suite in plan.controls:
            continue
        found = (
            find_history(store, plan, suite) if plan.control == HISTORY else find_control(store, plan, suite)
        )
        if found is None:
            missing.append(suite)
            continue
        scores = found.pop("scores")
        history = found.get("history")
        if history is not None:
            history.update(history_pays(plan, suite, history["correlation"]))
            if not history["used"]:
                plan.control_runs[suite] = found
                continue
        plan.controls[suite] = scores
        plan.control_runs[suite] = found
    return missing
