"""What the HTML report shows, read from the run database: one plain data set per chart.

The per model and suite figures are :func:`harness.report.run_report_dict`'s (what ``show`` prints), the
runs table is ``runs``'s; two more reads split spend by token kind (each call's cost at the price row it
was charged at, :meth:`harness.pricing.cost.Price.cost_breakdown`) and by call role (target, judge).

Simulated and real spend are never added together: every row carries ``spend`` (``"real"`` or
``"simulated"``) and every group includes it, so a model run both ways appears twice, each marked.
Money stays in nano-dollars (``*_nano``) for the tables; ``*_usd`` floats exist only to be plotted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from harness.pricing.cost import Price
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.stats.intervals import accuracy_ci
from harness.store.engine import Store, calls_table, prices_table, runs_table
from harness.types import Usage

__all__ = [
    "COST_KINDS",
    "TOKEN_KINDS",
    "ReportData",
    "load_report_data",
    "select_runs",
]

#: Token kinds of the cost and token charts, in stacking order.
TOKEN_KINDS = ("uncached input", "cached input", "cache write", "reasoning", "visible output")
#: Cost kinds: the token kinds, then spend no token count explains.
COST_KINDS = (
    *TOKEN_KINDS,
    "usage unknown (charged its reservation)",
    "unsettled (counted at worst case)",
)


def _spend(simulated: Any) -> str:
    return "simulated" if simulated else "real"


def _usd(nano: int) -> float:
    return nano / 1e9


@dataclass
class ReportData:
    """Every data set of the report (lists of JSON-able dicts), built by :func:`load_report_data`."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    """One row per run: id, started, status, suites, models, budget/spent/unsettled nano, spend."""
    results: list[dict[str, Any]] = field(default_factory=list)
    """Per run, model and suite: ``run_report_dict``'s result rows with nano amounts and ``spend``."""
    models: list[dict[str, Any]] = field(default_factory=list)
    """Headline: per model and spend, the pooled score with its interval and the cost to run."""
    costs: list[dict[str, Any]] = field(default_factory=list)
    """Per suite, model, spend and cost kind: nano and usd."""
    tokens: list[dict[str, Any]] = field(default_factory=list)
    """Per suite, model, spend and token kind: tokens."""
    per_correct: list[dict[str, Any]] = field(default_factory=list)
    """Per suite, model and spend: dollars per correct answer and spend on unusable answers."""
    roles: list[dict[str, Any]] = field(default_factory=list)
    """Per model, spend and call role: nano and usd (shown only when a judge ran)."""
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    """Per run and model with a stored forecast: expected, lower, upper and actual spend."""

    @property
    def simulated(self) -> bool:
        """Whether any selected run is simulated."""
        return any(r["spend"] == "simulated" for r in self.runs)

    @property
    def has_judge(self) -> bool:
        return any(r["role"] == "judge" for r in self.roles)


def select_runs(store: Store, run_ids: Sequence[str] = (), since: date | None = None) -> list[str]:
    """The runs a report covers: ``run_ids`` (in that order, each once) then every run created on or
    after ``since`` (UTC day, oldest first).

    Raises:
        KeyError: a run id that is not in the database (the first such id).
    """
    chosen: list[str] = []
    for run_id in run_ids:
        if store.get_run(run_id) is None:
            raise KeyError(run_id)
        if run_id not in chosen:
            chosen.append(run_id)
    if since is not None:
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        r = runs_table
        stmt = sa.select(r.c.id).where(r.c.created_at >= start).order_by(r.c.created_at, r.c.id)
        with store.begin_read("listing runs") as conn:
            for row in conn.execute(stmt):
                if row.id not in chosen:
                    chosen.append(str(row.id))
    return chosen


def _nano(text: str | None) -> int:
    return 0 if text is None else usd_to_nano(Decimal(text))


def load_report_data(store: Store, run_ids: Sequence[str]) -> ReportData:
    """Read everything the report shows about ``run_ids`` (as :func:`select_runs` gives them)."""
    data = ReportData()
    outcomes: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for run_id in run_ids:
        report = run_report_dict(store, run_id)
        spend = _spend(report["simulated"])
        data.runs.append(
            {
                "id": report["id"],
                "started": report["created_at"],
                "status": report["status"],
                "suites": report["suites"],
                "models": report["models"],
                "budget_nano": _nano(report["budget_usd"]),
                "spent_nano": _nano(report["spent_usd"]),
                "unsettled_nano": _nano(report["unsettled_usd"]),
                "spend": spend,
            }
        )
        for r in report["results"]:
            row = {k: v for k, v in r.items() if not k.endswith("_usd")}
            row.update(
                run=run_id,
                spend=spend,
                spent_nano=_nano(r["spent_usd"]),
                saved_nano=_nano(r["saved_usd"]),
                unusable_nano=_nano(r["unusable_usd"]),
            )
            data.results.append(row)
        for item in store.item_results(run_id):
            if item["status"] == "scored" and item["correct"] is not None:
                # Repeats of an item (also across runs) cluster in the interval, as in ``show``.
                key = f"{item['suite']}\x00{item['item_id']}"
                outcomes[(str(item["model"]), spend)].append((key, bool(item["correct"])))
        _add_forecast(data, report)
    data.models = _models(data.results, outcomes)
    data.tokens = _tokens(data.results)
    data.per_correct = _per_correct(data.results)
    data.costs = _costs(store, run_ids, {r["id"]: r["spend"] for r in data.runs})
    data.roles = _roles(store, run_ids, {r["id"]: r["spend"] for r in data.runs})
    _label_models(data)
    return data


def _label_models(data: ReportData) -> None:
    """A chart names a model by its name, with ``(simulated)`` only where the same model also has
    real spend (paleness and the notes already mark simulated spend; the tables always say)."""
    spends: dict[str, set[str]] = defaultdict(set)
    for r in data.results:
        spends[r["model"]].add(r["spend"])
    for rows in (data.models, data.costs, data.tokens, data.per_correct, data.roles, data.forecasts):
        for r in rows:
            both = len(spends.get(r["model"], ())) > 1
            name = f"{r['model']} (simulated)" if both and r["spend"] == "simulated" else r["model"]
            r["label"] = f"{name} · {r['run'][-6:]}" if "run" in r else name


def _group(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[Any]]:
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def _models(
    results: Sequence[Mapping[str, Any]], outcomes: Mapping[tuple[str, str], list[tuple[str, bool]]]
) -> list[dict[str, Any]]:
    out = []
    for (model, spend), rows in sorted(_group(results, ("model", "spend")).items()):
        ci = accuracy_ci(outcomes.get((model, spend), []))
        # The cost to run a model prices every answer, also those reused from the response cache at
        # what they cost to buy (as $/correct does in ``show``).
        cost = sum(r["spent_nano"] + r["saved_nano"] for r in rows)
        out.append(
            {
                "model": model,
                "spend": spend,
                "suites": sorted({r["suite"] for r in rows}),
                "scored": sum(r["scored"] for r in rows),
                "correct": sum(r["correct"] for r in rows),
                "score": None if ci is None else ci.accuracy,
                "ci_low": None if ci is None else ci.low,
                "ci_high": None if ci is None else ci.high,
                "ci_method": None if ci is None else ci.method,
                "cost_nano": cost,
                "cost_usd": _usd(cost),
            }
        )
    return out


def _tokens(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for (suite, model, spend), rows in sorted(_group(results, ("suite", "model", "spend")).items()):
        output = sum(r["output_tokens"] for r in rows)
        reasoning = sum(r["reasoning_tokens"] for r in rows)
        counts = {
            "uncached input": sum(r["input_tokens"] for r in rows),
            "cached input": sum(r["cache_read_tokens"] for r in rows),
            "cache write": sum(r["cache_write_tokens"] for r in rows),
            "reasoning": reasoning,
            "visible output": output - reasoning,
        }
        for order, kind in enumerate(TOKEN_KINDS):
            if counts[kind]:
                out.append(
                    {
                        "suite": suite,
                        "model": model,
                        "spend": spend,
                        "kind": kind,
                        "order": order,
                        "tokens": counts[kind],
                    }
                )
    return out


def _per_correct(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for (suite, model, spend), rows in sorted(_group(results, ("suite", "model", "spend")).items()):
        correct = sum(r["correct"] for r in rows)
        answer_cost = sum(r["spent_nano"] + r["saved_nano"] for r in rows)
        per = -(-answer_cost // correct) if correct else None
        unusable = sum(r["unusable_nano"] for r in rows)
        out.append(
            {
                "suite": suite,
                "model": model,
                "spend": spend,
                "correct": correct,
                "unusable": sum(r["unusable"] for r in rows),
                "per_correct_nano": per,
                "per_correct_usd": None if per is None else _usd(per),
                "unusable_nano": unusable,
                "unusable_usd": _usd(unusable),
            }
        )
    return out


def _service_tier(call: Mapping[str, Any]) -> str | None:
    tier = call.get("service_tier")
    if isinstance(tier, str):
        return tier
    raw = call.get("raw_usage")
    tier = raw.get("service_tier") if isinstance(raw, Mapping) else None
    return tier if isinstance(tier, str) else None


def _call_costs(call: Mapping[str, Any], price: Price | None) -> dict[str, int]:
    """One call's spend split by kind (nano; the parts add up to what the call was charged)."""
    if call["status"] == "reserved":
        return {COST_KINDS[6]: int(call["reserved_nano"] or 0)}
    charged = int(call["cost_nano"] or 0)
    if charged == 0 or call.get("cached"):
        return {}
    if not call.get("usage_known") or price is None:
        return {COST_KINDS[5]: charged}
    usage = Usage(
        input_uncached=int(call["input_uncached"] or 0),
        cache_read=int(call["cache_read"] or 0),
        cache_write_5m=int(call["cache_write_5m"] or 0),
        cache_write_1h=int(call["cache_write_1h"] or 0),
        output=int(call["output_tokens"] or 0),
        reasoning=int(call["reasoning_tokens"] or 0),
    )
    try:
        parts = price.cost_breakdown(usage, service_tier=_service_tier(call))
    except ValueError:  # a usage the meter could not have priced
        return {COST_KINDS[5]: charged}
    output = parts["output"]
    reasoning = output * usage.reasoning / usage.output if usage.output else Decimal(0)
    usd = {
        "uncached input": parts["input_uncached"],
        "cached input": parts["cache_read"],
        "cache write": parts["cache_write_5m"] + parts["cache_write_1h"],
        "reasoning": reasoning,
        "visible output": output - reasoning,
    }
    nano = {k: int(v * 10**9) for k, v in usd.items()}  # floor; the meter rounded the sum up once
    # The meter's single rounding up (and any price change since) goes to the call's largest part,
    # so a chart's bars add up to the recorded spend to the nano-dollar.
    largest = max(nano, key=lambda k: nano[k])
    nano[largest] += charged - sum(nano.values())
    return {k: v for k, v in nano.items() if v}


def _prices(store: Store, ids: set[str]) -> dict[str, Price | None]:
    out: dict[str, Price | None] = {}
    wanted = sorted(ids)
    with store.begin_read("reading price rows") as conn:
        for chunk in range(0, len(wanted), 500):
            stmt = sa.select(prices_table.c.id, prices_table.c.row).where(
                prices_table.c.id.in_(wanted[chunk : chunk + 500])
            )
            for row in conn.execute(stmt):
                try:
                    out[str(row.id)] = Price.from_dict(row.row)
                except (ValueError, TypeError, KeyError):
                    out[str(row.id)] = None
    return out


def _costs(store: Store, run_ids: Sequence[str], spend: Mapping[str, str]) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for run_id in run_ids:
        calls = store.calls(run_id)
        prices = _prices(store, {str(c["price_id"]) for c in calls if c.get("price_id")})
        for call in calls:
            price = prices.get(str(call["price_id"])) if call.get("price_id") else None
            for kind, nano in _call_costs(call, price).items():
                totals[(str(call["suite"]), str(call["model"]), spend[run_id], kind)] += nano
    out = []
    for (suite, model, sp, kind), nano in sorted(totals.items(), key=lambda kv: (kv[0][:3], kv[0][3])):
        if nano:
            out.append(
                {
                    "suite": suite,
                    "model": model,
                    "spend": sp,
                    "kind": kind,
                    "order": COST_KINDS.index(kind),
                    "nano": nano,
                    "usd": _usd(nano),
                }
            )
    return out


def _roles(store: Store, run_ids: Sequence[str], spend: Mapping[str, str]) -> list[dict[str, Any]]:
    c = calls_table
    charged = sa.case((c.c.status == "reserved", c.c.reserved_nano), else_=sa.func.coalesce(c.c.cost_nano, 0))
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    with store.begin_read("summing spend by role") as conn:
        for chunk in range(0, len(run_ids), 500):
            stmt = (
                sa.select(c.c.run_id, c.c.model, c.c.role, sa.func.sum(charged).label("nano"))
                .where(c.c.run_id.in_(list(run_ids[chunk : chunk + 500])))
                .group_by(c.c.run_id, c.c.model, c.c.role)
            )
            for row in conn.execute(stmt):
                totals[(str(row.model), spend[str(row.run_id)], str(row.role))] += int(row.nano or 0)
    return [
        {"model": m, "spend": s, "role": role, "nano": nano, "usd": _usd(nano)}
        for (m, s, role), nano in sorted(totals.items())
    ]


def _add_forecast(data: ReportData, report: Mapping[str, Any]) -> None:
    """The forecast ``run`` stored before spending (``config["forecast"]``), per model, against what
    the model then spent in that run."""
    forecast = (report.get("config") or {}).get("forecast")
    if not isinstance(forecast, Mapping) or not isinstance(forecast.get("rows"), list):
        return
    actual: dict[str, int] = defaultdict(int)
    for r in report["results"]:
        actual[r["model"]] += _nano(r["spent_usd"]) + _nano(r["unsettled_usd"])
    per_model: dict[str, list[int]] = {}
    for row in forecast["rows"]:
        try:
            values = [_nano(row[k]) for k in ("expected_usd", "lower_usd", "upper_usd")]
        except (KeyError, ArithmeticError, TypeError):
            continue
        acc = per_model.setdefault(str(row["model"]), [0, 0, 0])
        for i, v in enumerate(values):
            acc[i] += v
    spend = _spend(report["simulated"])
    for model, (expected, low, high) in per_model.items():
        data.forecasts.append(
            {
                "run": report["id"],
                "model": model,
                "spend": spend,
                "expected_nano": expected,
                "lower_nano": low,
                "upper_nano": high,
                "actual_nano": actual.get(model, 0),
                "expected_usd": _usd(expected),
                "lower_usd": _usd(low),
                "upper_usd": _usd(high),
                "actual_usd": _usd(actual.get(model, 0)),
            }
        )
