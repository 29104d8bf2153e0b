"""``tollbench report``: the HTML report of real simulator runs, opened in headless Chromium.

The runs are made by ``tollbench run --sim`` (the real SDKs against the simulator); the judge's calls,
which no code path makes yet, are rows inserted in the real schema. The browser tests need Debian's
``chromium`` and the ``report`` extra; where either is missing they are skipped, saying which.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.store.engine import Store
from tests.helpers.chromium import Chromium, chromium_path, png_pixels

try:
    import vl_convert  # noqa: F401

    HAVE_RUNTIME = True
except ImportError:
    HAVE_RUNTIME = False

needs_runtime = pytest.mark.skipif(not HAVE_RUNTIME, reason="the report extra (vl-convert-python) is missing")
needs_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
)
#: The only http(s) strings the chart runtime (vega-embed's bundle) contains, none of them fetched: XML
#: namespace names, vega-embed's "open in editor" action (turned off) and default schema, and an issue
#: link in an error message. The report's own markup, data and specs contain none.
RUNTIME_STRINGS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/2000/xmlns/",
    "https://vega.github.io/editor/",
    "https://vega.github.io/schema/vega/v6.json",
    "https://github.com/vega/vega-lite/issues/2415",
}


def _run(db: Path, *args: str) -> str:
    before = {r["id"] for r in _sql(db, "SELECT id FROM runs")} if db.exists() else set()
    code = main(["run", "demo", "--sim", "--db", str(db), *args])
    assert code == 0
    (new,) = {r["id"] for r in _sql(db, "SELECT id FROM runs")} - before
    return str(new)


def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute(sql, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def _add_judge_calls(db: Path, run_id: str, model: str, n: int) -> int:
    """Copy ``n`` of the model's answered calls as a judge's calls (role ``judge``); returns their cost."""
    rows = _sql(
        db,
        "SELECT * FROM calls WHERE run_id = ? AND model = ? AND status = 'ok' ORDER BY id LIMIT ?",
        (run_id, model, n),
    )
    assert len(rows) == n
    con = sqlite3.connect(db)
    try:
        for i, row in enumerate(rows):
            values = dict(row)
            values.update(id=f"judge-{i}-{row['id']}"[:64], role="judge", attempt=100 + i)
            cols = ", ".join(values)
            con.execute(
                f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' * len(values))})", list(values.values())
            )
        con.commit()
    finally:
        con.close()
    return sum(int(r["cost_nano"]) for r in rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two simulated runs: two reasoning models that answer, and one whose every answer is cut off
    (unusable, but paid for); then judge calls added to the first."""
    db = tmp_path_factory.mktemp("report") / "runs.db"
    a = _run(
        db,
        "-m",
        "openai/o4-mini",
        "-m",
        "anthropic/claude-haiku-4-5-thinking",
        "--limit",
        "8",
        "--budget",
        "5",
    )
    b = _run(db, "-m", "openai/gpt-4o-mini", "--limit", "6", "--max-output-tokens", "40", "--budget", "1")
    return {"db": db, "a": a, "b": b}


@pytest.fixture(scope="module")
def judged(runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the runs' database with three judge calls in run a."""
    db = tmp_path_factory.mktemp("judged") / "runs.db"
    src, dst = sqlite3.connect(runs["db"]), sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    judge_nano = _add_judge_calls(db, runs["a"], "openai/o4-mini", 3)
    return {**runs, "db": db, "judge_nano": judge_nano}


def _report(db: Path | str, out: Path, *args: str) -> str:
    assert main(["report", *args, "--db", str(db), "-o", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def _specs(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="tb-specs">(.*?)</script>', page, re.S)
    assert m
    return dict(json.loads(m.group(1)))


def _values(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for d in spec["data"] if "values" in d for v in d["values"]]


# -- the page, without a browser -------------------------------------------------------------------


@needs_runtime
def test_the_page_is_self_contained(judged: dict[str, Any], tmp_path: Path) -> None:
    page = _report(judged["db"], tmp_path / "r.html", judged["a"], judged["b"])
    # Nothing to load: no external script, style, image or frame in the markup (the scripts' text is
    # code and data, checked below), and no URL anywhere but namespace names.
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.S)
    assert not re.search(r"<(link|img|iframe|object|embed|base|frame|source|video|audio)\b", markup, re.I)
    assert not re.search(r"<script\b[^>]*\bsrc\b", markup, re.I)
    for attr in re.findall(
        r"\b(?:src|href|action|srcset|poster|data)\s*=\s*[\"']?([^\"'\s>]*)", markup, re.I
    ):
        assert not attr.lower().startswith(("http:", "https:", "//", "file:")), attr
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 3  # the specs (JSON), the runtime, the drawing code: all inline
    specs, runtime, drawing = scripts
    outside_runtime = page.replace(runtime, "")
    assert set(re.findall(r"https?://[^\s\"'<>)\\]+", outside_runtime)) == set()
    assert set(re.findall(r"https?://[^\s\"'<>)\\]+", runtime)) <= RUNTIME_STRINGS
    assert "default-src 'none'" in page  # and the browser would refuse any load anyway
    assert "vegaEmbed" in drawing and '"marks"' in specs


@needs_runtime
def test_judge_chart_only_when_a_judge_ran(
    runs: dict[str, Any], judged: dict[str, Any], tmp_path: Path
) -> None:
    plain = _specs(_report(runs["db"], tmp_path / "a.html", runs["a"], runs["b"]))
    assert "roles" not in plain
    specs = _specs(_report(judged["db"], tmp_path / "b.html", judged["a"], judged["b"]))
    roles = {(v["model"], v["role"]): v for v in _values(specs["roles"]) if "role" in v}
    assert roles[("openai/o4-mini", "judge")]["nano"] == judged["judge_nano"]
    assert {k[1] for k in roles} == {"target", "judge"}


@needs_runtime
def test_cost_by_kind_adds_up_to_the_spend(runs: dict[str, Any]) -> None:
    from harness.report_html import load_report_data

    with Store.open(f"sqlite:///{runs['db']}") as store:
        data = load_report_data(store, [runs["a"], runs["b"]])
    by_kind = Counter[tuple[str, str]]()
    for r in data.costs:
        by_kind[(r["suite"], r["model"])] += r["nano"]
    spent = {
        (r["suite"], r["model"]): int(r["spent"])
        for r in _sql(
            runs["db"], "SELECT suite, model, SUM(cost_nano) AS spent FROM calls GROUP BY suite, model"
        )
    }
    assert dict(by_kind) == spent  # to the nano-dollar
    kinds = {r["kind"] for r in data.costs}
    assert {"uncached input", "reasoning", "visible output"} <= kinds
    # gpt-4o-mini's answers were all cut off: paid for, never scored.
    unusable = {r["model"]: r for r in data.per_correct}
    assert unusable["openai/gpt-4o-mini"]["unusable_nano"] == spent[("demo", "openai/gpt-4o-mini")] > 0
    assert unusable["openai/gpt-4o-mini"]["per_correct_nano"] is None
    assert all(r["spend"] == "simulated" for r in data.runs)


@needs_runtime
@pytest.mark.postgres
def test_the_report_reads_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The same report from a run on PostgreSQL (the same queries serve both databases)."""
    assert (
        main(
            ["run", "demo", "--sim", "--db", pg_url, "-m", "openai/o4-mini", "--limit", "4", "--budget", "1"]
        )
        == 0
    )
    from harness.report_html import load_report_data, select_runs

    with Store.open(pg_url) as store:
        (run_id,) = select_runs(store, since=date(2000, 1, 1))
        data = load_report_data(store, [run_id])
        spent = store.get_run(run_id)["spent_nano"]  # type: ignore[index]
    assert sum(r["nano"] for r in data.costs) == spent > 0
    assert [r["model"] for r in data.models] == ["openai/o4-mini"] and data.forecasts
    page = _report(pg_url, tmp_path / "r.html", run_id)
    assert set(_specs(page)) == {"score", "cost_model", "cost_kind", "tokens", "per_correct", "forecast"}


def test_run_records_its_forecast(runs: dict[str, Any]) -> None:
    (row,) = _sql(runs["db"], "SELECT config FROM runs WHERE id = ?", (runs["a"],))
    forecast = json.loads(row["config"])["forecast"]
    assert {r["model"] for r in forecast["rows"]} == {"openai/o4-mini", "anthropic/claude-haiku-4-5-thinking"}
    assert Decimal(forecast["total"]["upper_usd"]) >= Decimal(forecast["total"]["expected_usd"]) > 0


@needs_runtime
def test_since_takes_every_run_from_that_day(runs: dict[str, Any], tmp_path: Path) -> None:
    page = _report(runs["db"], tmp_path / "r.html", "--since", "2000-01-01")
    assert runs["a"] in page and runs["b"] in page
    assert "tollbench report: 2 runs" in page


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "RUN_ID"),
        (["no-such-run"], "no-such-run"),
        (["--since", "last week"], "--since"),
        (["--since", "2999-01-01"], "no run started"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "r.html"
    assert main(["report", *args, "--db", str(runs["db"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert not out.exists()


def test_without_the_extra_it_says_how_to_install(
    runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)  # what an uninstalled package looks like to import
    assert main(["report", runs["a"], "--db", str(runs["db"]), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'tollbench[report]'" in err and "\n" not in err


# -- in the browser --------------------------------------------------------------------------------


def _expected_marks(db: Path, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """How many marks each chart must draw, counted from the database (not from the report code)."""
    marks = ",".join("?" * len(run_ids))
    scored = _sql(
        db,
        "SELECT COUNT(DISTINCT model) AS n FROM item_results WHERE status = 'scored'"
        f" AND run_id IN ({marks})",
        tuple(run_ids),
    )[0]["n"]
    pairs = _sql(
        db,
        "SELECT suite, model, SUM(input_uncached) AS i, SUM(cache_read) AS c,"
        " SUM(cache_write_5m + cache_write_1h) AS w,"
        " SUM(reasoning_tokens) AS r, SUM(output_tokens - reasoning_tokens) AS o, SUM(cost_nano) AS spent"
        f" FROM calls WHERE run_id IN ({marks}) GROUP BY suite, model",
        tuple(run_ids),
    )
    token_bars = sum(sum(1 for k in ("i", "c", "w", "r", "o") if (p[k] or 0) > 0) for p in pairs)
    correct = _sql(
        db,
        "SELECT COUNT(DISTINCT suite || '/' || model) AS n FROM item_results WHERE correct = 1"
        f" AND run_id IN ({marks})",
        tuple(run_ids),
    )[0]["n"]
    roles = _sql(
        db,
        f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT model, role FROM calls WHERE run_id IN ({marks}))",
        tuple(run_ids),
    )[0]["n"]
    forecasts = sum(
        len(json.loads(r["config"])["forecast"]["rows"])
        for r in _sql(db, f"SELECT config FROM runs WHERE id IN ({marks})", tuple(run_ids))
    )
    return {
        "chart-score": {"score_points_marks": scored, "score_ci_marks": scored, "score_labels_marks": scored},
        "chart-cost_model": {"cost_model_bars_marks": len(pairs)},
        "chart-tokens": {"tokens_bars_child_marks": token_bars},
        # Every token kind here has a price above 0, so each costs something.
        "chart-cost_kind": {"cost_kind_bars_child_marks": token_bars},
        "chart-per_correct": {"per_correct_bars_child_marks": correct},
        "chart-unusable": {"unusable_bars_child_marks": len(pairs)},
        "chart-roles": {"roles_bars_marks": roles},
        "chart-forecast": {f"forecast_{n}_marks": forecasts for n in ("range", "expected", "actual")},
    }


COUNT_MARKS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('figure')].map(f => {
  const want = JSON.parse(f.dataset.marks), got = {};
  for (const cls in want) got[cls] = f.querySelectorAll('svg g.' + cls + ' > *').length;
  return [f.id, got];
})))"""


@needs_runtime
@needs_chromium
def test_report_renders_in_chromium(judged: dict[str, Any], tmp_path: Path) -> None:
    run_ids = [judged["a"], judged["b"]]
    out = tmp_path / "report.html"
    page_html = _report(judged["db"], out, *run_ids)
    expected = _expected_marks(judged["db"], run_ids)
    with Chromium() as browser:
        page = browser.open(out.as_uri())
        rendered = page.wait_for("document.body.getAttribute('data-rendered')")
        assert page.console_errors == []
        assert rendered == str(len(_specs(page_html)))
        drawn = json.loads(page.evaluate(COUNT_MARKS))
        declared = json.loads(
            page.evaluate(
                "JSON.stringify(Object.fromEntries([...document.querySelectorAll('figure')]"
                ".map(f => [f.id, JSON.parse(f.dataset.marks)])))"
            )
        )
        assert drawn == declared  # every chart draws what the report says it does ...
        for figure, marks in expected.items():  # ... which is what the database holds
            assert drawn[figure] == marks, figure
        assert all(n > 0 for marks in drawn.values() for n in marks.values())
        # Accessible: every chart's SVG has labelled marks and axes, and a heading and caption.
        labelled = page.evaluate(
            "[...document.querySelectorAll('figure')].filter(f => f.querySelector('svg')"
            " && f.querySelector('svg [aria-label]') && f.querySelector('h2')"
            " && f.querySelector('figcaption')).length"
        )
        assert labelled == len(_specs(page_html))
        # The page is not blank: a (quarter-size) screenshot of the whole page has content.
        width, height, pixels = png_pixels(page.screenshot_png(scale=0.25))
        assert width >= 300 and height >= 500
        ink = sum(1 for p in pixels if min(p) < 200) / len(pixels)
        assert ink > 0.02 and len(set(pixels)) > 100, (ink, len(set(pixels)))
        assert page.console_errors == []
        assert set(page.requests) == {out.as_uri()} and page.blocked == []


@needs_runtime
@needs_chromium
def test_the_page_loads_nothing_from_the_network(runs: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    page_html = _report(runs["db"], out, runs["a"], runs["b"])
    with Chromium() as browser:
        page = browser.open(out.as_uri())
        page.wait_for("document.body.getAttribute('data-rendered')")
        page.evaluate("new Promise(r => setTimeout(r, 500))")  # anything late (tooltips, fonts) too
        assert page.requests and set(page.requests) == {out.as_uri()}
        assert page.blocked == [] and page.console_errors == []
        # The recorder is not blind: the same page with an image from the web and no CSP asks for it
        # (and the request is failed here; the network is never reached).
        leaky = tmp_path / "leaky.html"
        csp = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', page_html)
        assert csp
        leaky.write_text(
            page_html.replace(csp.group(0), "").replace(
                "</main>", '<img src="https://example.invalid/x.png"></main>'
            ),
            encoding="utf-8",
        )
        other = browser.open(leaky.as_uri())
        other.wait_for("document.body.getAttribute('data-rendered')")
        assert "https://example.invalid/x.png" in other.blocked
