"""``estimate --target-ci``: the items and dollars each interval method needs, before anything is bought.

For every model and suite of a forecast (:func:`harness.forecast.estimate.forecast_plan`), the items
``--target-ci HALF_WIDTH`` would buy at an assumed accuracy (0.5, the most items, unless told) come from
:func:`harness.stats.sequential.planned_items`, and the dollars from the forecast's cost per call:

- ``fixed``: a fixed-size Wilson sample of that width (for comparison only: it is not valid when the
  stopping time depends on the data);
- ``betting``: the default ``--ci-method`` (0/1 scores; with repeats the run uses ``eb``);
- ``eb``: the empirical-Bernstein sequence;
- ``control``: with ``--control MODEL`` at an assumed correlation, plus the control model's full run
  (nothing when an earlier run of it can be reused);
- ``history``: with ``--control history``, nothing bought for the control; the correlation is the
  history's own leave-one-model-out one (how well the other models' Rasch fit predicted each model),
  when the database holds the history, else the assumed one.

The in-flight calls still paid after the stop (``concurrency - 1``) are included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.forecast.estimate import Forecast, ForecastRow
from harness.pricing.money import usd_str
from harness.stats.sequential import planned_items

#: ``--control history`` (as :data:`harness.run.control.HISTORY`).
HISTORY = "history"

__all__ = ["TargetForecast", "forecast_target_ci"]


@dataclass(frozen=True, slots=True)
class TargetForecast:
    """One model, suite and interval method under ``--target-ci``."""

    model: str
    suite: str
    method: str
    items: int
    population: int
    calls: int
    expected_nano: int
    upper_nano: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; amounts as decimal strings."""
        return {
            "model": self.model,
            "suite": self.suite,
            "method": self.method,
            "items": self.items,
            "population": self.population,
            "calls": self.calls,
            "expected_usd": usd_str(self.expected_nano),
            "upper_usd": usd_str(self.upper_nano),
            "note": self.note,
        }


def _share(row: ForecastRow, calls: int) -> tuple[int, int]:
    if row.calls <= 0:
        return 0, 0
    return row.expected_nano * calls // row.calls, row.upper_nano * calls // row.calls


def forecast_target_ci(
    forecast: Forecast,
    *,
    half_width: float,
    populations: Mapping[str, int],
    accuracy: float = 0.5,
    control: str | None = None,
    rho: float = 0.6,
    control_reused: bool = False,
    concurrency: int = 16,
    history: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[TargetForecast]:
    """Items and dollars per model, suite and method for ``--target-ci half_width``.

    Args:
        forecast: the full-run forecast of the models (and of the control model, if any).
        half_width: the target half-width.
        populations: items per suite (after ``--limit``).
        accuracy: the accuracy assumed (0.5 needs the most items).
        control: the control model's name (its rows are the control's full run).
        rho: the correlation assumed between the two models' scores.
        control_reused: an earlier run of the control covers the suites (its cost is already paid).
        concurrency: calls in flight; ``concurrency - 1`` more are paid after the stop.
        history: with ``control="history"``: per suite, what :func:`harness.run.control.find_history`
            found (``models``, ``correlation``); a suite without is forecast at ``rho``.
    """
    out: list[TargetForecast] = []
    control_rows = {r.suite: r for r in forecast.rows if r.model == control}
    for row in forecast.rows:
        if row.model == control:
            continue
        n = populations.get(row.suite, 0)
        if n <= 0:
            continue
        repeats = max(1, row.calls // n)
        methods = ["fixed", "betting" if repeats == 1 else "eb"]
        if "eb" not in methods:
            methods.append("eb")
        if control == HISTORY:
            methods.append("history")
        elif control is not None:
            methods.append("control")
        found = (history or {}).get(row.suite)
        measured = found.get("correlation") if found else None
        for method in methods:
            r = measured if method == "history" and measured is not None else rho
            kind = "control" if method == "history" else method
            items = planned_items(kind, accuracy, half_width, n, rho=r) or n
            items = min(n, items + (0 if method == "fixed" else concurrency - 1))
            calls = items * repeats
            expected, upper = _share(row, calls)
            note = "not valid with a data-dependent stop; for comparison" if method == "fixed" else ""
            if method == "control":
                c = control_rows.get(row.suite)
                if c is not None and not control_reused:
                    expected += c.expected_nano
                    upper += c.upper_nano
                    note = f"includes {control} on all {n:,} items; correlation {rho:.2f} assumed"
                else:
                    note = f"{control}'s earlier run reused; correlation {rho:.2f} assumed"
            if method == "history":
                note = (
                    f"item difficulty from {len(found['models'])} models' earlier runs, nothing bought; "
                    f"correlation {r:.2f} (leave-one-model-out on the history)"
                    if found and measured is not None
                    else f"needs earlier runs of 2 other models in the database; correlation {r:.2f} assumed"
                )
                if found and not found.get("used", True):
                    note += f"; not worth it: the run would use {found['without']} without it"
            out.append(TargetForecast(row.model, row.suite, method, items, n, calls, expected, upper, note))
    return out
