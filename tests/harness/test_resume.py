"""Resume: only units without a usable answer are sent again; answers bought but not recorded are
re-scored for free; budget raises go through the ledger; a live run is not taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.cli.main import main
from harness.errors import ConfigError
from harness.pricing.money import usd_to_nano
from harness.run.plan import options_from_config, options_to_config
from harness.run.resume import plan_resume, resume_run, run_activity
from harness.run.retry import RetryPolicy
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import execute as _exec
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=17, speed=0.0) as server:
        yield server


async def _first_run(db: Path, sim: Any, *, n: int = 16, budget: str = "5", **kw: Any) -> RunOutcome:
    opts = RunOptions(
        suites=[TinySuite(n, repeats=2)],
        models=["openai/o4-mini"],
        budget_usd=Decimal(budget),
        simulated=True,
        concurrency=4,
        retry=FAST_RETRY,
        max_output_tokens=2000,
        **kw,
    )
    store = Store.open(str(db))
    try:
        return await run(prepare_run(opts), store, simulator=sim)
    finally:
        store.close()


async def _resume(db: Path, sim: Any, run_id: str, *, n: int = 16, add: str = "0", **kw: Any) -> RunOutcome:
    store = Store.open(str(db))
    try:
        plan = plan_resume(store, run_id, suites=[TinySuite(n, repeats=2)], **kw)
        return await resume_run(store, plan, simulator=sim, add_budget_nano=usd_to_nano(Decimal(add)))
    finally:
        store.close()


def _billed_per_unit(sim: Any, db: Path) -> Counter[tuple[str, int]]:
    calls = {c["id"]: c for c in _rows(db, "select * from calls")}
    out: Counter[tuple[str, int]] = Counter()
    for r in sim.invoice()["requests"].values():
        if r["billed"]:
            c = calls[r["client_request_id"]]
            out[(c["item_id"], c["repeat"])] += 1
    return out


async def test_a_budget_stop_resumes_with_more_budget_and_buys_nothing_twice(db_path: Path, sim: Any) -> None:
    first = await _first_run(db_path, sim, budget="0.03")
    assert first.status == "budget_exhausted"
    statuses = Counter(r["status"] for r in _rows(db_path, "select status from item_results"))
    assert statuses["not_run"] > 0
    answered = {
        (r["item_id"], r["repeat"]): r["answer_text"]
        for r in _rows(db_path, "select * from item_results where status in ('scored', 'unusable')")
    }
    outcome = await _resume(db_path, sim, first.run_id, add="2")
    assert (outcome.run_id, outcome.status, outcome.exit_code) == (first.run_id, "done", 0)
    items = _rows(db_path, "select * from item_results")
    assert len(items) == 32 and all(i["status"] in ("scored", "unusable") for i in items)
    for i in items:  # earlier answers were kept, not bought again
        if (i["item_id"], i["repeat"]) in answered:
            assert i["answer_text"] == answered[(i["item_id"], i["repeat"])]
    assert set(_billed_per_unit(sim, db_path).values()) == {1}  # every unit paid exactly once
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["budget_nano"] == usd_to_nano(Decimal("2.03"))
    assert run_row["status"] == "done" and run_row["finished_at"] is not None
    invoice = usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))
    assert (
        run_row["spent_nano"] == invoice == sum(c["cost_nano"] for c in _rows(db_path, "select * from calls"))
    )


async def test_an_answer_paid_for_but_not_recorded_is_rescored_not_bought(db_path: Path, sim: Any) -> None:
    first = await _first_run(db_path, sim)
    requests = len(sim.invoice()["requests"])
    lost = _rows(db_path, "select * from item_results where repeat = 1 order by item_id limit 5")
    # A crash after the settle and before the item result: the call is paid, the result is gone.
    _exec(
        db_path,
        f"delete from item_results where repeat = 1 and item_id in ({','.join('?' * len(lost))})",
        *[r["item_id"] for r in lost],
    )
    _exec(db_path, "update runs set status = 'running'")
    outcome = await _resume(
        db_path, sim, first.run_id, use_cache=False
    )  # own answers, whatever the cache says
    assert outcome.status == "done"
    assert len(sim.invoice()["requests"]) == requests  # nothing was sent
    again = {r["item_id"]: r for r in _rows(db_path, "select * from item_results where repeat = 1")}
    for r in lost:
        got = again[r["item_id"]]
        assert (got["status"], got["correct"], got["answer_text"]) == (
            r["status"],
            r["correct"],
            r["answer_text"],
        )
        assert got["final_call_id"] == r["final_call_id"] and got["cost_nano"] == r["cost_nano"]
    assert len(_rows(db_path, "select * from calls")) == requests  # no cached rows for its own answers


async def test_a_crashed_reservation_is_resent_and_stays_counted(db_path: Path, sim: Any) -> None:
    first = await _first_run(db_path, sim)
    # A crash after the reservation and before the settle: the call row stays `reserved`.
    victim = _rows(db_path, "select * from calls where repeat = 0 order by item_id limit 1")[0]
    _exec(
        db_path,
        "update calls set status = 'reserved', cost_nano = null, response = null where id = ?",
        victim["id"],
    )
    _exec(
        db_path,
        "update runs set status = 'running', spent_nano = spent_nano - ?, "
        "committed_nano = committed_nano - ? + ?",
        victim["cost_nano"],
        victim["cost_nano"],
        victim["reserved_nano"],
    )
    _exec(db_path, "delete from item_results where item_id = ? and repeat = 0", victim["item_id"])
    requests = len(sim.invoice()["requests"])
    outcome = await _resume(db_path, sim, first.run_id)
    assert outcome.status == "done"
    assert len(sim.invoice()["requests"]) == requests + 1  # only that unit was sent again
    calls = _rows(db_path, "select * from calls where item_id = ? and repeat = 0", victim["item_id"])
    assert sorted(c["status"] for c in calls) == ["ok", "reserved"]
    assert max(c["attempt"] for c in calls) == 2  # numbered after the earlier attempt
    run_row = _rows(db_path, "select * from runs")[0]
    open_nano = sum(
        c["reserved_nano"] for c in _rows(db_path, "select * from calls where status = 'reserved'")
    )
    assert open_nano == victim["reserved_nano"]
    assert run_row["committed_nano"] == run_row["spent_nano"] + open_nano  # still counted at worst case
    item = _rows(db_path, "select * from item_results where item_id = ? and repeat = 0", victim["item_id"])[0]
    assert item["attempts"] == 2


async def test_error_and_not_run_units_are_retried_and_scored_ones_never(db_path: Path, sim: Any) -> None:
    first = await _first_run(db_path, sim)
    _exec(db_path, "update item_results set status = 'error', correct = null where item_id = 'q1'")
    _exec(db_path, "update item_results set status = 'not_run', correct = null where item_id = 'q2'")
    _exec(db_path, "delete from calls where item_id in ('q1', 'q2')")
    _exec(db_path, "update runs set status = 'failed'")
    requests = len(sim.invoice()["requests"])
    outcome = await _resume(db_path, sim, first.run_id, use_cache=False)
    assert outcome.status == "done"
    assert len(sim.invoice()["requests"]) == requests + 4  # q1 and q2, both repeats
    assert {r["status"] for r in _rows(db_path, "select status from item_results")} <= {"scored", "unusable"}


def test_a_live_run_is_not_taken_over_without_force(db_path: Path, sim: Any) -> None:
    first = anyio.run(_first_run, db_path, sim)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cfg = json.loads(_rows(db_path, "select config from runs")[0]["config"])
        cfg["processes"] = [{"host": socket.gethostname(), "pid": sleeper.pid}]
        _exec(
            db_path,
            "update runs set status = 'running', config = ?, heartbeat_at = ?",
            json.dumps(cfg),
            datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),
        )
        store = Store.open(str(db_path))
        try:
            with pytest.raises(ConfigError, match="--force"):
                plan_resume(store, first.run_id, suites=[TinySuite(16, repeats=2)])
            plan_resume(store, first.run_id, suites=[TinySuite(16, repeats=2)], force=True)
        finally:
            store.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    store = Store.open(str(db_path))
    try:  # its process is gone: no --force needed
        plan = plan_resume(store, first.run_id, suites=[TinySuite(16, repeats=2)])
    finally:
        store.close()
    assert plan.units_to_send == 0 and plan.done_units == 32


def test_run_activity_rules() -> None:
    now = datetime.now(UTC)
    here = socket.gethostname()
    base: dict[str, Any] = {"status": "running", "heartbeat_at": now - timedelta(seconds=5), "config": {}}
    assert run_activity(base, now=now)[0] is True  # unknown processes: a fresh heartbeat is trusted
    assert run_activity({**base, "status": "interrupted"}, now=now)[0] is False
    assert run_activity({**base, "heartbeat_at": now - timedelta(seconds=600)}, now=now)[0] is False
    gone = {**base, "config": {"processes": [{"host": here, "pid": 2**22 + 12345}]}}
    assert run_activity(gone, now=now) == (False, "the processes that ran it are gone")
    elsewhere = {**base, "config": {"processes": [{"host": "another-host", "pid": 1}]}}
    assert run_activity(elsewhere, now=now)[0] is True
    alive = {**base, "config": {"processes": [{"host": here, "pid": os.getppid()}]}}
    assert run_activity(alive, now=now)[0] is True


def test_options_round_trip_through_the_stored_config(tmp_path: Path) -> None:
    opts = RunOptions(
        suites=["demo"],
        models=["openai/o4-mini", "anthropic/claude-haiku-4-5"],
        budget_usd=Decimal("1.5"),
        concurrency=3,
        limit=7,
        repeats=2,
        seed=11,
        max_output_tokens=1234,
        simulated=True,
        suite_options={"scorer": "exact"},
        prices=(tmp_path / "p.toml",),
        retry=RetryPolicy(max_attempts=3),
        sim_speed=0.5,
        sim_seed=4,
        target_ci=0.05,
        split={"openai/o4-mini": Decimal("0.25"), "anthropic/claude-haiku-4-5": Decimal("0.75")},
        use_cache=False,
    )
    assert options_from_config(options_to_config(opts)) == opts
    with pytest.raises(ConfigError):
        options_from_config({})


def test_cli_resume_errors_are_one_line(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(str(db_path)).close()
    code = main(["resume", "no-such-run", "--db", str(db_path)])
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("Error:") and "no-such-run" in err and len(err.strip().splitlines()) == 1
    )
    code = main(["resume", "x", "--db", str(db_path), "--add-budget", "lots"])
    err = capsys.readouterr().err
    assert code == 2 and "--add-budget" in err


def test_cli_resume_continues_a_simulated_run(
    db_path: Path, sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run", "demo", "-m", "openai/gpt-4o-mini", "--limit", "10", "--budget", "0.0012", "--allow-partial",
        "--max-output-tokens", "1000", "--sim-url", sim.base_url, "--db", str(db_path), "--json",
    ]  # fmt: skip
    assert main(args) == 3
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "budget_exhausted"
    code = main(
        [
            "resume",
            first["id"],
            "--add-budget",
            "1",
            "--sim-url",
            sim.base_url,
            "--db",
            str(db_path),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["id"] == first["id"] and report["status"] == "done"
    assert report["results"][0]["scored"] + report["results"][0]["unusable"] == 10
    assert "already answered" in err
    assert usd_to_nano(Decimal(report["spent_usd"])) == usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


async def test_a_resume_with_nothing_left_to_send_starts_no_simulator(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _first_run(db_path, sim, n=6)
    requests = len(sim.invoice()["requests"])
    query = "select item_id, repeat, status, correct, answer_text from item_results order by item_id, repeat"
    recorded = [tuple(r) for r in _rows(db_path, query)]
    _exec(db_path, "delete from item_results where repeat = 0")  # bought, never recorded
    _exec(db_path, "update runs set status = 'interrupted'")

    async def no_simulator(plan: Any) -> Any:
        raise AssertionError("a resume with nothing to send must not start a simulator")

    monkeypatch.setattr("harness.run.session._start_simulator", no_simulator)
    store = Store.open(str(db_path))
    try:
        plan = plan_resume(store, first.run_id, suites=[TinySuite(6, repeats=2)])
        assert (plan.units_to_send, plan.recoverable_units) == (0, 6)
        outcome = await resume_run(store, plan)  # no simulator given, none started
    finally:
        store.close()
    assert outcome.status == "done"
    assert len(sim.invoice()["requests"]) == requests
    assert [tuple(r) for r in _rows(db_path, query)] == recorded


async def test_a_target_ci_run_resumes_counting_what_it_already_answered(db_path: Path) -> None:
    """Answers from before the stop feed the sequential interval: the resumed run stops at the target
    after about as many answers as an uninterrupted run, not that many more."""
    kw: dict[str, Any] = {
        "n": 300,
        "target_ci": 0.15,
        "max_output_tokens": 1500,
        "models": ["openai/gpt-4o-mini"],
    }

    async def first(db: Path, sim: Any, budget: str) -> RunOutcome:
        opts = RunOptions(
            suites=[TinySuite(kw["n"])],
            models=kw["models"],
            budget_usd=Decimal(budget),
            simulated=True,
            concurrency=4,
            retry=FAST_RETRY,
            max_output_tokens=kw["max_output_tokens"],
            target_ci=kw["target_ci"],
        )
        store = Store.open(str(db))
        try:
            return await run(prepare_run(opts), store, simulator=sim)
        finally:
            store.close()

    def answered(db: Path) -> int:
        return len(_rows(db, "select * from item_results where status in ('scored', 'unusable')"))

    with SimServer(seed=29, speed=0.0) as sim:
        whole = await first(db_path.with_name("whole.db"), sim, "20")
    assert whole.status == "done"
    full = answered(db_path.with_name("whole.db"))

    with SimServer(seed=29, speed=0.0) as sim:
        stopped = await first(db_path, sim, "0.012")
        assert stopped.status == "budget_exhausted"
        before = answered(db_path)
        assert 30 <= before < full  # (42 of 91 when written)
        store = Store.open(str(db_path))
        try:
            plan = plan_resume(store, stopped.run_id, suites=[TinySuite(kw["n"])])
            outcome = await resume_run(store, plan, simulator=sim, add_budget_nano=usd_to_nano(Decimal(20)))
            config = store.get_run(stopped.run_id)["config"]  # type: ignore[index]
        finally:
            store.close()
    assert outcome.status == "done"
    after = answered(db_path)
    # In-flight calls at the stop and resent requests (fresh simulator draws) move the stopping point
    # by a few items; ignoring the earlier answers would add all `before` of them.
    assert abs(after - full) <= 20, (before, after, full)
    (summary,) = config["target_ci"]
    assert summary["reached"] and summary["n_items"] <= after


def test_stored_paths_are_absolute_so_resume_works_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.jsonl").write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n')
    (tmp_path / "p.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    opts = RunOptions(
        suites=["mine.jsonl", "demo"],
        models=["openai/o4-mini"],
        budget_usd=Decimal(1),
        data=Path("data.parquet"),
        prices=(Path("p.toml"),),
    )
    stored = options_to_config(opts)
    assert stored["suites"] == [str(tmp_path / "mine.jsonl"), "demo"]
    assert stored["data"] == str(tmp_path / "data.parquet")
    assert stored["prices"] == [str(tmp_path / "p.toml")]
    monkeypatch.chdir(tmp_path.parent)
    again = options_from_config(stored)
    assert again.suites == [str(tmp_path / "mine.jsonl"), "demo"]
    assert again.data == tmp_path / "data.parquet" and again.prices == (tmp_path / "p.toml",)
