"""The report as one self-contained HTML page: styles, data, chart specs and the chart runtime inline.

Charts are Vega-Lite specifications compiled to Vega in Python by ``vl-convert-python`` (the optional
``report`` extra); the page carries the runtime that draws them (Vega and vega-embed: SVG with ARIA
labels, and tooltips), taken from the same package (:func:`vl_convert.javascript_bundle`), so nothing
is fetched when the page is opened: a Content-Security-Policy with ``default-src 'none'`` makes sure
of it. Every chart has the figures behind it in a table under it, which also serves readers without
JavaScript.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from harness.errors import ConfigError
from harness.pricing.money import format_usd
from harness.report_html.charts import Chart, build_charts
from harness.report_html.data import ReportData

__all__ = ["VEGA_LITE_VERSION", "render_html", "runtime_available"]

#: The Vega-Lite version the specs are compiled with (one that vl-convert 1.9 bundles).
VEGA_LITE_VERSION = "6.4"
_MISSING = "tollbench report needs the report extra: pip install 'tollbench[report]' (vl-convert-python)"

#: Nothing may be loaded: no network, no other file. Vega compiles its expressions with ``Function``.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

_STYLE = """
:root { color-scheme: light; --fg: #1b1b1b; --muted: #5a5a5a; --line: #d9d9d9; --sim: #8a4b00; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 24px; max-width: 1320px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 8px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.sim-banner { border: 2px dashed var(--sim); color: var(--sim); padding: 8px 12px; margin: 0 0 16px;
              font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 24px; }
.sim-note { color: var(--sim); font-size: 13px; margin: 0 0 8px; }
figure { margin: 0; padding: 16px; border: 1px solid var(--line); border-radius: 6px; min-width: 0; }
figure.headline { grid-column: 1 / -1; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 8px; }
.view { min-height: 120px; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; }
details summary { cursor: pointer; color: var(--muted); font-size: 13px; margin-top: 8px; }
.tag-sim { color: var(--sim); font-weight: 600; }
section.runs { margin-bottom: 24px; overflow-x: auto; }
@media print { .grid { display: block; } figure { break-inside: avoid; margin-bottom: 16px; } }
"""

_RENDER = """
(function () {
  var specs = JSON.parse(document.getElementById("tb-specs").textContent);
  var keys = Object.keys(specs);
  Promise.all(keys.map(function (key) {
    return vegaEmbed("#view-" + key, specs[key], { mode: "vega", renderer: "svg", actions: false });
  })).then(function () {
    document.body.setAttribute("data-rendered", String(keys.length));
  }).catch(function (err) {
    document.body.setAttribute("data-rendered", "error");
    console.error("tollbench report: a chart could not be drawn: " + err);
  });
})();
"""


def runtime_available() -> bool:
    """Whether the chart runtime (the ``report`` extra) is installed."""
    try:
        import vl_convert  # noqa: F401
    except ImportError:
        return False
    return True


def _vlc() -> Any:
    try:
        import vl_convert
    except ImportError:
        raise ConfigError(_MISSING) from None
    return vl_convert


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def _compile(vlc: Any, vega_lite: Mapping[str, Any]) -> dict[str, Any]:
    spec = vlc.vegalite_to_vega(dict(vega_lite), vl_version=VEGA_LITE_VERSION)
    if not isinstance(spec, dict):  # pragma: no cover - vl-convert returns a dict
        spec = json.loads(spec)
    spec.pop("$schema", None)  # a URL nothing needs to load
    return dict(spec)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(rows: Sequence[Mapping[str, str]], caption: str | None = None) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    cap = f"<caption class='sr-only'>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _runs_table(data: ReportData) -> str:
    cols = ("run", "started (UTC)", "status", "suites", "models", "budget", "spent", "unsettled", "spend")
    head = "".join(f'<th scope="col"{" class=num" if c in cols[5:8] else ""}>{_e(c)}</th>' for c in cols)
    rows = []
    for r in data.runs:
        sim = r["spend"] == "simulated"
        spend = '<span class="tag-sim">SIMULATED</span>' if sim else "real"
        cells = [
            _e(r["id"]),
            _e(str(r["started"] or "")[:19].replace("T", " ")),
            _e(r["status"]),
            _e(", ".join(r["suites"])),
            _e(", ".join(r["models"])),
        ]
        money = [format_usd(r[k]) for k in ("budget_nano", "spent_nano", "unsettled_nano")]
        row = "".join(f"<td>{c}</td>" for c in cells)
        row += "".join(f'<td class="num">{_e(m)}</td>' for m in money)
        rows.append(f"<tr>{row}<td>{spend}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(chart: Chart, simulated: bool) -> str:
    cls = ' class="headline"' if chart.key == "score" else ""
    note = ""
    if simulated and chart.spec is not None:
        note = '<p class="sim-note">Includes SIMULATED spend (no real money), drawn paler.</p>'
    view = "" if chart.spec is None else f'<div class="view" id="view-{chart.key}"></div>'
    return (
        f'<figure id="chart-{chart.key}"{cls} data-marks="{_e(_script_json(chart.marks))}">'
        f"<h2>{_e(chart.title)}</h2>{note}{view}"
        f"<figcaption>{_e(chart.caption)}</figcaption>"
        f"<details><summary>The figures</summary>{_table(chart.table, chart.title)}</details>"
        "</figure>"
    )


def render_html(data: ReportData, *, now: datetime | None = None) -> str:
    """The whole report page for ``data``.

    Raises:
        ConfigError: the ``report`` extra (vl-convert-python) is not installed.
    """
    vlc = _vlc()
    charts = build_charts(data)
    specs = {c.key: _compile(vlc, c.spec) for c in charts if c.spec is not None}
    runtime = vlc.javascript_bundle("window.vegaEmbed = vegaEmbed;").replace("</script", "<\\/script")
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    n = len(data.runs)
    title = f"tollbench report: {n} run{'s' if n != 1 else ''}"
    banner = ""
    if data.simulated:
        sims = sum(r["spend"] == "simulated" for r in data.runs)
        banner = (
            f'<p class="sim-banner" role="note">{sims} of {n} run{"s" if n != 1 else ""} '
            "SIMULATED: their spend is no real money, and every chart draws it paler.</p>"
        )
    empty = "" if charts else "<p>No calls were recorded in these runs: there is nothing to chart.</p>"
    figures = "".join(_figure(c, data.simulated) for c in charts)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="tollbench">'
        f"<title>{_e(title)}</title><style>{_STYLE}.sr-only{{position:absolute;left:-9999px}}</style>"
        "</head><body>"
        f"<header><h1>{_e(title)}</h1><p class='meta'>Generated {_e(when)} from the run database. "
        "Charts are drawn in this page; the figures behind each are in the table under it.</p>"
        "<noscript><p>JavaScript is off: the charts are not drawn, the tables under each title "
        "show the same figures.</p></noscript></header>"
        f"<main>{banner}<section class='runs'><h2>Runs</h2>{_runs_table(data)}</section>{empty}"
        f"<div class='grid'>{figures}</div></main>"
        f'<script type="application/json" id="tb-specs">{_script_json(specs)}</script>'
        f"<script>{runtime}</script><script>{_RENDER}</script>"
        "</body></html>\n"
    )
