"""Every model ``tollbench models`` lists runs on the simulator (issue 11: ``--sim`` with
``openai/o3-mini``, a model of the seed's cost table, used to fail with HTTP 404), and so does every
built-in alias (effort levels, thinking budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cli.catalog import catalog
from harness.cli.main import main
from harness.models import BUILTIN_ALIASES
from harness.sim import SimServer
from harness.store.engine import Store

LISTED = catalog()
MODELS = sorted({row["id"] for row in LISTED} | set(BUILTIN_ALIASES))


@pytest.fixture(scope="module")
def sim() -> Any:
    with SimServer(seed=11, speed=0.0) as server:
        yield server


def test_the_listing_covers_the_seed_models_and_every_provider() -> None:
    ids = {row["id"] for row in LISTED}
    for model in (
        "openai/o1",
        "openai/o1-mini",
        "openai/o3-mini",
        "openai/gpt-4o",
        "anthropic/claude-3-7-sonnet-latest",
        "anthropic/claude-3-5-sonnet-latest",
    ):
        assert model in ids
    assert {row["provider"] for row in LISTED} >= {"openai", "anthropic", "deepseek", "xai", "openrouter"}
    assert all(row["simulator"] for row in LISTED), [r["id"] for r in LISTED if not r["simulator"]]
    o3_mini = next(r for r in LISTED if r["id"] == "openai/o3-mini")
    assert "openai/o3-mini-high" in o3_mini["aliases"] and o3_mini["price"]["output"] == "4.40"


@pytest.mark.parametrize("model", MODELS)
def test_every_listed_model_runs_on_the_simulator(
    model: str, sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    # A thinking budget of 8,000 needs a higher output limit; some models allow no more than 8,192.
    limit = "16000" if "thinking_budget" in BUILTIN_ALIASES.get(model, {}) else "4000"
    code = main(
        ["run", "demo", "-m", model, "--limit", "2", "--budget", "5", "--max-output-tokens", limit]
        + ["--sim-url", sim.base_url, "--db", str(db)]
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    store = Store.open(str(db))
    try:
        run_id = store.list_runs()[0]["id"]
        items = store.item_results(run_id)
        calls = store.calls(run_id)
    finally:
        store.close()
    assert len(items) == 2 and all(i["status"] in ("scored", "unusable") for i in items)
    assert calls and all(c["status"] == "ok" and c["usage_known"] and c["cost_nano"] > 0 for c in calls)
