"""HLE end to end: the real SDKs against the simulator, the judge's calls metered like the model's:
exact scores for scripted answers, meter == invoice with the judge's calls included, judge dollars
shown apart, the judge cached, a failing judge unscored, and a budget that stops before the judge."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import suites.hle as hle
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.run.cache import answers_of_run
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.engine import Store
from harness.suite import Item
from tests.helpers.hle_fixture import write

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Items fx0..fx5 (answers 0, 2, 4, ...): the scripted model gets fx1 and fx4 wrong.
WRONG = {"fx1": "3", "fx4": "9"}


class Scripted(hle.HleSuite):
    def target(self, item: Item) -> str:
        return WRONG.get(item.id, item.answer)


def _suite(tmp_path: Path) -> Scripted:
    loaded = hle.load(data=write(tmp_path / "hle.jsonl"))
    return Scripted(loaded.name, 1, loaded.items, loaded.source)


def _profiles(tmp_path: Path, judge_faults: bool = False) -> Path:
    path = tmp_path / "profiles.toml"
    text = '[models."gpt-4o-mini"]\naccuracy = 1.0\n'
    if judge_faults:
        text += '[models."gpt-4o"]\nfaults = { error_500 = 1.0 }\n'
    path.write_text(text)
    return path


async def _run(
    db: Path, sim: Any, suite: Scripted, budget: str = "5", **kw: Any
) -> tuple[RunOutcome, dict[str, Any]]:
    opts = RunOptions(
        suites=[suite], models=["openai/gpt-4o-mini"], budget_usd=Decimal(budget), simulated=True, **kw
    )
    store = Store.open(str(db))
    try:
        outcome = await run(prepare_run(opts), store, simulator=sim)
        return outcome, run_report_dict(store, outcome.run_id)
    finally:
        store.close()


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_judge_calls_are_metered_apart_and_match_the_invoice(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        outcome, report = await _run(db, sim, _suite(tmp_path))
        invoice = sim.invoice()
    assert outcome.status == "done"
    items = {r["item_id"]: r for r in _rows(db, "select * from item_results")}
    assert {k for k, r in items.items() if r["correct"]} == {"fx0", "fx2", "fx3", "fx5"}
    assert items["fx1"]["extracted"] == "3" and items["fx1"]["status"] == "scored"
    (result,) = report["results"]
    assert (result["correct"], result["scored"], result["unscored"]) == (4, 6, 0)
    assert result["calibration_error"] == pytest.approx(2 / 6)  # confidence 100 everywhere, 4/6 right
    calls = _rows(db, "select * from calls order by started_at")
    judge = [c for c in calls if c["role"] == "judge"]
    target = [c for c in calls if c["role"] == "target"]
    assert len(judge) == len(target) == 6
    assert {c["provider_model"] for c in judge} == {"gpt-4o-2024-08-06"}
    assert {c["model"] for c in judge} == {"openai/gpt-4o-mini"}  # the model whose answer is judged
    # Every call, the judge's included, is one invoice line at the metered cost, and was reserved
    # at least its cost before it was sent.
    assert len(calls) == len(invoice["requests"]) == 12
    for c in calls:
        billed = invoice["requests"][c["request_id"]]
        assert c["status"] == "ok" and c["cost_nano"] == usd_to_nano(Decimal(billed["usd"]))
        assert c["reserved_nano"] >= c["cost_nano"]
    spent = sum(c["cost_nano"] for c in calls)
    assert spent == usd_to_nano(Decimal(invoice["total"]["usd"])) == usd_to_nano(Decimal(report["spent_usd"]))
    judge_nano = sum(c["cost_nano"] for c in judge)
    assert usd_to_nano(Decimal(result["judge_spent_usd"])) == judge_nano > 0
    assert usd_to_nano(Decimal(result["target_spent_usd"])) == spent - judge_nano
    # An item's cost includes its judge's.
    assert sum(r["cost_nano"] for r in items.values()) == spent

    # The same run again: every answer and every judgment comes from the response cache.
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        again, report2 = await _run(db, sim, _suite(tmp_path))
        assert sim.invoice()["requests"] == {}
    cached = _rows(db, f"select role, cached, cost_nano from calls where run_id = '{again.run_id}'")
    assert sorted(c["role"] for c in cached) == ["judge"] * 6 + ["target"] * 6
    assert all(c["cached"] and c["cost_nano"] == 0 for c in cached)
    assert report2["results"][0]["correct"] == 4


async def test_a_failing_judge_leaves_items_unscored_counted_as_wrong(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path, judge_faults=True)) as sim:
        from harness.run.retry import RetryPolicy

        fast = RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02)
        outcome, report = await _run(db, sim, _suite(tmp_path), retry=fast)
        invoice = sim.invoice()
    (result,) = report["results"]
    assert (result["scored"], result["correct"], result["unscored"]) == (6, 0, 6)
    assert result["accuracy"] == 0.0
    reasons = {r["reason"] for r in _rows(db, "select reason from item_results")}
    assert reasons == {"unscored"}
    calls = _rows(db, "select * from calls")
    judge = [c for c in calls if c["role"] == "judge"]
    assert len(judge) == 12 and all(c["status"] == "error" and c["cost_nano"] == 0 for c in judge)
    spent = sum(c["cost_nano"] or 0 for c in calls)
    assert spent == usd_to_nano(Decimal(invoice["total"]["usd"]))


async def test_a_budget_that_stops_before_the_judge_never_sends_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    # The model's call (200 output tokens) fits; the judge's reservation (4,096 output tokens of
    # gpt-4o) does not, so it is never sent and the bought answer is kept for resume.
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        outcome, report = await _run(
            db, sim, _suite(tmp_path), budget="0.01", max_output_tokens=200, concurrency=1
        )
        invoice = sim.invoice()
    assert outcome.status == "budget_exhausted"
    calls = _rows(db, "select * from calls")
    assert calls and all(c["role"] == "target" for c in calls)
    assert all(line["model"].startswith("gpt-4o-mini") for line in invoice["requests"].values())
    items = _rows(db, "select status, reason, answer_text from item_results")
    assert all(r["status"] == "not_run" for r in items)
    assert any(r["reason"] == "budget_exhausted" and r["answer_text"] for r in items)
    spent = sum(c["cost_nano"] for c in calls)
    assert spent <= usd_to_nano(Decimal("0.01")) and spent == usd_to_nano(Decimal(invoice["total"]["usd"]))
    store = Store.open(str(db))
    try:
        kept = answers_of_run(store, outcome.run_id)  # what resume re-judges, never buys again
    finally:
        store.close()
    assert len(kept) == len(calls)


async def test_rescore_judges_again_from_the_stored_judge_replies(tmp_path: Path) -> None:
    from harness.audit.rescore import prepare_rescore, score_job

    db = tmp_path / "runs.db"
    suite = _suite(tmp_path)
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        outcome, _ = await _run(db, sim, suite)
        before = len(sim.invoice()["requests"])
        store = Store.open(str(db))
        try:
            result = await score_job(prepare_rescore(store, outcome.run_id, suites=[suite]))
        finally:
            store.close()
        assert len(sim.invoice()["requests"]) == before  # nothing sent, not even to the judge
    assert not result.changed


async def test_resume_judges_the_kept_answers_without_buying_them_again(tmp_path: Path) -> None:
    from harness.run.resume import plan_resume, resume_run

    db = tmp_path / "runs.db"
    suite = _suite(tmp_path)
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        # The model's reservation (16,384 output tokens of gpt-4o-mini, ~$0.01) fits; the judge's
        # (~$0.045) does not: the run stops after the first answer, which is kept unjudged.
        first, _ = await _run(db, sim, suite, budget="0.03", concurrency=1)
        assert first.status == "budget_exhausted"
        bought = len(sim.invoice()["requests"])
        store = Store.open(str(db))
        try:
            plan = plan_resume(store, first.run_id, suites=[suite], use_cache=False)
            outcome = await resume_run(store, plan, add_budget_nano=usd_to_nano(Decimal("5")), simulator=sim)
            report = run_report_dict(store, first.run_id)
        finally:
            store.close()
        invoice = sim.invoice()
    assert outcome.status == "done"
    calls = _rows(db, "select * from calls where cached = 0")
    target = [c for c in calls if c["role"] == "target"]
    judge = [c for c in calls if c["role"] == "judge"]
    # Every item answered exactly once and judged exactly once, across both sessions.
    assert len(target) == 6 and len(judge) == 6 and bought < 12
    assert len({(c["item_id"], c["repeat"]) for c in target}) == 6
    assert len(invoice["requests"]) == 12
    assert sum(c["cost_nano"] for c in calls) == usd_to_nano(Decimal(invoice["total"]["usd"]))
    (result,) = report["results"]
    assert (result["correct"], result["scored"], result["not_run"]) == (4, 6, 0)


async def test_resume_with_every_answer_bought_still_starts_a_simulator_for_the_judge(tmp_path: Path) -> None:
    from harness.run.resume import plan_resume, resume_run

    db = tmp_path / "runs.db"
    suite = _suite(tmp_path)
    with SimServer(seed=3, speed=0.0, profiles=_profiles(tmp_path)) as sim:
        # Six answers (~$0.003 reserved each) fit at once, so all six are reserved before any
        # answer comes back (however loaded the machine); no judge ($0.045) ever fits.
        first, _ = await _run(db, sim, suite, budget="0.04", concurrency=6, max_output_tokens=4000)
        assert first.status == "budget_exhausted"
        assert all(line["model"].startswith("gpt-4o-mini") for line in sim.invoice()["requests"].values())
    assert len(_rows(db, "select * from calls where role = 'target'")) == 6
    store = Store.open(str(db))
    try:
        plan = plan_resume(store, first.run_id, suites=[suite])
        # No simulator passed: the session must start its own, for the judge alone.
        outcome = await resume_run(store, plan, add_budget_nano=usd_to_nano(Decimal("5")))
        report = run_report_dict(store, first.run_id)
    finally:
        store.close()
    assert outcome.status == "done"
    (result,) = report["results"]
    assert (result["correct"], result["scored"], result["unscored"]) == (4, 6, 0)
    assert len(_rows(db, "select * from calls where role = 'target'")) == 6  # none bought twice
