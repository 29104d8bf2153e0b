"""``tollbench estimate``: what a run would cost, before it spends anything (or after a small pilot).

Registered on the main group in :mod:`harness.cli.main` with ``cli.add_command(estimate)``. Without
``--pilot`` nothing is spent and nothing is written (a database that does not exist yet is not
created). No API key is needed: the plan is built as for a simulated run, which only skips the key
check; the forecast reads live history unless ``--sim`` is given. ``--pilot N`` runs ``N`` sampled
items per model and suite for real (keys needed unless ``--sim``), inside ``--budget``, records it as
a normal run marked ``config.pilot``, and extrapolates from those calls alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from harness.cli.batch import batch_flag
from harness.cli.common import data_dir_option, preset_of
from harness.errors import StorageError

__all__ = ["estimate"]


def _exit(code: int) -> Any:
    from harness.cli.common import _Exit

    return _Exit(code)


def _fail(message: str, code: int = 2) -> Any:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    return _exit(code)


def _db_exists(db: str | None) -> bool:
    from harness.cli.common import _sqlite_path

    path = _sqlite_path(db)
    return path is None or path.is_file()


@click.command("estimate")
@click.argument("suites", nargs=-1, required=True)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="PROVIDER/MODEL",
    help="Model (repeatable).",
)
@click.option("--limit", type=int, help="Estimate a seeded, stratified sample of N items per suite.")
@click.option("--repeats", type=int, help="Samples per item [default: the suite's usual number].")
@click.option("--seed", default=0, show_default=True, help="Seed for sampling and option shuffles.")
@click.option(
    "--max-output-tokens", type=int, help="Output limit per call, reasoning included [default 16384]."
)
@click.option(
    "--db",
    envvar="TOLLBENCH_DB",
    default=None,
    metavar="PATH_OR_URL",
    help="Database with past runs [env TOLLBENCH_DB; default ./runs.db].",
)
@click.option("--data", type=click.Path(path_type=Path), help="Local dataset file (parquet, JSONL or CSV).")
@data_dir_option
@click.option(
    "--suite-option",
    "suite_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="A suite option, as for run (hle: images=true counts each image at its model's bound).",
)
@click.option(
    "--prices", multiple=True, type=click.Path(path_type=Path), help="Price override file (repeatable)."
)
@click.option("--models-file", type=click.Path(path_type=Path), help="Model alias file (TOML).")
@click.option("--profiles", type=click.Path(path_type=Path), help="Per-model token profiles (TOML).")
@click.option("--budget", metavar="USD", help="Check the forecast against this budget; the pilot's ceiling.")
@click.option("--pilot", type=int, metavar="N", help="Spend on N sampled items per model and suite first.")
@click.option("--sim", is_flag=True, help="Forecast (and pilot) a simulated run; uses simulated history.")
@click.option(
    "--target-ci",
    type=float,
    metavar="HALF_WIDTH",
    help="Also forecast the items and dollars --target-ci HALF_WIDTH needs with each interval method.",
)
@click.option(
    "--control",
    metavar="MODEL|history",
    help="With --target-ci: include --control MODEL (or history: item difficulty from the database).",
)
@click.option(
    "--accuracy",
    type=float,
    default=0.5,
    show_default=True,
    help="With --target-ci: the accuracy assumed (0.5 needs the most items).",
)
@click.option(
    "--rho",
    type=float,
    default=0.6,
    show_default=True,
    help="With --control: the correlation assumed between the two models' scores.",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON (amounts as decimal strings).")
@batch_flag
def estimate(
    suites: tuple[str, ...],
    models: tuple[str, ...],
    limit: int | None,
    repeats: int | None,
    seed: int,
    max_output_tokens: int | None,
    db: str | None,
    data: Path | None,
    data_dir: Path | None,
    suite_option: tuple[str, ...],
    prices: tuple[Path, ...],
    models_file: Path | None,
    profiles: Path | None,
    budget: str | None,
    pilot: int | None,
    sim: bool,
    target_ci: float | None,
    control: str | None,
    accuracy: float,
    rho: float,
    json_output: bool,
    batch: bool,
) -> None:
    """Forecast what running SUITES against the models would cost, spending nothing.

    \b
    Per model and suite: calls, prompt tokens counted from the rendered prompts, the expected cost,
    its 95% upper bound, the worst case (every call at its reservation) and the source used:
    history:this-suite, history:other-suites, profile or worst-case (docs/forecast.md).
    A preset (aa) is estimated offline: each suite from its data where it is here, else from the
    statistics it ships; the total is shown beside the study's.
    """
    from harness.forecast.estimate import MIN_HISTORY, check_budget, forecast_plan, load_model_profiles
    from harness.pricing.money import parse_usd, usd_str, usd_to_nano
    from harness.run.plan import RunOptions, prepare_run

    budget_usd: Decimal | None = None
    if budget is not None:
        try:
            budget_usd = parse_usd(budget)
        except ValueError as exc:
            raise _fail(f"--budget: {exc}") from None
    if pilot is not None:
        if pilot < 1:
            raise _fail("--pilot must be at least 1")
        if budget_usd is None:
            raise _fail("--pilot spends money: give its ceiling with --budget USD")
    if target_ci is not None and not 0 < target_ci < 0.5:
        raise _fail("--target-ci takes a half-width between 0 and 0.5, e.g. 0.02")
    if control is not None and target_ci is None:
        raise _fail("--control needs --target-ci")
    if not 0 <= accuracy <= 1 or not -1 <= rho <= 1:
        raise _fail("--accuracy takes a fraction in 0..1 and --rho a correlation in -1..1")
    try:
        profs = load_model_profiles(profiles)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    suite_options: dict[str, str] = {}
    for pair in suite_option:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _fail(f"--suite-option takes KEY=VALUE, got {pair!r}")
        suite_options[key.strip()] = value
    preset = preset_of(suites, data, data_dir)
    if preset is not None and suite_options:
        raise _fail("--suite-option is not taken with a preset's estimate (it uses the study's settings)")
    est_suites: Sequence[Any] = suites
    from_stats: list[str] = []
    if preset is not None:
        from suites.presets import load_for_estimate

        est_suites, from_stats = load_for_estimate(preset, data_dir=data_dir)
        max_output_tokens = max_output_tokens or preset.max_output_tokens
    base = RunOptions(
        suites=est_suites,
        models=models,
        budget_usd=budget_usd or Decimal(0),
        limit=limit,
        repeats=repeats,
        seed=seed,
        max_output_tokens=max_output_tokens,
        simulated=True,  # only skips the API-key check: an estimate needs no key
        data=data,
        suite_options=suite_options,
        prices=prices,
        models_file=models_file,
        batch=batch,
    )
    plan = prepare_run(base)  # ConfigError -> exit 2
    control_plan = None
    if control is not None:
        from dataclasses import replace

        control_plan = prepare_run(replace(base, target_ci=target_ci, control=control))
        # the control's earlier runs (and the history) count only if simulated or not like this estimate
        control_plan.options = replace(control_plan.options, simulated=sim)
        if control_plan.control != "history":  # the forecast covers the control's full run too
            plan = prepare_run(replace(base, models=(*models, control)))
    store = None
    if pilot is not None or _db_exists(db):
        from harness.store.engine import Store

        try:
            store = Store.open(db)
        except StorageError as exc:
            raise _fail(str(exc)) from None
    try:
        pilot_info: dict[str, Any] | None = None
        history_runs: list[str] | None = None
        if pilot is not None:
            assert store is not None and budget_usd is not None
            pilot_info = _run_pilot(base, pilot, budget_usd, sim, store)
            history_runs = [pilot_info["run_id"]]
        forecast = forecast_plan(
            plan,
            store,
            simulated=sim,
            history_runs=history_runs,
            profiles=profs,
            min_history=2 if pilot is not None else MIN_HISTORY,
        )
        reused = False
        history: dict[str, Any] = {}
        if control_plan is not None and store is not None:
            from harness.run.control import missing_controls

            reused = not missing_controls(store, control_plan)
            runs = control_plan.control_runs
            history = {suite: info["history"] for suite, info in runs.items() if info.get("history")}
    finally:
        if store is not None:
            store.close()
    targets: list[Any] = []
    if target_ci is not None:
        from harness.forecast.target import forecast_target_ci

        targets = forecast_target_ci(
            forecast,
            half_width=target_ci,
            populations=_populations(plan),
            accuracy=accuracy,
            control=control_plan.control if control_plan is not None else None,
            rho=rho,
            control_reused=reused,
            history=history,
        )
    preset_info: dict[str, Any] | None = None
    if preset is not None:
        forecast, preset_info = _preset_forecast(forecast, plan, preset, from_stats)
    verdict = None
    if budget_usd is not None and pilot is None:
        verdict = check_budget(forecast, usd_to_nano(budget_usd))
    if json_output:
        out = forecast.as_dict()
        out["budget_usd"] = None if budget_usd is None else usd_str(usd_to_nano(budget_usd))
        out["fits_budget"] = None if verdict is None else verdict.ok
        out["pilot"] = pilot_info
        if preset_info is not None:
            out["preset"] = preset_info
        if target_ci is not None:
            out["target_ci"] = {
                "half_width": target_ci,
                "accuracy": accuracy,
                "rows": [t.as_dict() for t in targets],
            }
        click.echo(json.dumps(out, indent=2))
    else:
        _print(forecast, pilot_info, sim)
        if preset_info is not None:
            _print_preset(preset_info)
        if target_ci is not None:
            _print_targets(targets, target_ci, accuracy)
        if verdict is not None:
            click.echo(verdict.message or "The 95% upper bound fits the budget.", err=not verdict.ok)
    if pilot_info is not None and pilot_info["status"] in ("failed", "interrupted"):
        raise _exit(int(pilot_info["exit_code"]))


def _populations(plan: Any) -> dict[str, int]:
    """Items per suite of the plan (after --limit)."""
    out: dict[str, int] = {}
    for mp in plan.models.values():
        for suite in plan.suites:
            out[suite] = len({u.item.id for u in mp.units if u.suite == suite})
        break
    return out


def _print_targets(targets: list[Any], half_width: float, accuracy: float) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.pricing.money import format_usd

    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(title=f"--target-ci {half_width}: items and cost per method at accuracy {accuracy:.2f}")
    for col in ("model", "suite", "method", "items", "expected", "95% upper", "note"):
        table.add_column(col, justify="left" if col in ("model", "suite", "method", "note") else "right")
    for t in targets:
        table.add_row(
            *map(Text, (t.model, t.suite, t.method)),
            f"{t.items:,} of {t.population:,}",
            format_usd(t.expected_nano),
            format_usd(t.upper_nano),
            Text(t.note),
        )
    console.print(table)


def _run_pilot(base: Any, n: int, budget_usd: Decimal, sim: bool, store: Any) -> dict[str, Any]:
    """Run ``n`` sampled items per model and suite as a normal run marked as a pilot."""
    from dataclasses import replace

    import anyio

    from harness.forecast.estimate import mark_pilot
    from harness.pricing.money import usd_str, usd_to_nano
    from harness.run.plan import prepare_run
    from harness.run.session import run

    opts = replace(
        base, limit=n, budget_usd=budget_usd, simulated=sim, sim_speed=0.0 if sim else base.sim_speed
    )
    plan = prepare_run(opts)  # a live pilot needs the API keys
    tag = " (SIMULATED)" if sim else ""
    click.echo(
        f"pilot: {n} items per model and suite, {plan.total_units} calls, "
        f"spending at most ${budget_usd}{tag}",
        err=True,
    )
    info = {"items_per_suite": n, "budget_usd": usd_str(usd_to_nano(budget_usd))}

    def started(run_id: str) -> None:
        mark_pilot(store, run_id, info)

    async def go() -> Any:
        return await run(plan, store, on_start=started)

    outcome = anyio.run(go)
    row = store.get_run(outcome.run_id)
    spent = int(row["spent_nano"]) if row else 0
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "items_per_suite": n,
        "calls": plan.total_units,
        "spent_usd": usd_str(spent),
        "budget_usd": info["budget_usd"],
    }


def _print(forecast: Any, pilot: dict[str, Any] | None, sim: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.pricing.money import format_usd

    console = Console() if sys.stdout.isatty() else Console(width=200)
    title = "cost forecast" + (" (SIMULATED)" if sim else "")
    table = Table(title=title)
    for col in ("model", "suite", "calls", "input tok", "expected", "95% upper", "worst case", "source"):
        table.add_column(col, justify="left" if col in ("model", "suite", "source") else "right")
    for r in forecast.rows:
        table.add_row(
            *map(Text, (r.model, r.suite)),
            f"{r.calls:,}",
            f"{r.input_tokens:,}",
            format_usd(r.expected_nano),
            format_usd(r.upper_nano),
            format_usd(r.worst_case_nano),
            Text(r.source),
        )
    table.add_row(
        "total",
        "",
        f"{forecast.calls:,}",
        f"{sum(r.input_tokens for r in forecast.rows):,}",
        format_usd(forecast.expected_nano),
        format_usd(forecast.upper_nano),
        format_usd(forecast.worst_case_nano),
        "",
    )
    console.print(table)
    for r in forecast.rows:
        if r.note and r.source != "profile":
            console.print(Text(f"  {r.model} x {r.suite}: {r.note}"), highlight=False)
    if pilot is not None:
        console.print(
            Text(
                f"pilot run {pilot['run_id']}: {pilot['status']}, spent ${pilot['spent_usd']}; "
                "the forecast above extrapolates from its calls"
            ),
            highlight=False,
        )


#: What a judge call of the HLE judge is assumed to hold on top of the question: the model's visible
#: answer (tokens), and what the judge writes back (its JSON with a short reasoning).
JUDGE_ANSWER_TOKENS = 500
JUDGE_OUTPUT_TOKENS = 200


def _preset_forecast(
    forecast: Any, plan: Any, preset: Any, from_stats: list[str]
) -> tuple[Any, dict[str, Any]]:
    """Add the HLE judge's calls to a preset's forecast (one per HLE call, at the preset's judge's
    price) and the comparison with the study. Returns the forecast with the judge rows and the
    preset's summary."""
    from dataclasses import replace

    from harness.forecast.estimate import Forecast, ForecastRow
    from harness.models import price_provider, resolve_model
    from harness.pricing.money import usd_str, usd_to_nano
    from harness.types import Usage
    from suites.hle import JUDGE_PROMPT

    spec = resolve_model(preset.judge)
    price = plan.price_table.lookup(price_provider(spec.provider), spec.model)
    template = (len(JUDGE_PROMPT.encode("utf-8")) + 3) // 4
    rows = list(forecast.rows)
    for r in forecast.rows:
        if r.suite != "hle" or not r.calls:
            continue
        per_in = r.input_tokens // r.calls + template + JUDGE_ANSWER_TOKENS
        usage = Usage(input_uncached=per_in, output=JUDGE_OUTPUT_TOKENS)
        one = usd_to_nano(price.cost(usage))
        worst = usd_to_nano(price.worst_case(per_in * 2, 4096)) * r.calls
        expected = one * r.calls
        rows.append(
            ForecastRow(
                model=r.model,
                suite=f"hle judge ({spec.name})",
                calls=r.calls,
                input_tokens=per_in * r.calls,
                input_tokens_bound=per_in * 2 * r.calls,
                expected_nano=expected,
                lower_nano=expected // 2,
                upper_nano=min(worst, expected * 2),
                worst_case_nano=worst,
                source="judge estimate",
                note=f"assumed {JUDGE_ANSWER_TOKENS} answer tokens in, {JUDGE_OUTPUT_TOKENS} out per call",
            )
        )
    out = replace(forecast, rows=tuple(rows)) if isinstance(forecast, Forecast) else forecast
    models: list[dict[str, Any]] = []
    for name in plan.models:
        expected = sum(r.expected_nano for r in out.rows if r.model == name)
        upper = sum(r.upper_nano for r in out.rows if r.model == name)
        ms = plan.models[name].spec
        study = preset.study_costs_usd.get(name) or preset.study_costs_usd.get(f"{ms.provider}/{ms.model}")
        ratio = None
        if study is not None and study > 0:
            ratio = float(Decimal(expected) / Decimal(10**9) / study)
        models.append(
            {
                "model": name,
                "expected_usd": usd_str(expected),
                "upper_usd": usd_str(upper),
                "study_usd": None if study is None else str(study),
                "ratio_to_study": ratio,
            }
        )
    info = {
        "preset": preset.name,
        "study": preset.study,
        "from_statistics": from_stats,
        "max_output_tokens": plan.options.max_output_tokens,
        "models": models,
    }
    return out, info


def _print_preset(info: dict[str, Any]) -> None:
    from harness.pricing.money import format_usd, usd_to_nano

    if info["from_statistics"]:
        click.echo(
            f"{info['preset']}: estimated from the statistics the suites ship (their data is not here): "
            + ", ".join(info["from_statistics"])
        )
    for m in info["models"]:
        line = (
            f"{info['preset']} {m['model']}: expected {format_usd(usd_to_nano(Decimal(m['expected_usd'])))}, "
            f"95% upper {format_usd(usd_to_nano(Decimal(m['upper_usd'])))}"
        )
        if m["study_usd"] is not None:
            line += (
                f"; the study ({info['study']}) paid ${Decimal(m['study_usd']):,} "
                f"(this estimate is {m['ratio_to_study']:.2f}x that)"
            )
        click.echo(line)
