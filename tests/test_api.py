"""The library API in ``harness/__init__``: every exported name resolves, the list is deliberate, and
``import harness`` stays cheap (names load on first use)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import anyio

import harness

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "__version__",
    "BudgetExhausted",
    "Completion",
    "ConfigError",
    "HarnessError",
    "Item",
    "Message",
    "ModelSpec",
    "Plan",
    "Price",
    "PriceTable",
    "Prompt",
    "ProviderError",
    "Request",
    "RunOptions",
    "RunOutcome",
    "Score",
    "ShareExhausted",
    "StorageError",
    "Store",
    "Suite",
    "Usage",
    "check_budget",
    "forecast_plan",
    "prepare_run",
    "resume_run",
    "run_plan",
}


def test_the_exports_are_the_documented_ones_and_all_resolve() -> None:
    assert set(harness.__all__) == EXPECTED
    assert set(harness.__all__) == {"__version__", *harness._EXPORTS}
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name
    assert set(harness.__all__) <= set(dir(harness))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        harness.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_harness_loads_no_database_or_sdk() -> None:
    code = (
        "import sys, harness, harness.errors; "
        "print(sorted(m for m in ('sqlalchemy', 'openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_docstring_example_runs_a_suite_on_the_simulator(tmp_path: Path) -> None:
    plan = harness.prepare_run(
        harness.RunOptions(
            suites=["demo"], models=["openai/gpt-4o-mini"], budget_usd=Decimal("1"), simulated=True, limit=3
        )
    )
    with harness.Store.open(str(tmp_path / "runs.db")) as store:
        outcome = anyio.run(harness.run_plan, plan, store)
        assert (outcome.status, outcome.exit_code) == ("done", 0)
        run = store.get_run(outcome.run_id)
        assert run is not None and run["simulated"] and 0 < run["spent_nano"] <= 10**9
