"""What the quick commands import (docs/performance.md, "Start-up" and "`tollbench costs`").

``tollbench costs`` over a real database, ``tollbench --help`` and ``tollbench costs --help`` run in a
fresh interpreter, through the command's own entry point, and report which modules were loaded: no
provider SDK, no SQLModel or pydantic (the tables are SQLAlchemy Core), no SQLAlchemy ORM, nothing a
suite or the simulator needs; ``--json`` output needs no rich either. Each one of these imports would
cost ``costs`` or start-up a tenth of a second or more; the test fails when one comes back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from ledger_fixtures import end, new_run, start

from harness.budget.ledger import Ledger
from harness.store.engine import Store

ROOT = Path(__file__).resolve().parents[2]

#: Modules none of these commands need (a prefix matches its submodules too).
HEAVY = (
    "openai",
    "anthropic",
    "google.genai",
    "httpx2",
    "sqlmodel",
    "pydantic",
    "sqlalchemy.orm",
    "huggingface_hub",
    "math_verify",
    "sympy",
    "numpy",
    "pyarrow",
    "uvicorn",
    "starlette",
    "genai_prices",
    "harness.sim",
    "harness.run.runner",
    "adapters",
    "suites",
)

CHILD = """
import json, sys
from harness.cli.main import main
code = main(sys.argv[1:])
print("\\n@@modules@@" + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


def _loaded(args: list[str]) -> tuple[str, set[str]]:
    """Run ``tollbench ARGS`` in a fresh interpreter: its output and the modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out, _, modules = proc.stdout.rpartition("\n@@modules@@")
    return out, set(json.loads(modules))


def _heavy(modules: set[str], extra: tuple[str, ...] = ()) -> list[str]:
    prefixes = HEAVY + extra
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


async def _settle(store: Store, run_id: str, costs: list[int]) -> None:
    async with Ledger(store, run_id, batch_window_s=0) as ledger:
        for cost in costs:
            s = start(run_id, 10_000)
            assert await ledger.reserve(s)
            await ledger.settle(end(s.call_id, cost))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with one finished run (read from its snapshot) and one running (summed live)."""
    path = tmp_path / "runs.db"
    with Store.open(str(path)) as store:
        done = new_run(store, 10**12)
        anyio.run(_settle, store, done, [1000, 2000])
        store.set_run_status(done, "done")
        running = new_run(store, 10**12)
        anyio.run(_settle, store, running, [500])
    return path


@pytest.mark.timeout(180)
def test_costs_imports_no_sdk_no_orm_and_no_rich_for_json(db: Path) -> None:
    out, modules = _loaded(["costs", "--by", "model,suite", "--json", "--db", str(db)])
    rows = json.loads(out)
    assert [(r["model"], r["suite"], r["calls"]) for r in rows] == [("openai/o3-mini", "demo", 3)]
    assert _heavy(modules, ("rich",)) == []
    assert "sqlalchemy" in modules  # the child did read the database


@pytest.mark.timeout(180)
def test_costs_table_imports_no_sdk_or_orm(db: Path) -> None:
    out, modules = _loaded(["costs", "--by", "model,suite", "--db", str(db)])
    assert "openai/o3-mini" in out and "demo" in out
    assert _heavy(modules) == []
    assert "rich.table" in modules


@pytest.mark.timeout(180)
@pytest.mark.parametrize("args", [["--help"], ["costs", "--help"], ["run", "--help"]], ids=" ".join)
def test_help_imports_no_sdk_and_no_database(args: list[str]) -> None:
    out, modules = _loaded(args)
    assert "Usage:" in out
    assert _heavy(modules, ("sqlalchemy", "rich")) == []
