"""HLE with ``--batch``: the model's answers and the judge's pass both go through batches at the
batch price; the scores are those of the live path; the meter equals the invoice."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import suites.hle as hle
from harness.pricing.money import usd_to_nano
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store.engine import Store
from harness.suite import Item
from tests.helpers.hle_fixture import write

pytestmark = [pytest.mark.anyio]

WRONG = {"fx1": "3", "fx4": "9"}


class Scripted(hle.HleSuite):
    def target(self, item: Item) -> str:
        return WRONG.get(item.id, item.answer)


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_hle_generation_and_judge_pass_in_batches(tmp_path: Path) -> None:
    loaded = hle.load(data=write(tmp_path / "hle.jsonl"))
    suite = Scripted(loaded.name, 1, loaded.items, loaded.source)
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[models."gpt-4o-mini"]\naccuracy = 1.0\n')
    db = tmp_path / "runs.db"
    with SimServer(seed=3, speed=0.0, profiles=profiles) as sim:
        sim.state.batch_settings.complete_s = 0.3
        opts = RunOptions(
            suites=[suite],
            models=["openai/gpt-4o-mini"],
            budget_usd=Decimal("5"),
            simulated=True,
            batch=True,
            batch_poll_s=0.1,
            batch_poll_max_s=0.2,
        )
        store = Store.open(str(db))
        try:
            outcome = await run(prepare_run(opts), store, simulator=sim)
        finally:
            store.close()
        invoice = sim.invoice()
        batches = sim.state.batches
        assert batches is not None
        created = batches.list("openai")
    assert outcome.status == "done"
    items = {r["item_id"]: r for r in _rows(db, "select * from item_results")}
    assert {k for k, r in items.items() if r["correct"]} == {"fx0", "fx2", "fx3", "fx5"}
    calls = _rows(db, "select * from calls")
    judge = [c for c in calls if c["role"] == "judge"]
    target = [c for c in calls if c["role"] == "target"]
    assert judge and target
    assert all(c["sent_to"] == "batch:openai" and c["service_tier"] == "batch" for c in judge + target)
    assert len(created) == 2  # one batch of answers, one of judge requests
    assert sum(int(c["cost_nano"]) for c in calls) == usd_to_nano(Decimal(invoice["total"]["usd"]))
    for r in items.values():  # an item's cost includes its judge call
        mine = [c for c in calls if c["item_id"] == r["item_id"]]
        assert int(r["cost_nano"]) == sum(int(c["cost_nano"]) for c in mine)
