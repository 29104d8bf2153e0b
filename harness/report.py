"""Reports of runs and costs, as JSON-able dicts (what ``--json`` prints) and rich tables.

The JSON is the Python API's output: ``run_report_dict(store, run_id)`` is exactly what
``tollbench show RUN --json`` and ``tollbench run --json`` print. Dollar amounts are decimal strings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.pricing.money import format_usd, usd_str
from harness.stats.calibration import rms_calibration_error
from harness.stats.intervals import accuracy_ci
from harness.store.engine import Store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# rich is imported by the functions that print (``costs --json`` and the library need none of it).

__all__ = ["cost_rows", "print_costs", "print_run", "print_runs", "run_report_dict", "runs_rows"]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def run_report_dict(store: Store, run_id: str) -> dict[str, Any]:
    """Everything about one run: status, budget, spend and per model and suite the calls, tokens,
    spend and score (accuracy with its 95% interval)."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    outcomes: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    # Code suites: known-bad problems (LiveCodeBench ERRATA) and the sandbox the code ran in.
    errata: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    sandboxes: dict[tuple[str, str], set[str]] = defaultdict(set)
    # Judged suites: answers the judge could not judge, and the judge's confidence for calibration.
    unscored: dict[tuple[str, str], int] = defaultdict(int)
    calibration: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    # Stepped suites (SciCode): each scored sub-step's verdict, for the sub-step accuracy.
    substeps: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for r in store.item_results(run_id):
        if r["status"] == "scored" and r["correct"] is not None:
            outcomes[(r["model"], r["suite"])].append((str(r["item_id"]), bool(r["correct"])))
        meta = r.get("meta") or {}
        if isinstance(meta, Mapping):
            if meta.get("errata"):
                errata[(r["model"], r["suite"])][str(meta["errata"])].add(str(r["item_id"]))
            if meta.get("sandbox"):
                sandboxes[(r["model"], r["suite"])].add(str(meta["sandbox"]))
            steps = meta.get("step_results")
            if r["status"] == "scored" and isinstance(steps, Mapping):
                substeps[(r["model"], r["suite"])].extend((str(k), bool(v)) for k, v in steps.items())
            if r["status"] == "scored" and isinstance(meta.get("confidence"), int | float):
                calibration[(r["model"], r["suite"])].append(
                    (float(meta["confidence"]) / 100, bool(r["correct"]))
                )
        if r["status"] == "scored" and r.get("reason") == "unscored":
            unscored[(r["model"], r["suite"])] += 1
    results: list[dict[str, Any]] = []
    for row in store.run_report(run_id):
        key = (row["model"], row["suite"])
        ci = accuracy_ci(outcomes.get(key, []))
        correct = int(row["correct"] or 0)
        spent = int(row["spent_nano"] or 0)
        # $/correct prices every answer, including those reused from the response cache at what
        # they cost to buy: it describes the model, not this session's luck with the cache.
        answer_cost = spent + int(row.get("saved_nano") or 0)
        results.append(
            {
                "model": row["model"],
                "suite": row["suite"],
                "calls": int(row["calls"] or 0),
                "errors": int(row["errors"] or 0),
                "items": int(row["items"] or 0),
                "scored": int(row["scored"] or 0),
                "correct": correct,
                "unusable": int(row["unusable"] or 0),
                "not_run": int(row["not_run"] or 0),
                "accuracy": None if ci is None else ci.accuracy,
                "ci_low": None if ci is None else ci.low,
                "ci_high": None if ci is None else ci.high,
                "ci_method": None if ci is None else ci.method,
                "input_tokens": int(row["input_uncached"] or 0),
                "cache_read_tokens": int(row["cache_read"] or 0),
                "cache_write_tokens": int(row["cache_write"] or 0),
                "output_tokens": int(row["output_tokens"] or 0),
                "reasoning_tokens": int(row["reasoning_tokens"] or 0),
                "spent_usd": usd_str(spent),
                "unsettled_usd": usd_str(int(row["unsettled_nano"] or 0)),
                "unusable_usd": usd_str(int(row["unusable_nano"] or 0)),
                "cost_per_correct_usd": usd_str(-(-answer_cost // correct)) if correct else None,
                "cached": int(row.get("cached") or 0),
                "saved_usd": usd_str(int(row.get("saved_nano") or 0)),
                **_unknown_and_reported(row),
            }
        )
        if key in errata:
            results[-1]["errata"] = {k: sorted(v) for k, v in sorted(errata[key].items())}
        if key in sandboxes:
            results[-1]["sandbox"] = sorted(sandboxes[key])
        if key in substeps:  # the accuracy above is then the main-problem solve rate
            sci = accuracy_ci(substeps[key])
            assert sci is not None
            results[-1]["substeps"] = {
                "scored": len(substeps[key]),
                "passed": sum(ok for _, ok in substeps[key]),
                "accuracy": sci.accuracy,
                "ci_low": sci.low,
                "ci_high": sci.high,
                "ci_method": sci.method,
            }
        if int(row.get("judge_calls") or 0) or key in unscored:
            judge_nano = int(row.get("judge_nano") or 0)
            results[-1].update(
                judge_calls=int(row.get("judge_calls") or 0),
                judge_spent_usd=usd_str(judge_nano),
                target_spent_usd=usd_str(spent - judge_nano),
                unscored=unscored.get(key, 0),
                calibration_error=rms_calibration_error(calibration.get(key, [])),
            )
    return {
        "id": run["id"],
        "status": run["status"],
        "simulated": bool(run["simulated"]),
        "created_at": _iso(run["created_at"]),
        "finished_at": _iso(run.get("finished_at")),
        "suites": list(run["suites"]),
        "models": list(run["models"]),
        "budget_usd": usd_str(int(run["budget_nano"])),
        "spent_usd": usd_str(int(run["spent_nano"])),
        "committed_usd": usd_str(int(run["committed_nano"])),
        "unsettled_usd": usd_str(int(run["committed_nano"]) - int(run["spent_nano"])),
        "config": run.get("config") or {},
        "results": results,
        **_paths(store, run_id),
    }


def _paths(store: Store, run_id: str) -> dict[str, Any]:
    """``--batch`` runs: per model, the calls and dollars that went through a batch and live."""
    from harness.store.batches import run_paths

    paths = run_paths(store, run_id)
    if not paths:
        return {}
    return {
        "paths": {
            model: {
                way: {
                    "calls": p["calls"],
                    "answered": p["ok"],
                    "spent_usd": usd_str(p["spent_nano"]),
                    "unsettled_usd": usd_str(p["unsettled_nano"]),
                }
                for way, p in ways.items()
            }
            for model, ways in paths.items()
        }
    }


def runs_rows(store: Store) -> list[dict[str, Any]]:
    """One row per run, newest first (``tollbench runs``)."""
    out = []
    for r in store.list_runs():
        out.append(
            {
                "id": r["id"],
                "started": _iso(r["created_at"]),
                "suites": list(r["suites"]),
                "models": list(r["models"]),
                "status": r["status"],
                "budget_usd": usd_str(int(r["budget_nano"])),
                "spent_usd": usd_str(int(r["spent_nano"])),
                "unsettled_usd": usd_str(int(r["committed_nano"]) - int(r["spent_nano"])),
                "simulated": bool(r["simulated"]),
                "calls": int(r.get("calls") or 0),
            }
        )
    return out


def cost_rows(store: Store, *, by: Sequence[str], **filters: Any) -> list[dict[str, Any]]:
    """Grouped costs (``tollbench costs``); money as decimal strings."""
    rows = []
    for r in store.cost_summary(by=by, **filters):
        d = {k: (_iso(r[k]) if k == "day" else r[k]) for k in by}
        d.update(
            {
                "calls": int(r["calls"] or 0),
                "input_tokens": int(r["input_uncached"] or 0),
                "cache_read_tokens": int(r["cache_read"] or 0),
                "cache_write_tokens": int(r["cache_write"] or 0),
                "output_tokens": int(r["output_tokens"] or 0),
                "reasoning_tokens": int(r["reasoning_tokens"] or 0),
                "spent_usd": usd_str(int(r["spent_nano"] or 0)),
                "unsettled_usd": usd_str(int(r["unsettled_nano"] or 0)),
                "cached": int(r.get("cached") or 0),
                "saved_usd": usd_str(int(r.get("saved_nano") or 0)),
                "simulated": r["simulated"],
                **_unknown_and_reported(r),
            }
        )
        rows.append(d)
    return rows


def _unknown_and_reported(row: Mapping[str, Any]) -> dict[str, Any]:
    """Usage-unknown calls (their token columns are not 0 tokens, they are unknown) and what providers
    reported their calls cost beside what tollbench computed for the same calls."""
    reported = int(row.get("reported_calls") or 0)
    theirs, ours = int(row.get("reported_nano") or 0), int(row.get("reported_ours_nano") or 0)
    return {
        "usage_unknown_calls": int(row.get("unknown_calls") or 0),
        "usage_unknown_usd": usd_str(int(row.get("unknown_nano") or 0)),
        "usage_unknown_output_bound": int(row.get("unknown_output_bound") or 0),
        "provider_reported_calls": reported,
        "provider_reported_usd": usd_str(theirs) if reported else None,
        "provider_reported_ours_usd": usd_str(ours) if reported else None,
        "provider_reported_difference_usd": usd_str(theirs - ours) if reported else None,
    }


def _sim_tag(simulated: Any) -> str:
    if simulated == "mixed":
        return " [mixed real+SIMULATED]"
    return " [SIMULATED]" if simulated else ""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_run(report: Mapping[str, Any], console: Console) -> None:
    """The end-of-run table per model and suite, and the total against the budget."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    sim = " (SIMULATED: no real money)" if report["simulated"] else ""
    table = Table(title=escape(f"run {report['id']} — {report['status']}{sim}"), title_justify="left")
    for col in (
        "model",
        "suite",
        "items",
        "score (95% CI)",
        "unusable",
        "not run",
        "in tok",
        "out tok",
        "reasoning",
        "spent",
        "$/correct",
    ):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for r in report["results"]:
        score = "-"
        if r["accuracy"] is not None:
            score = f"{_pct(r['accuracy'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
        _add_row(
            table,
            r["model"],
            r["suite"],
            f"{r['scored'] + r['unusable']}/{r['items']}",
            score,
            f"{r['unusable']} ({_usd(r['unusable_usd'])})" if r["unusable"] else "0",
            str(r["not_run"]),
            *_token_cells(r),
            _usd(r["spent_usd"]),
            _usd(r["cost_per_correct_usd"]) if r["cost_per_correct_usd"] else "-",
        )
    console.print(table)
    for note in _notes(report["results"], ("model", "suite")):
        console.print(Text(note))
    line = f"total {_usd(report['spent_usd'])} of budget {_usd(report['budget_usd'])}"
    if report["unsettled_usd"] not in ("0", "0.0"):
        line += f" (+ {_usd(report['unsettled_usd'])} unsettled, counted at worst case)"
    console.print(Text(line + sim))
    for r in report["results"]:
        if r.get("errata"):
            tags = ", ".join(f"{len(ids)} {tag}" for tag, ids in r["errata"].items())
            console.print(Text(f"{r['model']} {r['suite']}: known-bad problems kept and counted ({tags})"))
        if r.get("judge_calls") or r.get("unscored"):
            cal = r.get("calibration_error")
            console.print(
                Text(
                    f"{r['model']} {r['suite']}: target {_usd(r['target_spent_usd'])}, judge "
                    f"{_usd(r['judge_spent_usd'])} ({r['judge_calls']} judge calls); "
                    f"{r['unscored']} unscored (counted as wrong)"
                    + (f"; RMS calibration error {_pct(cal)}" if cal is not None else "")
                )
            )
        if r.get("substeps"):
            st = r["substeps"]
            console.print(
                Text(
                    f"{r['model']} {r['suite']}: sub-step accuracy {_pct(st['accuracy'])} "
                    f"[{_pct(st['ci_low'])}, {_pct(st['ci_high'])}] ({st['passed']}/{st['scored']} "
                    "sub-steps); the score above is the main-problem solve rate"
                )
            )
        if r.get("sandbox"):
            console.print(
                Text(f"{r['model']} {r['suite']}: model code ran at isolation {', '.join(r['sandbox'])}")
            )
    for model, ways in (report.get("paths") or {}).items():
        parts = [
            f"{way} {ways[way]['calls']} calls {_usd(ways[way]['spent_usd'])}"
            for way in ("batch", "live")
            if way in ways
        ]
        console.print(Text(f"{model}: " + "; ".join(parts)))
    cached = sum(int(r.get("cached") or 0) for r in report["results"])
    if cached:
        from decimal import Decimal

        saved = sum(Decimal(r.get("saved_usd") or "0") for r in report["results"])
        note = f"cost 0 here; {_usd(str(saved))} to reproduce"
        console.print(Text(f"{cached} answers came from the response cache ({note})"))


def print_runs(rows: Sequence[Mapping[str, Any]], console: Console) -> None:
    from rich.table import Table

    table = Table()
    for col in ("id", "started", "suites", "models", "status", "budget", "spent", "simulated"):
        table.add_column(col)
    for r in rows:
        _add_row(
            table,
            r["id"],
            str(r["started"])[:19],
            ",".join(r["suites"]),
            ",".join(r["models"]),
            r["status"],
            _usd(r["budget_usd"]),
            _usd(r["spent_usd"]),
            "SIMULATED" if r["simulated"] else "real",
        )
    console.print(table)


def print_costs(rows: Sequence[Mapping[str, Any]], by: Sequence[str], console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    show_saved = any(int(r.get("cached") or 0) for r in rows)
    show_reported = any(r.get("provider_reported_calls") for r in rows)
    for col in [*by, "calls", "in tok", "out tok", "reasoning", "spent", "unsettled"]:
        table.add_column(col)
    if show_saved:
        table.add_column("saved by cache")
    if show_reported:
        table.add_column("provider says (difference)")
    for r in rows:
        extra = [_usd(r["saved_usd"])] if show_saved else []
        if show_reported:
            extra.append(_reported_cell(r))
        _add_row(
            table,
            *[str(r[k]) + (_sim_tag(r["simulated"]) if k == by[-1] else "") for k in by],
            f"{r['calls']:,}",
            *_token_cells(r),
            _usd(r["spent_usd"]),
            _usd(r["unsettled_usd"]),
            *extra,
        )
    console.print(table)
    for note in _notes(rows, tuple(by), reported=False):
        console.print(Text(note))


def _token_cells(r: Mapping[str, Any]) -> tuple[str, str, str]:
    """In, out and reasoning tokens; with usage-unknown calls, "+?" says the count is not complete (it
    is never shown as if those calls had 0 tokens)."""
    unknown = int(r.get("usage_unknown_calls") or 0)
    mark = " +?" if unknown else ""
    total_in = r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
    out = f"{r['output_tokens']:,}{mark}"
    if unknown and r.get("usage_unknown_output_bound"):
        out = f"{r['output_tokens']:,} +≤{int(r['usage_unknown_output_bound']):,}"
    return f"{total_in:,}{mark}", out, f"{r['reasoning_tokens']:,}{mark}"


def _reported_cell(r: Mapping[str, Any]) -> str:
    if not r.get("provider_reported_calls"):
        return "-"
    diff = r["provider_reported_difference_usd"]
    sign = "" if diff.startswith("-") else "+"
    return f"{_usd(r['provider_reported_usd'])} ({sign}{_usd(diff) if not diff.startswith('-') else diff})"


def _notes(rows: Sequence[Mapping[str, Any]], keys: tuple[str, ...], *, reported: bool = True) -> list[str]:
    """Footnotes: usage-unknown calls, and provider-reported costs that differ from ours."""
    notes: list[str] = []
    for r in rows:
        name = "/".join(str(r[k]) for k in keys)
        n = int(r.get("usage_unknown_calls") or 0)
        if n:
            bound = int(r.get("usage_unknown_output_bound") or 0)
            seen = f"; at most {bound:,} output tokens received" if bound else ""
            notes.append(
                f"{name}: usage unknown for {n} call(s), charged {_usd(r['usage_unknown_usd'])} at worst "
                f"case{seen}; their tokens are not in the token columns (+?)"
            )
        if reported and r.get("provider_reported_calls"):
            diff = r["provider_reported_difference_usd"]
            if diff not in ("0", "0.0"):
                notes.append(
                    f"{name}: the provider reported {_usd(r['provider_reported_usd'])} for "
                    f"{r['provider_reported_calls']} call(s) where tollbench computed "
                    f"{_usd(r['provider_reported_ours_usd'])} (difference {diff} USD)"
                )
            else:
                notes.append(
                    f"{name}: the provider's own cost for {r['provider_reported_calls']} call(s) agrees "
                    f"with tollbench's ({_usd(r['provider_reported_usd'])})"
                )
    return notes


def _add_row(table: Table, *cells: Any) -> None:
    """Add a row whose cells are plain text: data (run ids, models, item ids) is never rich markup."""
    from rich.text import Text

    table.add_row(*(Text("" if c is None else str(c)) for c in cells))


def _usd(text: str | None) -> str:
    from decimal import Decimal

    from harness.pricing.money import usd_to_nano

    if text is None:
        return "-"
    return format_usd(usd_to_nano(Decimal(text)))


def preset_summary(report: Mapping[str, Any], preset: Any) -> dict[str, Any]:
    """A preset run's summary (``tollbench run aa``): per model, each suite's score with its 95%
    interval (SciCode's is its sub-step accuracy, the study's figure), the combined index (the mean
    of the suites' scores, as Artificial Analysis's index; its interval from the suites' intervals,
    independent and normal) and the total cost beside the study's."""
    from decimal import Decimal

    z = 1.959963984540054
    models: list[dict[str, Any]] = []
    for model in report["models"]:
        rows = {r["suite"]: r for r in report["results"] if r["model"] == model}
        suites: list[dict[str, Any]] = []
        spent = Decimal(0)
        for r in rows.values():
            spent += Decimal(r["spent_usd"])
        for ps in preset.suites:
            r = rows.get(ps.name)
            if r is None:
                suites.append({"suite": ps.name, "score": None})
                continue
            sub = r.get("substeps")
            src = sub if sub else r
            suites.append(
                {
                    "suite": ps.name,
                    "metric": "sub-step accuracy" if sub else "accuracy",
                    "score": src["accuracy"],
                    "ci_low": src["ci_low"],
                    "ci_high": src["ci_high"],
                    "spent_usd": r["spent_usd"],
                }
            )
        scored = [s for s in suites if s["score"] is not None]
        index = index_low = index_high = None
        if scored and len(scored) == len(suites):
            index = sum(s["score"] for s in scored) / len(scored)
            var = sum(((s["ci_high"] - s["ci_low"]) / (2 * z)) ** 2 for s in scored) / len(scored) ** 2
            half = z * var**0.5
            index_low, index_high = max(0.0, index - half), min(1.0, index + half)
        study = preset.study_costs_usd.get(model)
        models.append(
            {
                "model": model,
                "suites": suites,
                "index": index,
                "index_ci_low": index_low,
                "index_ci_high": index_high,
                "spent_usd": str(spent),
                "study_usd": None if study is None else str(study),
            }
        )
    return {"preset": preset.name, "study": preset.study, "models": models}


def print_preset(summary: Mapping[str, Any], console: Console) -> None:
    """The preset's lines: each suite's score, the combined index and the total cost."""
    from rich.text import Text

    for m in summary["models"]:
        parts = []
        for s in m["suites"]:
            if s["score"] is None:
                parts.append(f"{s['suite']} -")
            else:
                parts.append(f"{s['suite']} {_pct(s['score'])} [{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]")
        console.print(Text(f"{summary['preset']} {m['model']}: " + "; ".join(parts)))
        index = (
            "-"
            if m["index"] is None
            else (f"{_pct(m['index'])} [{_pct(m['index_ci_low'])}, {_pct(m['index_ci_high'])}]")
        )
        line = f"{summary['preset']} {m['model']}: index {index}; total {_usd(m['spent_usd'])}"
        if m["study_usd"] is not None:
            line += f" (the study paid {_usd(m['study_usd'])} for the full seven)"
        console.print(Text(line))
