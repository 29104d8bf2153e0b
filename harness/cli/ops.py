"""``tollbench resume``, ``reconcile``, ``export``, ``import``, ``rescore`` and ``reprice``: keeping spend
crash-proof, and checking a run's scores and costs again without paying.

Registered on the main group in :mod:`harness.cli.main` with ``cli.add_command(...)``. See docs/resume.md.

Exit codes as ``run``: 0 done; 1 error; 2 bad usage or configuration (no such run, a live run without
``--force``, a malformed bundle); 3 stopped at the budget; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from harness.cli.common import db_option
from harness.errors import ConfigError, DataError
from harness.run.startup import collector_paused

__all__ = ["export_cmd", "import_cmd", "reconcile", "reprice_cmd", "rescore_cmd", "resume"]


def _exit(code: int) -> Any:
    from harness.cli.common import _Exit

    return _Exit(code)


def _fail(message: str, code: int = 2) -> Any:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    return _exit(code)


def _open(db: str | None) -> Any:
    from harness.cli.common import _open_store

    return _open_store(db)


def _check_sim_url(sim_url: str | None) -> None:
    from harness.cli.common import check_sim_url

    if sim_url and (why := check_sim_url(sim_url)) is not None:
        raise _fail(why)


@click.command("resume")
@click.argument("run_id")
@click.option("--add-budget", metavar="USD", help="Raise the run's budget by USD before continuing.")
@db_option
@click.option("--json", "json_output", is_flag=True, help="Print the final report as JSON.")
@click.option("--sim-url", metavar="URL", help="For a simulated run: use the simulator running at URL.")
@click.option("--no-cache", is_flag=True, help="Do not answer from the response cache (answers are stored).")
@click.option("--force", is_flag=True, help="Take over a run that looks alive (fresh heartbeat).")
@click.option("-c", "--concurrency", type=int, help="Concurrent calls per model [default: as stored].")
@collector_paused
def resume(
    run_id: str,
    add_budget: str | None,
    db: str | None,
    json_output: bool,
    sim_url: str | None,
    no_cache: bool,
    force: bool,
    concurrency: int | None,
) -> None:
    """Continue RUN_ID, sending only the items that have no usable answer yet.

    \b
    Answers already paid for (scored or unusable) are never bought again; an answer bought but not
    recorded before a crash is re-scored from the database. Calls a crash left open stay counted at
    their worst case (see `tollbench reconcile`).
    """
    from harness.cli.common import _stdout
    from harness.cli.progress import ProgressDisplay
    from harness.pricing.money import MAX_BUDGET_USD, parse_usd, usd_to_nano
    from harness.report import print_run, run_report_dict
    from harness.run.plan import check_budget_usd
    from harness.run.resume import plan_resume, resume_sync

    _check_sim_url(sim_url)
    extra = 0
    if add_budget is not None:
        try:
            amount = parse_usd(add_budget)
            check_budget_usd(amount, "--add-budget")
            extra = usd_to_nano(amount)
        except ValueError as exc:
            raise _fail(f"--add-budget: {exc}") from None
        except ConfigError as exc:
            raise _fail(str(exc)) from None
    overrides: dict[str, Any] = {}
    if no_cache:
        overrides["use_cache"] = False
    if sim_url:
        overrides["sim_url"] = sim_url
    if concurrency is not None:
        if concurrency < 1:
            raise _fail("--concurrency must be at least 1")
        overrides["concurrency"] = concurrency
    store = _open_read(db)
    try:
        if extra:
            run = store.get_run(run_id)
            if run is not None and int(run["budget_nano"]) + extra > usd_to_nano(MAX_BUDGET_USD):
                raise _fail(
                    f"--add-budget {add_budget} would raise run {run_id}'s budget above the largest "
                    "tollbench can meter ($1,000,000,000)"
                )
        plan = plan_resume(store, run_id, force=force, suites=_preset_suites(store, run_id), **overrides)
        if sim_url and plan.plan.options.simulated:
            from harness.cli.common import probe_sim_url

            if (why := probe_sim_url(sim_url)) is not None:
                raise _fail(why)
        if sim_url and not plan.plan.options.simulated:
            raise _fail(f"run {run_id} is a live run; --sim-url is only for simulated runs")
        simulated = plan.plan.options.simulated
        click.echo(
            f"run {run_id}: {plan.done_units} of {plan.plan.total_units} units already answered, "
            f"{plan.recoverable_units} to re-score from stored answers, {plan.units_to_send} to send"
            + (" (SIMULATED)" if simulated else ""),
            err=True,
        )
        display = ProgressDisplay(sys.stderr, simulated=simulated)
        with display:
            outcome = resume_sync(
                store, plan, add_budget_nano=extra, on_progress=display.update, handle_signals=True
            )
        report = run_report_dict(store, run_id)
        if json_output:
            click.echo(json.dumps(report, indent=2))
        else:
            print_run(report, _stdout())
            for summary in report["config"].get("target_ci") or []:  # as `run` prints them
                click.echo(summary["line"])
        if outcome.errors:
            click.echo("Failed attempts:", err=True)
            for line in outcome.errors:
                click.echo(f"  {line}", err=True)
        if outcome.status == "budget_exhausted":
            click.echo(
                "Stopped at the budget: raise it with `tollbench resume RUN --add-budget USD`.", err=True
            )
        raise _exit(outcome.exit_code)
    finally:
        store.close()


@click.command("reconcile")
@click.argument("run_id")
@db_option
@click.option("--sim-url", metavar="URL", help="The simulator that served the run (its invoice is the bill).")
@click.option(
    "--grace",
    "grace_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Only calls older than this many seconds can be proven never to have arrived.",
)
@click.option("--force", is_flag=True, help="Reconcile even though a process may still be running the run.")
@click.option("--json", "json_output", is_flag=True, help="Print what was settled as JSON.")
def reconcile(
    run_id: str, db: str | None, sim_url: str | None, grace_s: float, force: bool, json_output: bool
) -> None:
    """Settle RUN_ID's open reservations (left by a crash) from the provider's bill.

    \b
    Today the bill is the simulator's invoice (--sim-url). A call on the invoice is settled at what it
    was billed; a call the invoice proves never arrived is settled at 0; any other stays open,
    counted at its worst case, and shown as unsettled by `show` and `costs`.
    """
    import math

    from harness.audit.reconcile import reconcile_run
    from harness.pricing.money import usd_str
    from harness.run.resume import run_activity

    _check_sim_url(sim_url)
    if not math.isfinite(grace_s) or grace_s < 0:
        raise _fail(f"--grace takes a number of seconds of 0 or more, got {grace_s}")
    store = _open_read(db)
    try:
        run = store.get_run(run_id)
        if run is None:
            raise _fail(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
        open_calls = store.open_reservations(run_id)
        if not open_calls:
            click.echo(f"run {run_id}: no open reservations; nothing to reconcile.", err=True)
            if json_output:
                click.echo(json.dumps({"run_id": run_id, "matched": 0, "absent": 0, "left_open": 0}))
            raise _exit(0)
        active, why = run_activity(run)
        if active and not force:
            raise _fail(
                f"run {run_id} is running ({why}); its open calls may still be in flight. Wait, or --force"
            )
        if not run["simulated"]:
            unsettled = sum(int(c["reserved_nano"]) for c in open_calls)
            raise _fail(
                f"run {run_id} is a live run: reconciling against provider usage data is not supported yet; "
                f"its {len(open_calls)} open reservations (${usd_str(unsettled)}) stay counted at their "
                "worst case"
            )
        if not sim_url:
            raise _fail("pass --sim-url URL of the simulator that served the run (its invoice is the bill)")
        from harness.sim import SimClient

        try:
            invoice = SimClient(sim_url).invoice()
        except OSError as exc:
            raise _fail(f"cannot read the invoice at {sim_url}: {exc}", 1) from None
        result = reconcile_run(store, run_id, invoice, grace_s=grace_s)
    finally:
        store.close()
    if json_output:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(
            f"run {run_id}: {result.matched} settled from the invoice (${usd_str(result.billed_nano)}), "
            f"{result.absent} never arrived (settled at $0), {result.left_open} still open; "
            f"committed spend down by ${usd_str(result.released_nano)}"
        )
    raise _exit(0)


@click.command("export")
@click.argument("run_id")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Bundle file.")
@db_option
def export_cmd(run_id: str, output: Path, db: str | None) -> None:
    """Write RUN_ID as a self-contained JSONL bundle (requests, answers, usage, prices, scores; no keys)."""
    from harness.store.bundle import export_to_file

    store = _open_read(db)
    try:
        try:
            summary = export_to_file(store, run_id, output)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(f"{output}: cannot write the bundle ({exc.strerror})", 1) from None
    finally:
        store.close()
    click.echo(
        f"exported run {run_id} to {output}: {summary.calls} calls, {summary.items} item results, "
        f"{summary.prices} prices",
        err=True,
    )


@click.command("import")
@click.argument("bundle", type=click.Path(path_type=Path))
@db_option
@click.option("--json", "json_output", is_flag=True, help="Print the imported run's report as JSON.")
def import_cmd(bundle: Path, db: str | None, json_output: bool) -> None:
    """Load a bundle written by `tollbench export` as a new run (marked imported; nothing is paid)."""
    from harness.cli.common import _stdout
    from harness.report import print_run, run_report_dict
    from harness.store.bundle import import_bundle

    store = _open(db)
    try:
        try:
            summary = import_bundle(store, bundle)
        except DataError as exc:
            raise _fail(str(exc)) from None
        report = run_report_dict(store, summary.run_id)
    finally:
        store.close()
    click.echo(
        f"imported run {summary.source_run_id} as {summary.run_id}: {summary.calls} calls, "
        f"{summary.items} item results",
        err=True,
    )
    if json_output:
        click.echo(json.dumps(report, indent=2))
    else:
        print_run(report, _stdout())


def _open_read(db: str | None) -> Any:
    """Open an existing database (a missing SQLite file is an error, never created)."""
    from harness.cli.common import _open_store

    return _open_store(db, create=False)


def _add_row(table: Any, *cells: Any) -> None:
    """A row of plain-text cells: data (models, suites) is never read as rich markup."""
    from rich.text import Text

    table.add_row(*(Text(str(c)) for c in cells))


def _signed_usd(nano: int) -> str:
    from harness.pricing.money import usd_str

    return ("-" if nano < 0 else "+" if nano > 0 else "") + "$" + usd_str(abs(nano))


def _exact_usd(nano: int) -> str:
    from harness.pricing.money import usd_str

    return "$" + usd_str(nano)


@click.command("rescore")
@click.argument("run_id")
@db_option
@click.option("--json", "json_output", is_flag=True, help="Print the results and every changed item as JSON.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The suites' data file, when the one the run read is not here (an imported run).",
)
def rescore_cmd(run_id: str, db: str | None, json_output: bool, data: Path | None) -> None:
    """Re-score RUN_ID's stored answers with today's scorers, for free.

    \b
    Nothing is sent, paid or written. Prompts are rebuilt from the run's stored options (suites,
    --data, --seed); works on imported runs (pass --data when the run's data file is not here). Per
    model and suite: accuracy as recorded, accuracy re-scored, and how many verdicts changed (--json
    lists them).
    """
    from harness.audit.rescore import rescore_run
    from harness.cli.common import _stdout

    store = _open_read(db)
    try:
        try:
            result = rescore_run(store, run_id, data=data)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
    finally:
        store.close()
    if json_output:
        click.echo(json.dumps(result.as_dict(), indent=2))
        raise _exit(0)
    from rich.markup import escape
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    sim = " (SIMULATED)" if result.simulated else ""
    imported = f" (imported from {result.imported_from})" if result.imported_from else ""
    table = Table(
        title=escape(f"run {run_id}{imported}: re-scored with today's scorers, nothing sent{sim}"),
        title_justify="left",
    )
    for col in ("model", "suite", "items", "answers", "scored", "recorded", "re-scored", "changed"):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for g in result.groups:
        scored = str(g.scored_before)
        if g.scored_after != g.scored_before:
            scored += f" -> {g.scored_after}"
        _add_row(
            table,
            g.model,
            g.suite,
            str(g.items),
            str(g.answers),
            scored,
            pct(g.accuracy_before),
            pct(g.accuracy_after),
            str(g.changed),
        )
    console = _stdout()
    console.print(table)
    answers = sum(g.answers for g in result.groups)
    if not answers:
        console.print("no stored answers to re-score (every item is not run or failed)")
    elif result.changed:
        console.print(f"{len(result.changed)} of {answers} verdicts changed (see --json for the items)")
    else:
        console.print(f"all {answers} verdicts as recorded")
    if result.total_prompt_mismatch:
        console.print(
            f"warning: {result.total_prompt_mismatch} answers were asked a prompt that differs from the "
            "one rendered here (other data or suite version); they were scored against today's prompt"
        )
    from_text = sum(g.from_item_text for g in result.groups)
    if from_text:
        console.print(
            f"note: {from_text} answers have no stored call answer; their finish reason was inferred "
            "from the recorded item"
        )


@click.command("reprice")
@click.argument("run_id")
@db_option
@click.option(
    "--prices",
    "prices",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Price override file (TOML, repeatable), merged as `run --prices` does; see docs/pricing.md.",
)
@click.option("--json", "json_output", is_flag=True, help="Print per model costs as JSON.")
def reprice_cmd(run_id: str, db: str | None, prices: tuple[Path, ...], json_output: bool) -> None:
    """Recompute RUN_ID's costs from its calls' stored usage with today's prices.

    \b
    The table is the one `run` loads (bundled rows, your prices file, each --prices FILE). Per model:
    recorded, repriced and the difference, exact to the nano-dollar. Calls whose usage is unknown
    (still reserved, or charged their reservation) are counted apart, not repriced; cached answers
    cost 0 here and show what they would cost to reproduce. Nothing is written.
    """
    from harness.audit.reprice import reprice_run
    from harness.cli.common import _stdout

    store = _open_read(db)
    try:
        try:
            result = reprice_run(store, run_id, prices=prices)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
    finally:
        store.close()
    if json_output:
        click.echo(json.dumps(result.as_dict(), indent=2))
        raise _exit(0)
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    sim = " (SIMULATED: no real money)" if result.simulated else ""
    table = Table(title=escape(f"run {run_id}: repriced with today's price table{sim}"), title_justify="left")
    for col in ("model", "calls", "recorded", "repriced", "difference", "usage unknown", "cached"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m in result.models:
        unknown = "0"
        if m.unknown_calls:
            unknown = f"{m.unknown_calls} ({_exact_usd(m.unknown_nano)}"
            unknown += f", {m.open_calls} open)" if m.open_calls else ")"
        cached = f"{m.cached_calls} ({_exact_usd(m.reproduce_nano)} to reproduce)" if m.cached_calls else "0"
        _add_row(
            table,
            m.model,
            str(m.priced_calls),
            _exact_usd(m.recorded_nano),
            _exact_usd(m.repriced_nano),
            _signed_usd(m.difference_nano),
            unknown,
            cached,
        )
    console = _stdout()
    console.print(table)
    recorded, repriced = result.total("recorded_nano"), result.total("repriced_nano")
    console.print(
        f"total {_exact_usd(recorded)} recorded, {_exact_usd(repriced)} repriced "
        f"({_signed_usd(repriced - recorded)}){sim}"
    )
    if result.total("unknown_calls"):
        console.print(
            f"{result.total('unknown_calls')} calls have no known usage and are not repriced: they count "
            f"{_exact_usd(result.total('unknown_nano'))} at their reservation"
        )
    for m in result.models:
        if m.no_price_calls:
            console.print(
                Text(
                    f"{m.model}: {m.no_price_calls} calls not repriced "
                    f"(recorded {_exact_usd(m.no_price_nano)}): {m.no_price}"
                )
            )


def _preset_suites(store: Any, run_id: str) -> list[Any] | None:
    """A preset run's suites (``tollbench run aa``), loaded again from its data directory; None for
    other runs (their suites load by name from the stored options)."""
    run = store.get_run(run_id)
    stored = (run.get("config") or {}).get("preset") if run is not None else None
    if not isinstance(stored, dict):
        return None
    from suites.presets import get_preset, load_preset_suites

    preset = get_preset(str(stored.get("name")))
    if preset is None:
        raise _fail(f"run {run_id} ran the preset {stored.get('name')!r}, which this tollbench does not have")
    data_dir = Path(stored["data_dir"]) if stored.get("data_dir") else None
    options = dict(stored.get("suite_options") or {})
    return list(load_preset_suites(preset, data_dir=data_dir, options=options))
