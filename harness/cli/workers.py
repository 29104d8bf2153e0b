"""``tollbench worker`` (join a run by its id alone) and ``tollbench pool`` (budgets shared by runs),
plus the workers section of ``show``. See docs/workers.md."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
import click

from harness.cli.common import (
    _cell,
    _Exit,
    _fail,
    _open_store,
    _parse_budget,
    _stdout,
    check_sim_url,
    db_option,
    probe_sim_url,
)
from harness.errors import ConfigError
from harness.run.startup import collector_paused

__all__ = ["pool", "print_workers", "worker", "workers_dict"]


def lease_option(f: Any) -> Any:
    """``--lease SECONDS``: how long this worker's claims last without a heartbeat."""
    return click.option(
        "--lease",
        "lease_s",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds a unit this worker claimed stays its own without a heartbeat (another worker "
        "takes it after that).",
    )(f)


@click.command("worker")
@click.argument("run_id")
@db_option
@click.option("-c", "--concurrency", type=int, help="Concurrent calls per model [default: the run's].")
@click.option("--sim-url", help="Send to the simulator already running at this URL (a simulated run).")
@lease_option
@click.option("--json", "json_output", is_flag=True, help="Print the final report as JSON.")
@collector_paused
def worker(
    run_id: str,
    db: str | None,
    concurrency: int | None,
    sim_url: str | None,
    lease_s: float,
    json_output: bool,
) -> None:
    """Join RUN_ID as one more worker: buy a share of its units, under its budget (and pool).

    \b
    The plan (suites, models, options) is the one stored on the run. Start one per machine against
    the same PostgreSQL --db; each unit is bought by one worker. Exit codes as for `run`.
    """
    from harness.cli.progress import ProgressDisplay
    from harness.report import print_run, run_report_dict
    from harness.run.claims import plan_join
    from harness.run.session import run as run_plan

    if sim_url and (why := check_sim_url(sim_url)) is not None:
        _fail(why)
    if concurrency is not None and concurrency < 1:
        _fail("--concurrency must be at least 1")
    if lease_s <= 0:
        _fail("--lease must be more than 0 seconds")
    overrides: dict[str, Any] = {"lease_s": lease_s}
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if sim_url:
        overrides["sim_url"] = sim_url
    store = _open_store(db, create=False)
    try:
        plan = plan_join(store, run_id, **overrides)
        if sim_url and not plan.options.simulated:
            _fail(f"run {run_id} is a live run; --sim-url is only for simulated runs")
        if sim_url and (why := probe_sim_url(sim_url)) is not None:
            _fail(why)
        simulated = plan.options.simulated
        click.echo(
            f"run {run_id}: joining as a worker ({plan.total_units} units in the run)"
            + (" (SIMULATED)" if simulated else ""),
            err=True,
        )
        display = ProgressDisplay(sys.stderr, simulated=simulated)

        async def go() -> Any:
            return await run_plan(plan, store, on_progress=display.update, handle_signals=True)

        with display:
            outcome = anyio.run(go)
        report = run_report_dict(store, run_id)
        if json_output:
            click.echo(json.dumps(report, indent=2))
        else:
            print_run(report, _stdout())
        raise _Exit(outcome.exit_code)
    finally:
        store.close()


@click.group("pool")
def pool() -> None:
    """Budget pools: one hard cap shared by several runs (`run ... --pool NAME`)."""


@pool.command("create")
@click.argument("name")
@click.option("--budget", metavar="USD", required=True, help="The pool's hard cap across all its runs.")
@db_option
def pool_create(name: str, budget: str, db: str | None) -> None:
    """Create pool NAME with a budget of USD."""
    from harness.budget.pools import create_pool
    from harness.pricing.money import format_usd, usd_to_nano

    amount = _parse_budget(budget)
    assert amount is not None
    store = _open_store(db)
    try:
        create_pool(store, name, usd_to_nano(amount))
    except ConfigError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"pool {name.strip()}: budget {format_usd(usd_to_nano(amount))}")


@pool.command("show")
@click.argument("name")
@db_option
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def pool_show(name: str, db: str | None, json_output: bool) -> None:
    """Show pool NAME: budget, spent, committed (spent + open reservations), and its runs."""
    from rich.table import Table

    from harness.budget.pools import pool_report
    from harness.pricing.money import format_usd, usd_str

    store = _open_store(db, create=False)
    try:
        report = pool_report(store, name)
    except ConfigError as exc:
        _fail(str(exc))
    finally:
        store.close()
    if json_output:
        out = {
            "name": report["name"],
            "budget_usd": usd_str(report["budget_nano"]),
            "spent_usd": usd_str(report["spent_nano"]),
            "committed_usd": usd_str(report["committed_nano"]),
            "unsettled_usd": usd_str(report["committed_nano"] - report["spent_nano"]),
            "runs": [
                {
                    "id": r["id"],
                    "status": r["status"],
                    "simulated": bool(r["simulated"]),
                    "budget_usd": usd_str(int(r["budget_nano"])),
                    "spent_usd": usd_str(int(r["spent_nano"])),
                    "committed_usd": usd_str(int(r["committed_nano"])),
                }
                for r in report["runs"]
            ],
        }
        click.echo(json.dumps(out, indent=2))
        return
    console = _stdout()
    console.print(
        f"pool {report['name']}: spent {format_usd(report['spent_nano'])}, committed "
        f"{format_usd(report['committed_nano'])} of {format_usd(report['budget_nano'])} "
        f"({len(report['runs'])} runs)"
    )
    if report["runs"]:
        table = Table(title="runs")
        for col in ("run", "status", "budget", "spent", "committed"):
            table.add_column(col)
        for r in report["runs"]:
            table.add_row(
                *map(
                    _cell,
                    (
                        r["id"],
                        r["status"] + (" (SIMULATED)" if r["simulated"] else ""),
                        format_usd(int(r["budget_nano"])),
                        format_usd(int(r["spent_nano"])),
                        format_usd(int(r["committed_nano"])),
                    ),
                )
            )
        console.print(table)


def workers_dict(store: Any, run_id: str) -> dict[str, Any] | None:
    """The run's workers and units for ``show`` (None for a run without claims: an older tollbench)."""
    from harness.run.claims import worker_is_live
    from harness.store.workers import worker_progress

    progress = worker_progress(store, run_id)
    if not progress["total"]:
        return None
    now = datetime.now(UTC)
    rows = []
    for w in progress["workers"]:
        beat = w["heartbeat_at"]
        lease = w["lease_until"]
        rows.append(
            {
                "worker": w["worker_id"][:12],
                "host": w["host"],
                "pid": w["pid"],
                "status": w["status"]
                if w["ended_at"]
                else ("running" if worker_is_live(w, now) else "silent"),
                "units_done": w["done"],
                "units_held": w["held"],
                "lease_s": w["lease_s"],
                "lease_until": lease.isoformat() if lease else None,
                "heartbeat_at": beat.isoformat() if beat else None,
                "heartbeat_age_s": round((now - beat).total_seconds(), 1) if beat else None,
            }
        )
    units = progress["units"]
    return {
        "units_total": progress["total"],
        "units_done": units.get("done", 0),
        "units_claimed": units.get("claimed", 0),
        "units_free": units.get("free", 0),
        "workers": rows,
    }


def print_workers(info: dict[str, Any] | None, console: Any) -> None:
    """The workers table of ``show``: per worker its units done and held, lease and heartbeat."""
    if info is None:
        return
    from rich.table import Table

    console.print(
        f"units: {info['units_done']} of {info['units_total']} done, {info['units_claimed']} claimed, "
        f"{info['units_free']} free; {len(info['workers'])} workers"
    )
    table = Table(title="workers")
    for col in ("worker", "host", "pid", "status", "done", "held", "lease until", "heartbeat"):
        table.add_column(col)
    for w in info["workers"]:
        age = w["heartbeat_age_s"]
        table.add_row(
            *map(
                _cell,
                (
                    w["worker"],
                    w["host"],
                    w["pid"],
                    w["status"],
                    w["units_done"],
                    w["units_held"],
                    (w["lease_until"] or "")[:19],
                    "" if age is None else f"{age:.0f}s ago",
                ),
            )
        )
    console.print(table)
