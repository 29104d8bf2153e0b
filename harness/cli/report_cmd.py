"""``tollbench report``: the HTML report of some runs (registered on the main group in
:mod:`harness.cli.main`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from harness.cli.common import _fail, _open_store, db_option

__all__ = ["report"]


@click.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--since", metavar="DATE", help="Also every run started on or after this date (UTC).")
@db_option
def report(run_ids: tuple[str, ...], output: Path, since: str | None, db: str | None) -> None:
    """Write one self-contained HTML page with charts of the runs: score against cost, cost and tokens
    per benchmark, $/correct, unusable spend, judge and forecast against actual."""
    from harness.report_html import build_report, runtime_available, select_runs

    since_day = None
    if since is not None:
        try:
            since_day = date.fromisoformat(since)
        except ValueError:
            _fail(f"--since: expected a date like 2026-11-28, got {since!r}")
    if not run_ids and since_day is None:
        _fail("name the runs to report (RUN_ID ...) or give --since DATE")
    if not runtime_available():
        _fail("tollbench report needs the report extra: pip install 'tollbench[report]' (vl-convert-python)")
    if not output.parent.is_dir():
        _fail(f"{output}: directory {output.parent} does not exist")
    store = _open_store(db, create=False)
    try:
        try:
            chosen = select_runs(store, run_ids, since_day)
        except KeyError as exc:
            _fail(f"no run {exc.args[0]} in the database; `tollbench runs` lists them")
        if not chosen:
            _fail(f"no run started on or after {since_day}; `tollbench runs` lists them")
        page = build_report(store, chosen)
    finally:
        store.close()
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        _fail(f"{output}: cannot write the report ({exc.strerror})")
    size = len(page.encode("utf-8"))
    click.echo(
        f"wrote {output} ({len(chosen)} run{'s' if len(chosen) != 1 else ''}, {size / 1024:,.0f} KiB)",
        err=True,
    )
