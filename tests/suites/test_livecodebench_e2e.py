"""LiveCodeBench end to end: the real SDKs against the simulator, whose model answers with scripted
solutions; the scores are exact and the meter equals the simulator's invoice."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import suites.livecodebench as lcb
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store.engine import Store
from harness.suite import Item
from tests.helpers.lcb_fixture import window_rows, write_rows

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = {
    "fx_in_start": "a, b = map(int, input().split())\nprint(a + b)",  # right
    "fx_fn": "class Solution:\n    def add(self, a, b):\n        return a + b",  # right
    "abc311_c": "print(3)",  # passes the public test only
    "fx_in_end": "while True:\n    pass",  # time limit
}


class Scripted(lcb.LiveCodeBenchSuite):
    """The real suite, with the scripted solution as each prompt's target (the simulator's answer)."""

    def target(self, item: Item) -> str:
        return f"```python\n{SCRIPT[item.id]}\n```"


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_scripted_solutions_score_exactly_and_the_meter_matches_the_invoice(tmp_path: Path) -> None:
    loaded = lcb.load(data=write_rows(tmp_path / "test5.jsonl", window_rows()))
    suite = Scripted(loaded.items, loaded.source, sandbox_level=loaded.sandbox_level, window=loaded.window)
    suite.test_timeout_s = 3.0
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[models."gpt-4o-mini"]\naccuracy = 1.0\n')
    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.0, profiles=profiles) as sim:
        plan = prepare_run(
            RunOptions(
                suites=[suite],
                models=["openai/gpt-4o-mini"],
                budget_usd=Decimal("5"),
                simulated=True,
                repeats=2,
            )
        )
        store = Store.open(str(db))
        try:
            outcome = await run(plan, store, simulator=sim)
            report = run_report_dict(store, outcome.run_id)
        finally:
            store.close()
        invoice: dict[str, Any] = sim.invoice()
    assert outcome.status == "done"
    items = _rows(db, "select item_id, repeat, status, correct, extracted, meta from item_results")
    assert len(items) == 8
    verdicts = {(i["item_id"], i["repeat"]): (i["status"], bool(i["correct"]), i["extracted"]) for i in items}
    for r in (0, 1):
        assert verdicts[("fx_in_start", r)] == ("scored", True, "pass 3/3")
        assert verdicts[("fx_fn", r)] == ("scored", True, "pass 2/2")
        assert verdicts[("abc311_c", r)] == ("scored", False, "wrong_answer 2/3")
        assert verdicts[("fx_in_end", r)] == ("scored", False, "time_limit 1/3")
    # pass@1 = 4/8, and each result records the isolation its code ran at.
    assert sum(bool(i["correct"]) for i in items) == 4
    assert all('"sandbox": "' in i["meta"] for i in items)
    assert any('"errata": "multiple_answers"' in i["meta"] for i in items)
    (result,) = report["results"]
    assert (result["correct"], result["scored"], result["accuracy"]) == (4, 8, 0.5)
    assert result["errata"] == {"multiple_answers": ["abc311_c"]}
    assert result["sandbox"] == [loaded.sandbox_level]
    calls = _rows(db, "select cost_nano, request_id from calls")
    assert len(calls) == len(invoice["requests"]) == 8
    for c in calls:
        assert c["cost_nano"] == usd_to_nano(Decimal(invoice["requests"][c["request_id"]]["usd"]))
    spent = _rows(db, "select spent_nano from runs")[0]["spent_nano"]
    assert spent == sum(c["cost_nano"] for c in calls) == usd_to_nano(Decimal(invoice["total"]["usd"]))
