"""SciCode end to end: the real SDK against the simulator, whose model answers each sub-step with a
scripted function; each step's prompt holds the model's own earlier code; sub-step accuracy and the
solve rate are exact; every step is a metered call and the meter equals the simulator's invoice;
resume after a stop mid-problem never buys a step twice."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import suites.scicode as sc
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store.engine import Store
from harness.suite import Item
from tests.helpers import scicode_fixture as fx

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Scripted(sc.SciCodeSuite):
    """The real suite, with the scripted answer as each step prompt's target (the simulator's)."""

    def target(self, item: Item, step: sc.Step) -> str:
        return fx.answer(step.number)


def _suite(tmp_path: Path, rows: list[dict[str, Any]] | None = None) -> Scripted:
    data = fx.write_problems(tmp_path / "problems_test.jsonl", rows)
    h5 = fx.write_h5(tmp_path / "test_data.h5")
    loaded = sc.load(data=data, options={"test_data": str(h5), "test_data_sha256": "any", "timeout": "30"})
    return Scripted(
        loaded.items, loaded.source, test_data=loaded.test_data, sandbox_level=loaded.sandbox_level
    )


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _profiles(tmp_path: Path) -> Path:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[models."gpt-4o-mini"]\naccuracy = 1.0\n')
    return profiles


def _meter_matches(db: Path, invoice: dict[str, Any]) -> None:
    calls = _rows(db, "select cost_nano, request_id from calls where cached = 0")
    assert len(calls) == len(invoice["requests"])
    for c in calls:
        assert c["cost_nano"] == usd_to_nano(Decimal(invoice["requests"][c["request_id"]]["usd"]))
    spent = _rows(db, "select spent_nano from runs")[0]["spent_nano"]
    assert spent == sum(c["cost_nano"] for c in calls) == usd_to_nano(Decimal(invoice["total"]["usd"]))


async def test_scripted_steps_score_exactly_and_the_meter_matches_the_invoice(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    db = tmp_path / "runs.db"
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
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
    items = _rows(db, "select item_id, repeat, status, correct, extracted, meta, cost_nano from item_results")
    assert len(items) == 6  # 3 problems x 2 repeats
    verdicts = {(i["item_id"], i["repeat"]): (i["status"], bool(i["correct"]), i["extracted"]) for i in items}
    for r in (0, 1):
        assert verdicts[("fx1", r)] == ("scored", True, "steps 2/2")
        assert verdicts[("fx2", r)] == ("scored", False, "steps 1/2")
        assert verdicts[("62", r)] == ("scored", True, "steps 1/1")  # 62.1 supplied: never asked
    (result,) = report["results"]
    assert (result["correct"], result["scored"]) == (4, 6)  # solve rate 2/3
    assert result["substeps"]["passed"] == 8 and result["substeps"]["scored"] == 10  # 4 of 5, twice
    assert result["substeps"]["accuracy"] == pytest.approx(0.8)
    assert result["substeps"]["ci_low"] < 0.8 < result["substeps"]["ci_high"]
    assert result["sandbox"] == [suite.sandbox_level]
    # One call per asked step (5 per repeat), role step, each prompt holding the model's own code.
    calls = _rows(db, "select role, item_id, request, cost_nano from calls order by started_at")
    assert len(calls) == 10 and {c["role"] for c in calls} == {"step"}
    texts = [(c["item_id"], json.loads(c["request"])["messages"][0]["content"]) for c in calls]
    quad = [t for i, t in texts if i == "fx1" and "def quad(x):" in t]
    assert len(quad) == 2
    for text in quad:
        assert "def double(x):\n    return 2 * x" in text  # the model's fx1.1, as the prompt shows it
    supplied = [t for i, t in texts if i == "62"]
    assert len(supplied) == 2 and all("def offset(x):\n    return x + 10" in t for t in supplied)
    # The item's cost is its chain's.
    per_item: dict[tuple[str, int], int] = {}
    for i in items:
        per_item[(i["item_id"], i["repeat"])] = i["cost_nano"]
    assert sum(per_item.values()) == sum(c["cost_nano"] for c in calls)
    _meter_matches(db, invoice)
    # rescore scores every recorded chain again, the same, sending nothing.
    from harness.audit.rescore import prepare_rescore, score_job

    store = Store.open(str(db))
    try:
        rescored = await score_job(prepare_rescore(store, outcome.run_id, suites=[suite]))
    finally:
        store.close()
    assert not rescored.changed and rescored.total_prompt_mismatch == 0


async def test_resume_after_a_stop_mid_problem_never_buys_a_step_again(tmp_path: Path) -> None:
    from harness.run.resume import plan_resume, resume_run

    one = [fx.problems()[0]]  # fx1: two steps
    suite = _suite(tmp_path, one)
    profiles = _profiles(tmp_path)
    # A first run on its own database says what step 1 costs and what step 2 reserves (the
    # simulator answers the same request the same way).
    probe_db = tmp_path / "probe.db"
    with SimServer(seed=4, speed=0.0, profiles=profiles) as sim:
        plan = prepare_run(
            RunOptions(
                suites=[suite],
                models=["openai/gpt-4o-mini"],
                budget_usd=Decimal("5"),
                simulated=True,
                repeats=1,
            )
        )
        store = Store.open(str(probe_db))
        try:
            await run(plan, store, simulator=sim)
        finally:
            store.close()
    first_cost, second_reserve = [
        (r["cost_nano"], r["reserved_nano"])
        for r in _rows(probe_db, "select cost_nano, reserved_nano from calls order by started_at")
    ]
    budget_nano = first_cost[0] + second_reserve[1] - 1  # step 1 fits, step 2's reservation does not
    db = tmp_path / "runs.db"
    with SimServer(seed=4, speed=0.0, profiles=profiles) as sim:
        plan = prepare_run(
            RunOptions(
                suites=[suite],
                models=["openai/gpt-4o-mini"],
                budget_usd=Decimal(budget_nano) / Decimal(10**9),
                simulated=True,
                concurrency=1,
                repeats=1,
            )
        )
        store = Store.open(str(db))
        try:
            first = await run(plan, store, simulator=sim)
            assert first.status == "budget_exhausted"
            steps = _rows(db, "select status, request_hash from calls")
            assert [s["status"] for s in steps] == ["ok"]  # step 1 bought, step 2 never sent
            (item,) = _rows(db, "select status, cost_nano from item_results")
            assert item["status"] == "not_run" and item["cost_nano"] == first_cost[0]
            # --no-cache: only the run's own record of its steps keeps step 1 from being bought again.
            again = plan_resume(store, first.run_id, suites=[suite], use_cache=False)
            outcome = await resume_run(store, again, add_budget_nano=usd_to_nano(Decimal("5")), simulator=sim)
        finally:
            store.close()
        invoice: dict[str, Any] = sim.invoice()
    assert outcome.status == "done"
    calls = _rows(db, "select request_hash, cached from calls order by started_at")
    assert len(calls) == 2 and not any(c["cached"] for c in calls)
    assert calls[0]["request_hash"] == steps[0]["request_hash"] != calls[1]["request_hash"]
    (done,) = _rows(
        db, "select status, correct, extracted, cost_nano from item_results where status != 'not_run'"
    )
    assert (done["status"], bool(done["correct"]), done["extracted"]) == ("scored", True, "steps 2/2")
    total = sum(r["cost_nano"] for r in _rows(db, "select cost_nano from calls"))
    assert done["cost_nano"] == total  # the chain's cost, both sessions
    _meter_matches(db, invoice)


async def test_a_second_run_takes_every_step_from_the_response_cache(tmp_path: Path) -> None:
    suite = _suite(tmp_path, [fx.problems()[0]])
    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        store = Store.open(str(db))
        try:
            for _ in range(2):
                plan = prepare_run(
                    RunOptions(
                        suites=[suite],
                        models=["openai/gpt-4o-mini"],
                        budget_usd=Decimal("5"),
                        simulated=True,
                        repeats=1,
                    )
                )
                outcome = await run(plan, store, simulator=sim)
                assert outcome.status == "done"
        finally:
            store.close()
        invoice: dict[str, Any] = sim.invoice()
    calls = _rows(db, "select cached, cost_nano, role from calls order by started_at")
    assert [c["cached"] for c in calls] == [0, 0, 1, 1] and {c["role"] for c in calls} == {"step"}
    assert len(invoice["requests"]) == 2
    results = _rows(db, "select correct from item_results")
    assert [bool(r["correct"]) for r in results] == [True, True]
