"""The report's charts as Vega-Lite specifications (plain dicts), one :class:`Chart` per figure.

Each chart names its marks (``name`` on a layer becomes the CSS class ``<name>_marks`` of the SVG group
the marks are drawn in) and says how many marks it draws (:attr:`Chart.marks`), so the browser test can
count them. Simulated spend is marked in every chart: paler marks (``opacity`` by ``spend``, with a
legend) and a subtitle saying the money was not real.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.report_html.data import COST_KINDS, TOKEN_KINDS, ReportData

__all__ = ["Chart", "build_charts"]

WIDTH = 280
HEIGHT = 300
#: Colour-blind-safe palettes (Okabe-Ito for models; an ordered blue-to-orange ramp for kinds).
MODEL_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
KIND_COLOURS = {
    "uncached input": "#08519c",
    "cached input": "#6baed6",
    "cache write": "#9ecae1",
    "reasoning": "#e6550d",
    "visible output": "#fdae6b",
    "usage unknown (charged its reservation)": "#7f7f7f",
    "unsettled (counted at worst case)": "#bdbdbd",
}
ROLE_COLOURS = {"target": "#0072B2", "judge": "#D55E00"}


@dataclass
class Chart:
    """One figure of the report."""

    key: str
    """Element id suffix (``view-<key>``) and the spec's name."""
    title: str
    caption: str
    spec: dict[str, Any] | None
    """None: no chart, only the note in the caption and the table."""
    marks: dict[str, int]
    """CSS class of a mark group in the drawn SVG -> how many marks the chart draws in such groups."""
    table: list[dict[str, str]] = field(default_factory=list)
    """The figures behind the chart, as text (shown under it, and read by screen readers)."""


def _label(row: Mapping[str, Any]) -> str:
    return str(row["model"]) if row["spend"] == "real" else f"{row['model']} (simulated)"


def _money(nano: int | None) -> str:
    from harness.pricing.money import format_usd

    return "-" if nano is None else format_usd(nano)


def _spend_encoding() -> dict[str, Any]:
    return {
        "field": "spend",
        "type": "nominal",
        "title": "spend",
        "scale": {"domain": ["real", "simulated"], "range": [1.0, 0.45]},
    }


def _model_colour(models: Sequence[str]) -> dict[str, Any]:
    return {
        "field": "model",
        "type": "nominal",
        "title": "model",
        "scale": {"domain": list(models), "range": [MODEL_COLOURS[i % 8] for i in range(len(models))]},
    }


def _base(title: str, data: ReportData, description: str) -> dict[str, Any]:
    """What every spec shares. The title is the figure's HTML heading, not drawn in the chart; the
    description is the chart's accessible name (``aria-label`` of its SVG)."""
    note = " Simulated spend (no real money) is drawn paler." if data.simulated else ""
    return {
        "description": f"{title}: {description}.{note}",
        "width": WIDTH,
        "config": {
            "font": "system-ui, sans-serif",
            "view": {"stroke": None},
            "legend": {"labelLimit": 230, "orient": "bottom", "direction": "vertical", "columns": 1},
            "axis": {"labelFontSize": 11, "titleFontSize": 12},
        },
    }


def _headline(data: ReportData, models: Sequence[str]) -> Chart | None:
    rows = [dict(r) for r in data.models if r["score"] is not None]
    if not rows:
        return None
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] > 0]
    log = bool(costs) and len(costs) == len(rows) and max(costs) / min(costs) >= 10
    x = {
        "field": "cost_usd",
        "type": "quantitative",
        "title": "cost to run (USD)",
        "scale": {"type": "log"} if log else {"zero": False, "padding": 24},
        "axis": {"format": "$,.4~f"},
    }
    tooltip = [
        {"field": "label", "title": "model"},
        {"field": "score", "format": ".1%", "title": "score"},
        {"field": "ci_low", "format": ".1%", "title": "95% CI low"},
        {"field": "ci_high", "format": ".1%", "title": "95% CI high"},
        {"field": "cost_usd", "format": "$,.4f", "title": "cost"},
        {"field": "scored", "title": "scored answers"},
    ]
    y = {"type": "quantitative", "scale": {"domain": [0, 1]}, "axis": {"format": ".0%"}}
    spec = _base("Score against cost per model", data, "accuracy with its 95% interval against dollars spent")
    spec.update(
        width=900,
        height=380,
        data={"values": rows},
        layer=[
            {
                "name": "score_ci",
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {
                    "x": x,
                    "y": {**y, "field": "ci_low", "title": "score (accuracy, 95% CI)"},
                    "y2": {"field": "ci_high"},
                    "color": _model_colour(models),
                    "opacity": _spend_encoding(),
                    "tooltip": tooltip,
                },
            },
            {
                "name": "score_points",
                "mark": {"type": "point", "filled": True, "size": 90},
                "encoding": {
                    "x": x,
                    "y": {**y, "field": "score"},
                    "color": _model_colour(models),
                    "opacity": _spend_encoding(),
                    "shape": {"field": "spend", "type": "nominal", "legend": None},
                    "tooltip": tooltip,
                },
            },
            {
                "name": "score_labels",
                "mark": {"type": "text", "align": "left", "dx": 8, "dy": -8, "fontSize": 11},
                "encoding": {"x": x, "y": {**y, "field": "score"}, "text": {"field": "label"}},
            },
        ],
    )
    table = [
        {
            "model": _label(r),
            "score": f"{100 * r['score']:.1f}%",
            "95% CI": f"{100 * r['ci_low']:.1f}% - {100 * r['ci_high']:.1f}%",
            "scored answers": str(r["scored"]),
            "cost to run": _money(r["cost_nano"]),
            "suites": ", ".join(r["suites"]),
        }
        for r in rows
    ]
    caption = (
        "Each point is a model's accuracy over every scored answer of the selected runs (all "
        "benchmarks pooled; repeats of an item count as one cluster), with its 95% interval, against "
        "what its answers cost. Answers reused from the response cache count at what they cost to buy."
    )
    return Chart(
        "score",
        "Score against cost",
        caption,
        spec,
        {f"score_{n}_marks": len(rows) for n in ("points", "ci", "labels")},
        table,
    )


def _bars(
    key: str,
    title: str,
    caption: str,
    data: ReportData,
    rows: list[dict[str, Any]],
    value: str,
    value_title: str,
    value_format: str,
    colour: dict[str, Any],
    *,
    per_model: bool,
    description: str,
) -> Chart:
    """Horizontal bars: one panel per benchmark with a bar per model (``per_model``), stacked by
    ``colour``'s field; else one bar per benchmark."""
    for r in rows:
        r.setdefault("label", _label(r))
    encoding: dict[str, Any] = {
        "y": {
            "field": "label" if per_model else "suite",
            "type": "nominal",
            "title": None,
            "axis": {"labelLimit": 210},
        },
        "x": {
            "field": value,
            "type": "quantitative",
            "title": value_title,
            "stack": "zero",
            "axis": {"format": value_format},
        },
        "color": colour,
        "opacity": _spend_encoding(),
        "tooltip": [
            {"field": "suite", "title": "benchmark"},
            {"field": "label", "title": "model"},
            *([{"field": "kind", "title": "kind"}] if "kind" in rows[0] else []),
            {"field": value, "title": value_title, "format": value_format.replace("~", "")},
        ],
    }
    if "order" in rows[0]:
        encoding["order"] = {"field": "order", "type": "ordinal"}
    spec = _base(title, data, description)
    spec.update(name=f"{key}_bars", data={"values": rows}, mark={"type": "bar"}, encoding=encoding)
    spec["height"] = {"step": 24}
    if per_model:
        encoding["row"] = {
            "field": "suite",
            "type": "nominal",
            "title": "benchmark",
            "header": {"labelAngle": 0, "labelAlign": "left", "labelFontWeight": "bold"},
        }
        # Each benchmark's panel lists only the models that ran it.
        spec["resolve"] = {"scale": {"y": "independent"}}
        marks = f"{key}_bars_child_marks"
    else:
        marks = f"{key}_bars_marks"
        spec["layer"] = [{"name": f"{key}_bars", "mark": spec.pop("mark"), "encoding": spec.pop("encoding")}]
        del spec["name"]
    return Chart(key, title, caption, spec, {marks: len(rows)})


def _kind_colour(kinds: Sequence[str]) -> dict[str, Any]:
    return {
        "field": "kind",
        "type": "nominal",
        "title": "kind",
        "sort": list(kinds),
        "scale": {"domain": list(kinds), "range": [KIND_COLOURS[k] for k in kinds]},
    }


def _cost_charts(data: ReportData, models: Sequence[str]) -> list[Chart]:
    if not data.costs:
        return []
    by_model: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in data.costs:
        by_model[(r["suite"], r["model"], r["spend"])] += r["nano"]
    model_rows: list[dict[str, Any]] = [
        {"suite": s, "model": m, "spend": sp, "nano": n, "usd": n / 1e9} for (s, m, sp), n in by_model.items()
    ]
    kinds = [k for k in COST_KINDS if any(r["kind"] == k for r in data.costs)]
    first = _bars(
        "cost_model",
        "Cost per benchmark, by model",
        "What each benchmark cost, stacked by model: settled spend, plus open reservations at their "
        "worst case when a run is still going or was cut off.",
        data,
        model_rows,
        "usd",
        "USD",
        "$,.4~f",
        _model_colour(models),
        per_model=False,
        description="Dollars per benchmark, stacked by model",
    )
    first.table = [
        {"benchmark": r["suite"], "model": _label(r), "cost": _money(r["nano"])}
        for r in sorted(model_rows, key=lambda r: (r["suite"], r["model"], r["spend"]))
    ]
    second = _bars(
        "cost_kind",
        "Cost per benchmark and model, by token kind",
        "Each call's cost split at the price row it was charged at: uncached input, cached input, "
        "cache writes, reasoning (billed as output) and visible output. A call whose usage never "
        "arrived counts at the reservation it was charged; one bar per model in each benchmark.",
        data,
        [dict(r) for r in data.costs],
        "usd",
        "USD",
        "$,.4~f",
        _kind_colour(kinds),
        per_model=True,
        description="Dollars per benchmark and model, stacked by token kind",
    )
    second.table = [
        {"benchmark": r["suite"], "model": _label(r), "kind": r["kind"], "cost": _money(r["nano"])}
        for r in data.costs
    ]
    return [first, second]


def _token_chart(data: ReportData) -> Chart | None:
    if not data.tokens:
        return None
    kinds = [k for k in TOKEN_KINDS if any(r["kind"] == k for r in data.tokens)]
    chart = _bars(
        "tokens",
        "Tokens per benchmark and model",
        "Billed tokens of every call, by kind; reasoning tokens are billed as output but never shown.",
        data,
        [dict(r) for r in data.tokens],
        "tokens",
        "tokens",
        ",.3~s",
        _kind_colour(kinds),
        per_model=True,
        description="Tokens per benchmark and model, stacked by token kind",
    )
    chart.table = [
        {"benchmark": r["suite"], "model": _label(r), "kind": r["kind"], "tokens": f"{r['tokens']:,}"}
        for r in data.tokens
    ]
    return chart


def _per_correct_charts(data: ReportData, models: Sequence[str]) -> list[Chart]:
    out = []
    rows = [dict(r) for r in data.per_correct if r["per_correct_nano"] is not None]
    if rows:
        chart = _bars(
            "per_correct",
            "Dollars per correct answer",
            "What the answers of a model on a benchmark cost, divided by its correct answers (rounded "
            "up to the nano-dollar); a model with no correct answer has no bar.",
            data,
            rows,
            "per_correct_usd",
            "USD per correct answer",
            "$,.5~f",
            _model_colour(models),
            per_model=True,
            description="Dollars per correct answer per benchmark and model",
        )
        chart.table = [
            {
                "benchmark": r["suite"],
                "model": _label(r),
                "correct": str(r["correct"]),
                "$ per correct": _money(r["per_correct_nano"]),
            }
            for r in rows
        ]
        out.append(chart)
    rows = [dict(r) for r in data.per_correct]
    if rows and not any(r["unusable_nano"] for r in rows):
        note = "Every answer could be scored: nothing was spent on unusable answers."
        table = [{"benchmark": r["suite"], "model": _label(r), "unusable answers": "0"} for r in rows]
        out.append(Chart("unusable", "Spend on answers that could not be scored", note, None, {}, table))
    elif rows:
        chart = _bars(
            "unusable",
            "Spend on answers that could not be scored",
            "Money spent on answers that were empty, truncated, refused or had no extractable answer "
            "(no bar: every answer of that model could be scored).",
            data,
            rows,
            "unusable_usd",
            "USD on unusable answers",
            "$,.4~f",
            _model_colour(models),
            per_model=True,
            description="Dollars spent on unusable answers per benchmark and model",
        )
        chart.table = [
            {
                "benchmark": r["suite"],
                "model": _label(r),
                "unusable answers": str(r["unusable"]),
                "spent on them": _money(r["unusable_nano"]),
            }
            for r in rows
        ]
        out.append(chart)
    return out


def _role_chart(data: ReportData) -> Chart | None:
    if not data.has_judge:
        return None
    rows = [dict(r) for r in data.roles]
    roles = sorted({r["role"] for r in rows}, key=lambda r: (r != "target", r))
    colour = {
        "field": "role",
        "type": "nominal",
        "title": "role",
        "scale": {"domain": roles, "range": [ROLE_COLOURS.get(r, "#7f7f7f") for r in roles]},
    }
    spec = _base("Target against judge dollars", data, "dollars per model, stacked by call role")
    spec["height"] = {"step": 28}
    spec["layer"] = [
        {
            "name": "roles_bars",
            "mark": {"type": "bar"},
            "encoding": {
                "y": {"field": "label", "type": "nominal", "title": None, "axis": {"labelLimit": 210}},
                "x": {
                    "field": "usd",
                    "type": "quantitative",
                    "title": "USD",
                    "stack": "zero",
                    "axis": {"format": "$,.4~f"},
                },
                "color": colour,
                "opacity": _spend_encoding(),
                "tooltip": [
                    {"field": "label", "title": "model"},
                    {"field": "role"},
                    {"field": "usd", "title": "USD", "format": "$,.4f"},
                ],
            },
        }
    ]
    spec["data"] = {"values": rows}
    return Chart(
        "roles",
        "Target against judge dollars",
        "What the models under test (target) cost against what the judge model that scored their "
        "answers cost, per model under test.",
        spec,
        {"roles_bars_marks": len(rows)},
        [{"model": _label(r), "role": r["role"], "spent": _money(r["nano"])} for r in rows],
    )


def _forecast_chart(data: ReportData) -> Chart | None:
    rows = [dict(r) for r in data.forecasts]
    if not rows:
        return None
    y = {"field": "label", "type": "nominal", "title": None, "axis": {"labelLimit": 260}}
    spec = _base("Forecast against actual", data, "forecast spend with its 95% interval and actual spend")
    spec["height"] = {"step": 32}
    tooltip = [
        {"field": "model", "title": "model"},
        {"field": "run", "title": "run"},
        {"field": "expected_usd", "title": "forecast", "format": "$,.4f"},
        {"field": "lower_usd", "title": "95% low", "format": "$,.4f"},
        {"field": "upper_usd", "title": "95% high", "format": "$,.4f"},
        {"field": "actual_usd", "title": "actual", "format": "$,.4f"},
    ]
    x = {"type": "quantitative", "title": "USD", "axis": {"format": "$,.4~f"}}
    spec["data"] = {"values": rows}
    spec["layer"] = [
        {
            "name": "forecast_range",
            "mark": {"type": "rule", "strokeWidth": 3, "color": "#9e9e9e"},
            "encoding": {
                "x": {**x, "field": "lower_usd"},
                "x2": {"field": "upper_usd"},
                "y": y,
                "opacity": _spend_encoding(),
                "tooltip": tooltip,
            },
        },
        {
            "name": "forecast_expected",
            "mark": {"type": "tick", "thickness": 3, "color": "#424242"},
            "encoding": {"x": {**x, "field": "expected_usd"}, "y": y, "tooltip": tooltip},
        },
        {
            "name": "forecast_actual",
            "mark": {"type": "point", "filled": True, "size": 110, "shape": "diamond", "color": "#D55E00"},
            "encoding": {
                "x": {**x, "field": "actual_usd"},
                "y": y,
                "opacity": _spend_encoding(),
                "tooltip": tooltip,
            },
        },
    ]
    table = [
        {
            "model": _label(r),
            "run": r["run"],
            "forecast": _money(r["expected_nano"]),
            "95% interval": f"{_money(r['lower_nano'])} - {_money(r['upper_nano'])}",
            "actual": _money(r["actual_nano"]),
        }
        for r in rows
    ]
    return Chart(
        "forecast",
        "Forecast against actual",
        "The forecast `tollbench run` made before spending (grey: its 95% interval; dark tick: the "
        "expected cost) against what the model then spent in that run (diamond).",
        spec,
        {f"forecast_{n}_marks": len(rows) for n in ("range", "expected", "actual")},
        table,
    )


def build_charts(data: ReportData) -> list[Chart]:
    """Every chart the data supports, in the order the report shows them."""
    models = sorted({r["model"] for r in data.results} | {r["model"] for r in data.roles})
    charts: list[Chart | None] = [
        _headline(data, models),
        *_cost_charts(data, models),
        _token_chart(data),
        *_per_correct_charts(data, models),
        _role_chart(data),
        _forecast_chart(data),
    ]
    return [c for c in charts if c is not None]
