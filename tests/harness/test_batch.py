"""``run --batch`` on the simulator: the batch price, the meter equal to the invoice, the cap, resume
after kill -9, expiry with partial output, errored lines re-run (docs/batch.md)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.pricing.money import usd_to_nano
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.batches import run_batches
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"]


class BatchableSuite(TinySuite):
    batchable = True


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=17, speed=0.0) as server:
        server.state.batch_settings.complete_s = 0.6
        yield server


def _options(**kw: Any) -> RunOptions:
    base: dict[str, Any] = {
        "suites": [BatchableSuite(12)],
        "models": MODELS,
        "budget_usd": Decimal("5"),
        "simulated": True,
        "concurrency": 4,
        "retry": FAST_RETRY,
        "max_output_tokens": 400,
        "batch_poll_s": 0.1,
        "batch_poll_max_s": 0.3,
        "batch_cancel_wait_s": 5.0,
        "use_cache": False,
    }
    base.update(kw)
    return RunOptions(**base)


async def _run(db: Path, sim: Any, **kw: Any) -> RunOutcome:
    store = Store.open(str(db))
    try:
        return await run(prepare_run(_options(**kw)), store, simulator=sim)
    finally:
        store.close()


def _invoice_nano(sim: Any) -> int:
    return usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


async def test_batch_costs_half_and_meter_equals_invoice(tmp_path: Path, sim: Any) -> None:
    # Answers cut at a small output limit use the same tokens on both paths (the simulator draws an
    # answer's length from the request body, which differs between a stream and a batch line).
    live = await _run(tmp_path / "live.db", sim, max_output_tokens=48)
    live_bill = _invoice_nano(sim)
    live_calls = _rows(tmp_path / "live.db", "select * from calls")
    sim.reset_invoice()
    batch = await _run(tmp_path / "batch.db", sim, batch=True, max_output_tokens=48)
    batch_bill = _invoice_nano(sim)
    db = tmp_path / "batch.db"
    calls = _rows(db, "select * from calls")
    items = _rows(db, "select * from item_results")
    assert live.status == batch.status == "done"
    assert len(items) == 24 and all(i["status"] in ("scored", "unusable") for i in items)
    assert len(calls) == 24 and all(c["status"] == "ok" for c in calls)
    assert all(c["service_tier"] == "batch" for c in calls)
    meter = sum(int(c["cost_nano"]) for c in calls)
    assert meter == batch_bill
    # same usage (the simulator's output depends on the request body, which is the same)
    usage = lambda cs: sorted(  # noqa: E731
        (c["item_id"], c["model"], c["input_uncached"], c["cache_read"], c["output_tokens"]) for c in cs
    )
    assert usage(calls) == usage(live_calls)
    live_meter = sum(int(c["cost_nano"]) for c in live_calls)
    assert live_meter == live_bill
    assert abs(2 * batch_bill - live_bill) <= len(calls)  # half, to rounding (1 nano per call)
    store = Store.open(str(db))
    try:
        batches = run_batches(store, batch.run_id)
    finally:
        store.close()
    assert len(batches) == 2 and all(b.state == "ended" and b.provider_batch_id for b in batches)
    print(f"live ${Decimal(live_bill) / 10**9} batch ${Decimal(batch_bill) / 10**9}")


def _sim_batches(sim: Any) -> list[Any]:
    batches = sim.state.batches
    assert batches is not None
    return batches.list("openai") + batches.list("anthropic")


def _billed_lines(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.invoice()["requests"].values() if r["api"].startswith("batch:") and r["billed"]]


def _wait_for(predicate: Any, timeout: float = 30.0) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_kill_9_after_submission_then_resume_bills_one_batch(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from harness.cli.main import main

    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.0) as sim:
        sim.state.batch_settings.complete_s = 4.0
        cmd = [
            sys.executable, "-m", "harness", "run", "demo", "--limit", "8",
            "-m", MODELS[0], "-m", MODELS[1], "--max-output-tokens", "300",
            "--sim-url", sim.base_url, "--batch", "--batch-poll", "0.2", "--db", str(db), "--no-cache",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:

            def submitted() -> bool:
                if not db.exists():
                    return False
                try:
                    got = _rows(db, "select state from batches")
                except Exception:
                    return False
                return len(got) == 2 and all(r["state"] == "submitted" for r in got)

            _wait_for(submitted)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(_sim_batches(sim)) == 2
        reserved = _rows(db, "select * from calls where status = 'reserved'")
        assert len(reserved) == 16  # every request of both batches, counted at its worst case
        run_id = _rows(db, "select id from runs")[0]["id"]
        code = main(["resume", run_id, "--db", str(db), "--sim-url", sim.base_url, "--json"])
        assert code == 0
        assert len(_sim_batches(sim)) == 2  # re-attached: nothing submitted twice
        lines = _billed_lines(sim)
        assert len(lines) == 16
        calls = _rows(db, "select * from calls")
        assert len(calls) == 16 and all(c["status"] == "ok" for c in calls)
        items = _rows(db, "select * from item_results")
        assert len(items) == 16 and all(i["status"] in ("scored", "unusable") for i in items)
        meter = sum(int(c["cost_nano"]) for c in calls)
        assert meter == _invoice_nano(sim)
        run = _rows(db, "select * from runs")[0]
        assert int(run["spent_nano"]) == int(run["committed_nano"]) == meter


async def test_expiry_with_partial_output_meters_completed_work_and_reruns_the_rest(
    tmp_path: Path, sim: Any
) -> None:
    sim.state.batch_settings.complete_s = 2.0
    sim.state.batch_settings.window_s = 1.0  # the "24h" window ends half way: half the work is done
    db = tmp_path / "runs.db"
    out = await _run(db, sim, batch=True, models=[MODELS[0]], budget_usd=Decimal("0.05"))
    assert out.status == "done"
    calls = _rows(db, "select * from calls")
    batch_calls = [c for c in calls if c["sent_to"] == "batch:openai"]
    live_calls = [c for c in calls if c["sent_to"] != "batch:openai"]
    done = [c for c in batch_calls if c["status"] == "ok"]
    expired = [c for c in batch_calls if c["error_type"] == "batch_expired"]
    assert 0 < len(done) < 12 and len(done) + len(expired) == 12
    assert all(int(c["cost_nano"]) == 0 for c in expired)  # not executed, not billed
    assert len(live_calls) == len(expired)  # the rest re-run live, once each
    items = _rows(db, "select * from item_results")
    assert len(items) == 12 and all(i["status"] in ("scored", "unusable") for i in items)
    meter = sum(int(c["cost_nano"]) for c in calls)
    assert meter == _invoice_nano(sim)  # completed batch work metered and billed
    run = _rows(db, "select * from runs")[0]
    assert int(run["committed_nano"]) == int(run["spent_nano"]) == meter <= usd_to_nano(Decimal("0.05"))


async def test_errored_lines_go_again_in_a_new_batch(tmp_path: Path, sim: Any) -> None:
    sim.state.batch_settings.errored_every = 4
    db = tmp_path / "runs.db"
    out = await _run(db, sim, batch=True, models=[MODELS[1]], batch_retry="batch")
    assert out.status == "done"
    calls = _rows(db, "select * from calls")
    assert all(c["sent_to"] == "batch:anthropic" for c in calls)
    errored = [c for c in calls if c["status"] == "error"]
    assert errored and all(c["error_type"] == "batch_errored" and int(c["cost_nano"]) == 0 for c in errored)
    assert len({(c["item_id"]) for c in calls if c["status"] == "ok"}) == 12
    assert len(_sim_batches(sim)) >= 2
    assert sum(int(c["cost_nano"]) for c in calls) == _invoice_nano(sim)


async def test_a_lost_create_answer_is_found_again_not_resubmitted(tmp_path: Path, sim: Any) -> None:
    sim.state.batch_settings.lose_creates = 1
    db = tmp_path / "runs.db"
    out = await _run(db, sim, batch=True, models=[MODELS[0]])
    assert out.status == "done"
    assert len(_sim_batches(sim)) == 1  # found by its metadata, never created twice
    assert len(_billed_lines(sim)) == 12
    calls = _rows(db, "select * from calls")
    assert len(calls) == 12 and all(c["status"] == "ok" for c in calls)


async def test_the_cap_splits_a_batch_that_does_not_fit(tmp_path: Path, sim: Any) -> None:
    # each request reserves its worst case at the batch price; a budget for about 5 of them
    db = tmp_path / "runs.db"
    store = Store.open(str(db))
    try:
        plan = prepare_run(_options(batch=True, models=[MODELS[0]]))
        from harness.run.runner import Runner

        runner = Runner(plan, store, "x", base_urls={})
        mp = plan.models[MODELS[0]]
        from adapters import create_adapter

        adapter = create_adapter(mp.spec, api_key=mp.api_key)
        request = runner.request_for(mp, mp.units[0])[0]
        one = usd_to_nano(mp.price.worst_case(adapter.input_tokens_upper_bound(request), 400, batch=True))
        await adapter.aclose()
    finally:
        store.close()
    budget = Decimal(one * 5 + one // 2) / Decimal(10**9)
    out = await _run(db, sim, batch=True, models=[MODELS[0]], budget_usd=budget)
    assert out.status in ("done", "budget_exhausted")
    batches = _sim_batches(sim)
    # split: never more requests in flight than their worst cases fit; the rest waited for spend
    assert len(batches) >= 2 and max(len(b.lines) for b in batches) <= 5
    run = _rows(db, "select * from runs")[0]
    assert int(run["committed_nano"]) == int(run["spent_nano"]) <= int(run["budget_nano"])
    assert sum(int(c["cost_nano"]) for c in _rows(db, "select * from calls")) == _invoice_nano(sim)
    items = _rows(db, "select * from item_results")
    assert len(items) == 12
    answered = [i for i in items if i["status"] != "not_run"]
    assert len(answered) == sum(len(b.lines) for b in batches) > 5


def test_ctrl_c_cancels_the_provider_batch_and_settles_what_it_charged(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.0) as sim:
        sim.state.batch_settings.complete_s = 6.0
        cmd = [
            sys.executable, "-m", "harness", "run", "demo", "--limit", "12", "-m", MODELS[0],
            "--max-output-tokens", "300", "--sim-url", sim.base_url, "--batch", "--batch-poll", "0.2",
            "--db", str(db), "--no-cache",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:

            def half_done() -> bool:
                got = _sim_batches(sim)
                return bool(got) and len(got[0].results) >= 3

            _wait_for(half_done)
            os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err.decode()[-2000:]
        (batch,) = _sim_batches(sim)
        assert batch.final == "cancelled"
        done = [cid for cid, r in batch.results.items() if r["kind"] == "succeeded"]
        assert 3 <= len(done) < 12
        calls = _rows(db, "select * from calls")
        assert not [c for c in calls if c["status"] == "reserved"]  # every request settled
        ok = [c for c in calls if c["status"] == "ok"]
        assert len(ok) == len(done)  # what the provider answered (and charges) is metered
        assert sum(int(c["cost_nano"]) for c in calls) == _invoice_nano(sim)
        assert _rows(db, "select state from batches")[0]["state"] == "ended"


async def test_deadline_cancels_keeps_completed_work_and_finishes_live(tmp_path: Path, sim: Any) -> None:
    sim.state.batch_settings.complete_s = 3.0
    db = tmp_path / "runs.db"
    out = await _run(db, sim, batch=True, models=[MODELS[0]], batch_deadline_s=1.2)
    assert out.status == "done"
    (batch,) = _sim_batches(sim)
    assert batch.final == "cancelled"
    calls = _rows(db, "select * from calls")
    in_batch = [c for c in calls if c["sent_to"] == "batch:openai"]
    answered = [c for c in in_batch if c["status"] == "ok"]
    cancelled = [c for c in in_batch if c["error_type"] == "batch_canceled"]
    assert 0 < len(answered) < 12 and len(answered) + len(cancelled) == 12
    live = [c for c in calls if c["sent_to"] != "batch:openai"]
    assert len(live) == len(cancelled)  # finished live
    assert len(_rows(db, "select * from item_results where status in ('scored', 'unusable')")) == 12
    assert sum(int(c["cost_nano"]) for c in calls) == _invoice_nano(sim)


def test_cli_batch_options_and_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli.main import main

    code = main(
        ["run", "demo", "-m", MODELS[0], "--sim", "--batch-deadline", "5", "--db", str(tmp_path / "x.db")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--batch-deadline needs --batch" in err and len(err.strip().splitlines()) == 1
    args = [
        "estimate",
        "demo",
        "-m",
        MODELS[0],
        "-m",
        MODELS[1],
        "-m",
        "deepseek/deepseek-chat",
        "--limit",
        "10",
    ]
    assert main([*args, "--json"]) == 0
    full = {r["model"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert main([*args, "--json", "--batch"]) == 0
    half = {r["model"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    for model in MODELS:  # at the batch price: half the expected cost (to rounding)
        assert abs(2 * Decimal(half[model]["expected_usd"]) - Decimal(full[model]["expected_usd"])) < Decimal(
            "0.000001"
        )
        assert Decimal(half[model]["worst_case_usd"]) < Decimal(full[model]["worst_case_usd"])
    assert half["deepseek/deepseek-chat"] == full["deepseek/deepseek-chat"]  # no batch API: live


async def test_gemini_batch_mode_at_the_batch_price(tmp_path: Path, sim: Any) -> None:
    model = "google/gemini-2.5-flash"
    live = await _run(tmp_path / "live.db", sim, models=[model], max_output_tokens=48)
    live_calls = _rows(tmp_path / "live.db", "select * from calls")
    live_bill = _invoice_nano(sim)
    sim.reset_invoice()
    db = tmp_path / "batch.db"
    out = await _run(db, sim, batch=True, models=[model], max_output_tokens=48)
    assert live.status == out.status == "done"
    calls = _rows(db, "select * from calls")
    assert len(calls) == 12 and all(c["sent_to"] == "batch:google" and c["status"] == "ok" for c in calls)
    meter = sum(int(c["cost_nano"]) for c in calls)
    assert meter == _invoice_nano(sim)
    batches = sim.state.batches
    assert batches is not None and [b.final for b in batches.list("google")] == ["completed"]
    usage = lambda cs: sorted((c["item_id"], c["input_uncached"], c["output_tokens"]) for c in cs)  # noqa: E731
    assert usage(calls) == usage(live_calls)  # cut at the output limit: the same usage
    assert abs(2 * meter - live_bill) <= len(calls)  # half the price
    assert len(_rows(db, "select * from item_results where status in ('scored', 'unusable')")) == 12


def test_a_budget_only_a_batch_call_fits_is_taken_with_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli.main import main
    from harness.run.plan import RunOptions, prepare_run, smallest_call_nano

    opts = RunOptions(suites=["demo"], models=[MODELS[0]], budget_usd=Decimal(1), simulated=True)
    live = smallest_call_nano(prepare_run(opts), MODELS[0])
    batch = smallest_call_nano(prepare_run(replace(opts, batch=True)), MODELS[0])
    assert live is not None and batch is not None and batch < live
    between = str(Decimal(batch + live) / 2 / 10**9)
    args = ["run", "demo", "-m", MODELS[0], "--sim", "--limit", "1", "--budget", between]
    code = main([*args, "--db", str(tmp_path / "live.db")])
    err = capsys.readouterr().err
    assert code == 2 and "the smallest call of" in err  # live: refused before anything is written
    # with --batch the same budget holds one call at the batch price: accepted (it runs)
    code = main([*args, "--batch", "--db", str(tmp_path / "batch.db")])
    err = capsys.readouterr().err
    assert "the smallest call of" not in err and code in (0, 3), err
