"""The ``tollbench`` command line: a thin layer that parses, calls the library and formats.

Exit codes: 0 done; 1 error; 2 bad usage or configuration; 3 stopped at the budget; 130 interrupted.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click

from harness import __version__
from harness.errors import ConfigError, HarnessError, StorageError
from harness.run.startup import collector_paused

__all__ = ["cli", "main"]

from harness.cli.batch import batch_options, batch_overrides
from harness.cli.common import (
    DEFAULT_SIM_BUDGET,
    _cell,
    _corrupt_message,
    _corruption,
    _Exit,
    _fail,
    _one_line,
    _open_store,
    _parse_budget,
    _stdout,
    check_sim_url,
    data_dir_option,
    db_option,
    preset_of,
    probe_sim_url,
)
from harness.cli.workers import lease_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tollbench")
def cli() -> None:
    """tollbench: run LLM benchmarks under a hard dollar cap, and know what every run cost.

    \b
    Try it offline, on the built-in simulator:
      tollbench run demo -m openai/o4-mini -m anthropic/claude-haiku-4-5-thinking --budget 5 --sim
    \b
    Then look at what it cost:
      tollbench runs
      tollbench show RUN_ID
      tollbench costs --by model,suite
    """


@cli.command()
@click.argument("suites", nargs=-1, required=True)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="PROVIDER/MODEL",
    help="Model to run, e.g. openai/o3-mini or anthropic/claude-sonnet-4-5 (repeatable).",
)
@click.option("--budget", metavar="USD", help="Hard ceiling on the run's spend (required for live runs).")
@click.option("-c", "--concurrency", default=16, show_default=True, help="Concurrent calls per model.")
@click.option("--limit", type=int, help="Run a seeded, stratified sample of N items per suite.")
@click.option("--repeats", type=int, help="Samples per item [default: the suite's usual number].")
@click.option("--seed", default=0, show_default=True, help="Seed for sampling and option shuffles.")
@click.option(
    "--max-output-tokens", type=int, help="Output limit per call, reasoning included [default 16384]."
)
@db_option
@click.option("--sim", is_flag=True, help="Run against the built-in simulator (no keys, no real money).")
@click.option("--json", "json_output", is_flag=True, help="Print the final report as JSON.")
@click.option(
    "--prices",
    "prices",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Price override file (TOML, repeatable); see docs/pricing.md.",
)
@click.option("--models-file", type=click.Path(path_type=Path), help="Model alias file (TOML).")
@click.option("--base-url", help="Base URL of an OpenAI-compatible server for openai/ models.")
@click.option("--data", type=click.Path(path_type=Path), help="Local dataset file (parquet, JSONL or CSV).")
@data_dir_option
@click.option("--scorer", help="For jsonl suites: exact, mc, math or regex.")
@click.option("--prompt-field", help="For jsonl suites: the prompt field [default prompt].")
@click.option("--answer-field", help="For jsonl suites: the answer field [default answer].")
@click.option(
    "--suite-option",
    "suite_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Another suite option (jsonl: pattern, id_field, choices_field, stratum_field, repeats; "
    "livecodebench: release, start, end, unsafe_sandbox; scicode: test_data, gold, timeout, ...; "
    "a preset's suites: SUITE.KEY=VALUE).",
)
@click.option("--attempt-timeout", default=900.0, show_default=True, help="Seconds per attempt.")
@click.option("--stall-timeout", default=120.0, show_default=True, help="Seconds without a byte mid-stream.")
@click.option("--max-attempts", default=6, show_default=True, help="Attempts per item, retries included.")
@click.option("--run-id", help="Use this run id; if the run exists, join it and share its budget.")
@click.option(
    "--sim-speed",
    default=0.02,
    show_default=True,
    help="Simulator latency multiplier (0 = none, 1 = the profiles' real latency).",
)
@click.option("--sim-profiles", type=click.Path(path_type=Path), help="Simulator profile file (TOML).")
@click.option("--sim-faults", type=click.Path(path_type=Path), help="Simulator fault file (TOML/JSON).")
@click.option(
    "--sim-url",
    metavar="URL",
    help="Use a simulator already running (tollbench sim serve) at URL; implies --sim.",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Start even when the forecast's 95% upper bound exceeds the budget (stop at the budget).",
)
@click.option(
    "--target-ci",
    type=float,
    metavar="HALF_WIDTH",
    help="Stop each model and suite once its 95% interval is within +-HALF_WIDTH (e.g. 0.02).",
)
@click.option(
    "--ci-method",
    type=click.Choice(["betting", "eb"]),
    default="betting",
    show_default=True,
    help="The anytime-valid interval --target-ci stops on (docs/statistics.md).",
)
@click.option(
    "--control",
    metavar="PROVIDER/MODEL",
    help="With --target-ci: a cheap model answers every item first (or its earlier run is reused) and "
    "narrows the interval as a control variate; `history`: item difficulty fitted on other models' "
    "earlier runs of the suite instead (buys nothing).",
)
@click.option(
    "--split",
    metavar="MODEL=FRACTION,...",
    help="Budget shares per model [default: equal shares when several models run].",
)
@click.option("--no-cache", is_flag=True, help="Do not answer from the response cache (answers are stored).")
@click.option(
    "--judge",
    metavar="PROVIDER/MODEL",
    help="LLM judge of judged suites (hle) [default: openai/gpt-4o-2024-08-06, temperature 0].",
)
@click.option("--pool", help="Also draw the run's spend from this budget pool (`tollbench pool create`).")
@lease_option
@batch_options
@collector_paused
def run(
    suites: tuple[str, ...],
    models: tuple[str, ...],
    budget: str | None,
    concurrency: int,
    limit: int | None,
    repeats: int | None,
    seed: int,
    max_output_tokens: int | None,
    db: str | None,
    sim: bool,
    json_output: bool,
    prices: tuple[Path, ...],
    models_file: Path | None,
    base_url: str | None,
    data: Path | None,
    data_dir: Path | None,
    scorer: str | None,
    prompt_field: str | None,
    answer_field: str | None,
    suite_option: tuple[str, ...],
    attempt_timeout: float,
    stall_timeout: float,
    max_attempts: int,
    run_id: str | None,
    sim_speed: float,
    sim_profiles: Path | None,
    sim_faults: Path | None,
    sim_url: str | None,
    allow_partial: bool,
    target_ci: float | None,
    ci_method: str,
    control: str | None,
    split: str | None,
    no_cache: bool,
    judge: str | None,
    pool: str | None,
    lease_s: float,
    **batch_kw: Any,
) -> None:
    """Run SUITES against models under a hard dollar cap.

    \b
    Exit codes: 0 done, 1 error, 2 bad usage or configuration, 3 stopped at the budget,
    130 interrupted (Ctrl-C; in-flight calls are settled first).
    """
    from harness.cli.progress import ProgressDisplay
    from harness.report import print_run, run_report_dict
    from harness.run.plan import check_smallest_call
    from harness.run.retry import RetryPolicy
    from harness.run.runner import RunOptions, prepare_run
    from harness.run.session import run as run_plan

    if sim_url:
        if (why := check_sim_url(sim_url)) is not None:
            _fail(why)
        sim = True
    budget_usd = _parse_budget(budget)
    if budget_usd is None:
        if not sim:
            _fail("--budget USD is required for live runs (the hard ceiling on what this run may spend).")
        budget_usd = DEFAULT_SIM_BUDGET
    if max_attempts < 1:
        _fail("--max-attempts must be at least 1")
    if lease_s <= 0:
        _fail("--lease must be more than 0 seconds")
    suite_options = {
        k: v
        for k, v in {"scorer": scorer, "prompt_field": prompt_field, "answer_field": answer_field}.items()
        if v is not None
    }
    for pair in suite_option:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--suite-option takes KEY=VALUE, got {pair!r}")
        suite_options[key.strip()] = value
    preset = preset_of(suites, data, data_dir)
    run_suites: Sequence[Any] = suites
    if preset is not None:  # each suite loaded with its own data, at the study's settings
        from suites.presets import load_preset_suites

        run_suites = load_preset_suites(preset, data_dir=data_dir, options=suite_options)
        preset_config = {
            "name": preset.name,
            "data_dir": str(data_dir.expanduser().resolve()) if data_dir is not None else None,
            "suite_options": dict(suite_options),
        }
        suite_options = {}
        max_output_tokens = max_output_tokens or preset.max_output_tokens
        judge = judge or preset.judge
    options = RunOptions(
        suites=run_suites,
        models=models,
        budget_usd=budget_usd,
        concurrency=concurrency,
        limit=limit,
        repeats=repeats,
        seed=seed,
        max_output_tokens=max_output_tokens,
        simulated=sim,
        data=data,
        suite_options=suite_options,
        prices=prices,
        models_file=models_file,
        base_url=base_url,
        attempt_timeout_s=attempt_timeout,
        stall_timeout_s=stall_timeout,
        retry=RetryPolicy(max_attempts=max_attempts),
        run_id=run_id,
        sim_speed=sim_speed,
        sim_profiles=sim_profiles,
        sim_faults=sim_faults,
        sim_url=sim_url,
        target_ci=target_ci,
        ci_method=ci_method,
        control=control,
        use_cache=not no_cache,
        judge=judge,
        pool=pool,
        lease_s=lease_s,
        **batch_overrides(**batch_kw),
    )
    plan = prepare_run(options)  # ConfigError -> exit 2 before anything is written
    check_smallest_call(plan)
    if sim_url and (why := probe_sim_url(sim_url)) is not None:
        _fail(why)
    if split:
        from dataclasses import replace

        from harness.budget.split import parse_split

        plan.options = replace(options, split=parse_split(split, list(plan.models)))
    store = _open_store(db)
    try:
        # Sequential sampling is meant to stop early: the full-run forecast is not a reason to refuse.
        forecast = _check_forecast(
            plan, store, budget_usd, sim=sim, allow_partial=allow_partial or target_ci is not None
        )
        if plan.control is not None:
            plan = _run_control_first(plan, store, budget_usd, sim)
            budget_usd = plan.options.budget_usd
        display = ProgressDisplay(sys.stderr, simulated=sim)

        def started(rid: str) -> None:
            tag = " (SIMULATED)" if sim else ""
            click.echo(f"run {rid}: {plan.total_units} calls planned, budget ${budget_usd}{tag}", err=True)
            _record_forecast(store, rid, forecast)
            if preset is not None:  # what `resume` loads the preset's suites from
                store.update_run_config(rid, "preset", preset_config)

        async def go() -> Any:
            return await run_plan(
                plan, store, on_progress=display.update, on_start=started, handle_signals=True
            )

        with display:
            outcome = anyio.run(go)
        report = run_report_dict(store, outcome.run_id)
        if preset is not None:
            from harness.report import preset_summary

            report["preset"] = preset_summary(report, preset)
        if json_output:
            click.echo(json.dumps(report, indent=2))
        else:
            print_run(report, _stdout())
            if preset is not None:
                from harness.report import print_preset

                print_preset(report["preset"], _stdout())
            for summary in report["config"].get("target_ci") or []:
                click.echo(summary["line"])
        _echo_errors(outcome.errors)
        if outcome.status == "budget_exhausted":
            why = f" ({outcome.stop})" if outcome.stop else ""
            click.echo(f"Stopped at the budget{why}: the items not run are recorded as not run.", err=True)
        raise _Exit(outcome.exit_code)
    finally:
        store.close()


def _history_note(h: dict[str, Any]) -> str:
    rho = h.get("correlation")
    return (
        f"at its correlation {'n/a' if rho is None else f'{rho:.2f}'} it is forecast to need "
        f"~{h['items_with']:,} items, the {h['without']} interval alone ~{h['items_without']:,}"
    )


def _run_control_first(plan: Any, store: Any, budget_usd: Decimal, sim: bool) -> Any:
    """--control: reuse the control model's earlier run on every suite, or run it now (inside the same
    budget); return the plan with the controls filled and the budget that is left."""
    from dataclasses import replace

    from harness.pricing.money import nano_to_usd
    from harness.run.control import HISTORY, MIN_HISTORY_MODELS, control_options, missing_controls
    from harness.run.runner import prepare_run
    from harness.run.session import run as run_plan

    missing = missing_controls(store, plan)
    for suite, info in plan.control_runs.items():
        if info.get("history"):
            h = info["history"]
            unused = "" if h.get("used", True) else f"; not used: {_history_note(h)}"
            click.echo(
                f"control x {suite}: item difficulty from history ({len(h['models'])} models, "
                f"runs {', '.join(h['runs'])}){unused}",
                err=True,
            )
        else:
            click.echo(f"control {plan.control} x {suite}: reusing run {info['run_id']}", err=True)
    if missing and plan.control == HISTORY:
        _fail(
            f"--control history: fewer than {MIN_HISTORY_MODELS} other models have results on "
            f"{', '.join(missing)} in {store.label} (same data and suite options)"
        )
    left = budget_usd
    if missing:
        base = control_options(plan.options, plan.control)
        opts = replace(base, suites=[plan.suites[name] for name in missing], budget_usd=budget_usd)
        control_plan = prepare_run(opts)
        click.echo(
            f"control {plan.control}: {control_plan.total_units} calls on every item of "
            f"{', '.join(missing)} first",
            err=True,
        )
        outcome = anyio.run(lambda: run_plan(control_plan, store))
        row = store.get_run(outcome.run_id)
        spent = int(row["spent_nano"]) if row else 0
        left = budget_usd - nano_to_usd(spent)
        if outcome.status != "done":
            _fail(f"the control run {outcome.run_id} ended {outcome.status}; the expensive model was not run")
        still = missing_controls(store, plan)
        if still:
            _fail(f"the control run {outcome.run_id} did not answer every item of {', '.join(still)}")
        for suite in missing:
            plan.control_runs[suite]["reused"] = False
        click.echo(f"control run {outcome.run_id}: spent ${nano_to_usd(spent)}; ${left} left", err=True)
    if left <= 0:
        _fail("the control run used the whole budget; raise --budget")
    plan.options = replace(plan.options, budget_usd=left)
    return plan


def _echo_errors(errors: list[str]) -> None:
    """Name the errors of a run's failed attempts (type, message, count, what to do) at its end."""
    if errors:
        click.echo("Failed attempts:", err=True)
        for line in errors:
            click.echo(f"  {line}", err=True)


def _check_forecast(plan: Any, store: Any, budget_usd: Decimal, *, sim: bool, allow_partial: bool) -> Any:
    """Before spending: refuse (exit 2), or ask on a terminal, when the forecast's 95% upper bound does
    not fit the budget. Returns the forecast."""
    from harness.forecast.estimate import check_budget, forecast_plan
    from harness.pricing.money import usd_to_nano

    forecast = forecast_plan(plan, store, simulated=sim)
    verdict = check_budget(forecast, usd_to_nano(budget_usd), allow_partial=allow_partial)
    if verdict.ok:
        if verdict.message:
            click.echo(f"Warning: {verdict.message}", err=True)
        return forecast
    if sys.stdin.isatty() and sys.stderr.isatty():
        if click.confirm(f"{verdict.message}. Start anyway and stop at the budget?", default=False, err=True):
            return forecast
        raise _Exit(2)
    _fail(verdict.message)


def _record_forecast(store: Any, run_id: str, forecast: Any) -> None:
    """Keep the forecast made before spending in the run's config (``config["forecast"]``, what
    ``tollbench report`` draws against the actual spend); a joined run keeps its first one."""
    run = store.get_run(run_id)
    if run is not None and "forecast" not in (run.get("config") or {}):
        store.update_run_config(run_id, "forecast", forecast.as_dict())


@cli.command()
@db_option
@click.option("--json", "json_output", is_flag=True, help="JSON list.")
@click.option("--csv", "csv_output", is_flag=True, help="CSV with a header row.")
def runs(db: str | None, json_output: bool, csv_output: bool) -> None:
    """List runs, newest first: id, started, suites, models, status, budget, spent, simulated."""
    from harness.report import print_runs, runs_rows

    store = _open_store(db, create=False)
    try:
        rows = runs_rows(store)
    finally:
        store.close()
    if json_output:
        click.echo(json.dumps(rows, indent=2))
    elif csv_output:
        _write_csv(rows)
    else:
        print_runs(rows, _stdout())


@cli.command()
@click.argument("run_id")
@db_option
@click.option("--calls", is_flag=True, help="Also list every call (attempt).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def show(run_id: str, db: str | None, calls: bool, json_output: bool) -> None:
    """Show one run: status, spend, and per model and suite the score and cost."""
    from harness.cli.workers import print_workers, workers_dict
    from harness.report import print_run, run_report_dict

    store = _open_store(db, create=False)
    try:
        if store.get_run(run_id) is None:
            _fail(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
        report = run_report_dict(store, run_id)
        call_rows = [_jsonable(c) for c in store.calls(run_id)] if calls else None
        workers = workers_dict(store, run_id)
    finally:
        store.close()
    if json_output:
        if workers is not None:
            report["workers"] = workers
        if call_rows is not None:
            report["calls"] = call_rows
        click.echo(json.dumps(report, indent=2, default=str))
        return
    console = _stdout()
    print_run(report, console)
    for summary in report["config"].get("target_ci") or []:  # --target-ci: n of N, interval, control
        click.echo(summary["line"])
    print_workers(workers, console)
    if call_rows is not None:
        from rich.table import Table

        from harness.pricing.money import format_usd

        table = Table(title="calls")
        for col in (
            "model",
            "suite",
            "item",
            "rep",
            "att",
            "status",
            "in",
            "out",
            "cost",
            "request id",
            "error",
        ):
            table.add_column(col)
        for c in call_rows:
            cost = c.get("cost_nano")
            table.add_row(
                *map(
                    _cell,
                    (
                        c["model"],
                        c["suite"],
                        c["item_id"],
                        c["repeat"],
                        c["attempt"],
                        c["status"],
                        (c.get("input_uncached") or 0) + (c.get("cache_read") or 0),
                        c.get("output_tokens") or 0,
                        "reserved" if cost is None else format_usd(int(cost), 6),
                        c.get("request_id") or "",
                        c.get("error_type") or "",
                    ),
                )
            )
        console.print(table)


def _parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{flag}: expected a date like 2026-11-28, got {value!r}")


@cli.command()
@db_option
@click.option("--by", default="model", show_default=True, help="Group by: run, model, suite, day, provider.")
@click.option("--since", help="From this date (UTC, inclusive).")
@click.option("--until", help="Up to this date (UTC, inclusive).")
@click.option("--run", "run_id", help="Only this run.")
@click.option("--json", "json_output", is_flag=True)
@click.option("--csv", "csv_output", is_flag=True)
def costs(
    db: str | None,
    by: str,
    since: str | None,
    until: str | None,
    run_id: str | None,
    json_output: bool,
    csv_output: bool,
) -> None:
    """What past runs cost, grouped. Simulated spend is tagged and never mixed silently with real."""
    from harness.report import cost_rows, print_costs

    keys = [k.strip() for k in by.split(",") if k.strip()]
    allowed = {"run", "model", "suite", "day", "provider"}
    bad = [k for k in keys if k not in allowed]
    if not keys or bad:
        _fail(f"--by takes a comma list of {', '.join(sorted(allowed))}; got {by!r}")
    since_day, until_day = _parse_date(since, "--since"), _parse_date(until, "--until")
    store = _open_store(db, create=False)
    try:
        rows = cost_rows(store, by=keys, since=since_day, until=until_day, run_id=run_id)
    finally:
        store.close()
    if json_output:
        click.echo(json.dumps(rows, indent=2, default=str))
    elif csv_output:
        _write_csv(rows)
    else:
        print_costs(rows, keys, _stdout())


@cli.command()
@click.argument("model", required=False)
@click.option("--prices", "prices", multiple=True, type=click.Path(path_type=Path), help="Override file(s).")
@click.option("--json", "json_output", is_flag=True)
def prices(model: str | None, prices: tuple[Path, ...], json_output: bool) -> None:
    """Show the price table (USD per 1M tokens), or the rows matching MODEL."""
    from rich.table import Table

    from harness.pricing.table import PriceTable

    table = PriceTable.load(prices)
    query = model.split("/", 1)[1] if model and "/" in model else model
    if model and model in table.providers():  # `tollbench prices deepseek`: that provider's rows
        rows = [r for r in table.rows() if r.provider == model]
    else:
        rows = table.find(query) if query else table.rows()
    if model and not rows:
        _fail(f"no price for {model!r}. Add one with --prices FILE (see docs/pricing.md).")
    if json_output:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
        return
    t = Table(title=f"prices (USD per 1M tokens; table {table.sha256[:12]})")
    for col in (
        "provider",
        "model",
        "from",
        "input",
        "cached in",
        "5m write",
        "1h write",
        "output",
        "tiers",
        "source",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(
            *map(
                _cell,
                (
                    r.provider,
                    r.model,
                    r.effective_from or "-",
                    r.input,
                    _dec(r.cached_input),
                    _dec(r.cache_write_5m),
                    _dec(r.cache_write_1h),
                    r.output,
                    ", ".join(f">{tier.threshold:,}" for tier in r.tiers) or "-",
                    r.source_url,
                ),
            )
        )
    _stdout().print(t)


def _dec(value: Decimal | None) -> str:
    return "-" if value is None else str(value)


@cli.command(name="models")
@click.argument("query", required=False)
@click.option("--models-file", type=click.Path(path_type=Path), help="Model alias file (TOML).")
@click.option("--prices", "prices", multiple=True, type=click.Path(path_type=Path), help="Override file(s).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def models_cmd(
    query: str | None, models_file: Path | None, prices: tuple[Path, ...], json_output: bool
) -> None:
    """List the models tollbench can run: provider, id, price row, simulator profile and aliases.

    QUERY keeps the rows whose id, provider or alias contains it. Every listed model runs on the
    built-in simulator (``--sim``); local servers (vllm/, llamacpp/, ollama/) take any model id and a
    price of your own (docs/providers.md).
    """
    from rich.table import Table

    from harness.cli.catalog import catalog

    rows = catalog(prices=prices, models_file=models_file)
    if query:
        q = query.lower()
        rows = [
            r
            for r in rows
            if q in r["id"].lower() or q == r["provider"] or any(q in a.lower() for a in r["aliases"])
        ]
        if not rows:
            _fail(f"no model matches {query!r} (see `tollbench models`)")
    if json_output:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    t = Table(title=f"models ({len(rows)}; prices USD per 1M tokens, input / output)")
    for col in ("provider", "model", "price", "simulator", "aliases"):
        t.add_column(col)
    for r in rows:
        price = f"{r['price']['input']} / {r['price']['output']}"
        price += " (tiers)" if r["price"]["tiers"] else ""
        cells = (r["provider"], r["id"], price, r["simulator"] or "-", ", ".join(r["aliases"]))
        t.add_row(*map(_cell, cells))
    _stdout().print(t)


@cli.command(name="suites")
@click.option("--json", "json_output", is_flag=True)
def suites_cmd(json_output: bool) -> None:
    """List the suites with item counts, source, license and access notes, and the presets."""
    from dataclasses import asdict

    from rich.table import Table

    from suites import list_suites
    from suites.presets import PRESETS

    infos = list_suites()
    presets: list[dict[str, Any]] = [
        {
            "name": p.name,
            "preset": True,
            "suites": [{"name": s.name, "items": s.study_items, "repeats": s.repeats} for s in p.suites],
            "max_output_tokens": p.max_output_tokens,
            "judge": p.judge,
            "description": p.description,
        }
        for p in PRESETS.values()
    ]
    if json_output:
        click.echo(json.dumps([asdict(i) for i in infos] + presets, indent=2, default=str))
        return
    t = Table()
    cols = list(asdict(infos[0]).keys()) if infos else []
    for c in cols:
        t.add_column(c)
    for i in infos:
        t.add_row(*[_cell(v) for v in asdict(i).values()])
    _stdout().print(t)
    pt = Table(title="presets (tollbench run PRESET --data-dir DIR)", title_justify="left")
    for c in ("name", "suites (items x repeats)", "settings", "description"):
        pt.add_column(c)
    for p in presets:
        listed = ", ".join(f"{s['name']} {s['items']:,}x{s['repeats']}" for s in p["suites"])
        settings = f"{p['max_output_tokens']:,} output tokens; judge {p['judge']}"
        pt.add_row(*map(_cell, (p["name"], listed, settings, p["description"])))
    _stdout().print(pt)


@cli.group()
def sim() -> None:
    """The built-in provider simulator."""


@sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--profiles", type=click.Path(path_type=Path), help="Profile file (TOML).")
@click.option("--seed", default=0, show_default=True)
@click.option("--speed", default=1.0, show_default=True, help="Latency multiplier (0 = none).")
@click.option("--answer-key", type=click.Path(path_type=Path), help="Answer key (JSONL).")
@click.option("--allow-non-loopback", is_flag=True, help="Allow binding a non-loopback address.")
@click.option(
    "--batch-time",
    type=float,
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Batch APIs' time scale: a batch's requests finish within SECONDS (docs/batch.md).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Server processes on the one socket, for load (each keeps its own invoice).",
)
@click.option(
    "--pace",
    type=float,
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Streams' pacing tick: events due within one tick go out in one write after one sleep, "
    "the stream's duration unchanged (0 = a write per event).",
)
def sim_serve(
    host: str,
    port: int,
    profiles: Path | None,
    seed: int,
    speed: float,
    answer_key: Path | None,
    allow_non_loopback: bool,
    batch_time: float = 1.0,
    workers: int = 1,
    pace: float = 0.0,
) -> None:
    """Run the simulator in the foreground and print its base URLs."""
    from harness.sim import serve_forever
    from harness.sim.server import check_pace, check_speed

    if not 0 <= port <= 65535:
        _fail(f"--port must be 0 (a free port) to 65535, got {port}")
    check_speed(speed, "--speed")
    if batch_time < 0:
        _fail("--batch-time must not be negative")
    if workers < 1:
        _fail(f"--workers must be at least 1, got {workers}")
    check_pace(pace, "--pace")

    def ready(openai_url: str, anthropic_url: str) -> None:
        click.echo(f"OPENAI_BASE_URL={openai_url}")
        click.echo(f"ANTHROPIC_BASE_URL={anthropic_url}")
        click.echo(f"GOOGLE_GEMINI_BASE_URL={anthropic_url}")  # issue 11: Gemini's is the host root too
        click.echo("invoice: GET /sim/invoice; Ctrl-C stops.", err=True)

    try:
        serve_forever(
            host=host,
            port=port,
            profiles=profiles,
            seed=seed,
            speed=speed,
            answer_key_file=answer_key,
            allow_non_loopback=allow_non_loopback,
            on_ready=ready,
            batch_complete_s=batch_time,
            workers=workers,
            pace_s=pace,
        )
    except ValueError as exc:
        _fail(str(exc))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _write_csv(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (",".join(v) if isinstance(v, list) else v) for k, v in r.items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tollbench`` console script; returns the exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tollbench", standalone_mode=False)
    except _Exit as exc:
        return exc.code
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except ConfigError as exc:
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        return 2
    except StorageError as exc:
        damaged = _corruption(exc)
        if damaged is not None:
            label = str(exc).split(": ", 1)[0]
            click.echo(f"Error: {_one_line(label + ': ' + _corrupt_message(damaged))}", err=True)
            return 2
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        return 1
    except HarnessError as exc:
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        return 1
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        if _corruption(exc) is None:
            raise
        click.echo(f"Error: {_one_line(_corrupt_message(exc))}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return 0


def _entry() -> NoReturn:
    sys.exit(main())


from harness.cli.estimate import estimate  # noqa: E402  (the commands of the other modules, registered last)

cli.add_command(estimate)

from harness.cli.ops import export_cmd, import_cmd, reconcile, resume  # noqa: E402

for _command in (resume, reconcile, export_cmd, import_cmd):
    cli.add_command(_command)

from harness.cli.ops import reprice_cmd, rescore_cmd  # noqa: E402

cli.add_command(rescore_cmd)
cli.add_command(reprice_cmd)

from harness.cli.report_cmd import report  # noqa: E402

cli.add_command(report)

from harness.cli.sandbox import sandbox as sandbox_group  # noqa: E402

cli.add_command(sandbox_group)
from harness.cli.workers import pool, worker  # noqa: E402

cli.add_command(worker)
cli.add_command(pool)


if __name__ == "__main__":  # pragma: no cover
    _entry()
