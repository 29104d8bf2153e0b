"""``tollbench report``: one self-contained HTML page with the charts evaluators compare models by.

:func:`build_report` reads the runs (:mod:`.data`), builds the Vega-Lite charts (:mod:`.charts`) and
renders the page with its runtime inline (:mod:`.page`). See docs/report.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from harness.report_html.data import ReportData, load_report_data, select_runs
from harness.report_html.page import render_html, runtime_available
from harness.store.engine import Store

__all__ = [
    "ReportData",
    "build_report",
    "load_report_data",
    "render_html",
    "runtime_available",
    "select_runs",
]


def build_report(store: Store, run_ids: Sequence[str], *, now: datetime | None = None) -> str:
    """The HTML report of ``run_ids`` (see :func:`select_runs`).

    Raises:
        ConfigError: the ``report`` extra is not installed.
    """
    return render_html(load_report_data(store, run_ids), now=now)
