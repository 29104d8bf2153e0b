"""Every run ends, and a run stops at its budget only when it must (issue 10, defects 1, 4 and 11).

Whole `tollbench run` commands in child processes against the simulator, each bounded by a timeout, so
a hang fails here instead of stalling CI. The meter is checked against the simulator's invoice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.pricing.money import usd_to_nano
from harness.sim import SimServer

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`tollbench {' '.join(args)}` hung for {timeout:g}s: {exc.stderr!r}")


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=3, speed=0.05) as server:
        yield server


@pytest.mark.parametrize(
    ("models", "budget", "max_out"),
    [
        # The command (at a budget the dearest-tier worst case of each model fits): neither
        # model's first call fits its half of the budget, and today's runner waited forever.
        (["openai/o4-mini", "anthropic/claude-haiku-4-5"], "0.034", 4000),
        (["openai/o4-mini", "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"], "0.05", 4000),
        (
            [
                "openai/o4-mini",
                "anthropic/claude-haiku-4-5",
                "openai/gpt-4o-mini",
                "anthropic/claude-sonnet-4-5",
            ],
            "0.08",
            3000,
        ),
        (["openai/o4-mini", "anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"], "0.2", 2000),
    ],
)
def test_multi_model_runs_with_tight_budgets_end(
    tmp_path: Path, sim: Any, models: list[str], budget: str, max_out: int
) -> None:
    db = tmp_path / "runs.db"
    args = ["run", "demo", *[a for m in models for a in ("-m", m)], "--budget", budget]
    args += ["--max-output-tokens", str(max_out), "--allow-partial", "--sim-url", sim.base_url]
    args += ["-c", "4", "--db", str(db), "--json"]
    proc = _run(args)
    assert proc.returncode in (0, 3), proc.stderr
    run = _rows(db, "select * from runs")[0]
    assert run["status"] in ("done", "budget_exhausted")
    assert run["spent_nano"] <= usd_to_nano(Decimal(budget))
    assert not _rows(db, "select id from calls where status = 'reserved'")
    assert run["committed_nano"] == run["spent_nano"]
    results = _rows(db, "select status from item_results")
    assert len(results) == 40 * len(models)  # every unit recorded, answered or not run
    invoice = usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))
    assert run["spent_nano"] >= invoice


def test_a_single_model_run_uses_its_budget_before_stopping(tmp_path: Path, sim: Any) -> None:
    """Defect 4: `run demo -m openai/o4-mini --budget 1` stopped after 13 of 40 items with $0.19 spent:
    the first refusal while other calls were in flight stopped the run. It now waits for them."""
    db = tmp_path / "runs.db"
    budget = Decimal("0.25")
    proc = _run(
        ["run", "demo", "-m", "openai/o4-mini", "--budget", str(budget), "--allow-partial"]
        + ["--sim-url", sim.base_url, "-c", "8", "--db", str(db), "--json"]
    )
    assert proc.returncode in (0, 3), proc.stderr
    run = _rows(db, "select * from runs")[0]
    largest = max(r["reserved_nano"] for r in _rows(db, "select reserved_nano from calls"))
    answered = _rows(db, "select count(*) n from item_results where status != 'not_run'")[0]["n"]
    if answered < 40:
        # Stopped: only because the next call did not fit with nothing in flight.
        assert run["status"] == "budget_exhausted"
        assert run["spent_nano"] > usd_to_nano(budget) - largest
    assert run["spent_nano"] <= usd_to_nano(budget)


def test_a_run_whose_calls_all_fail_says_why(tmp_path: Path, sim: Any) -> None:
    """Defect 11: a model the server does not have got 16 HTTP 404s and the run ended `failed` with
    "0 errors". Now progress counts the failed calls and the end names the error and what to do."""
    db = tmp_path / "runs.db"
    # A model with a price (from the run's own price file) that the simulator does not serve.
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'provider = "openai"\n[[models]]\nmodel = "gpt-not-on-the-sim"\ninput = "1"\noutput = "4"\n'
        'notes = "test"\nsource_url = "test"\n'
    )
    proc = _run(
        ["run", "demo", "-m", "openai/gpt-not-on-the-sim", "--budget", "1", "--sim-url", sim.base_url]
        + ["--limit", "8", "--db", str(db), "--prices", str(prices)]
    )
    assert proc.returncode == 1, proc.stderr
    assert "model_not_found" in proc.stderr + proc.stdout
    assert "tollbench prices" in proc.stderr + proc.stdout  # what to do
    run = _rows(db, "select * from runs")[0]
    assert run["status"] == "failed"
    data = json.loads(_run(["show", run["id"], "--json", "--db", str(db)]).stdout)
    assert data["status"] == "failed"
