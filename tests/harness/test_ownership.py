"""One owner per run (docs/design.md invariant 10): taking over a run is one atomic conditional UPDATE of its
row, on SQLite and PostgreSQL.

- two ``resume`` sessions started together (threads with their own Store on the same database,
  released by a barrier): exactly one proceeds, the budget is raised once, every unit is paid once;
- the owner's heartbeat renews ownership; a stale heartbeat or a dead owner process lets another take
  over, ``--force`` always does, and releasing at the end only happens while still the owner;
- ``run --run-id`` joins an existing run only when the plan is the same, otherwise exits 2 naming
  the difference.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from harness.cli.main import main
from harness.errors import ConfigError
from harness.pricing.money import usd_to_nano
from harness.run.resume import plan_resume, resume_run
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.engine import Store
from tests.helpers.db import FAST_RETRY
from tests.helpers.tiny_suite import TinySuite

N = 12
REPEATS = 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A database URL or path: a fresh SQLite file, or a fresh schema on the local PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=31, speed=0.0) as server:
        yield server


def _q(db: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    store = Store.open(db)
    try:
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        store.close()


def _x(db: str, sql: str, **params: Any) -> None:
    store = Store.open(db)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        store.close()


def _first_run(db: str, sim: SimServer, budget: str) -> RunOutcome:
    opts = RunOptions(
        suites=[TinySuite(N, repeats=REPEATS)],
        models=["openai/o4-mini"],
        budget_usd=Decimal(budget),
        simulated=True,
        concurrency=4,
        retry=FAST_RETRY,
        max_output_tokens=2000,
    )

    async def go() -> RunOutcome:
        store = Store.open(db)
        try:
            return await run(prepare_run(opts), store, simulator=sim)
        finally:
            store.close()

    return anyio.run(go)


def _billed_per_unit(sim: SimServer, db: str) -> Counter[tuple[str, int]]:
    calls = {c["id"]: c for c in _q(db, "SELECT id, item_id, repeat FROM calls")}
    out: Counter[tuple[str, int]] = Counter()
    for r in sim.invoice()["requests"].values():
        if r["billed"]:
            c = calls[r["client_request_id"]]
            out[(c["item_id"], int(c["repeat"]))] += 1
    return out


def test_two_resumes_started_together_one_proceeds_budget_added_once(
    db: str, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _first_run(db, sim, budget="0.04")
    assert first.status == "budget_exhausted"
    budget_before = int(_q(db, "SELECT budget_nano FROM runs")[0]["budget_nano"])
    add = usd_to_nano(Decimal(2))

    start = threading.Barrier(2, timeout=30)
    claimed = threading.Barrier(2, timeout=30)
    original = getattr(Store, "claim_run", None)
    if original is not None:
        # Neither session goes on before both have tried to take the run over: the outcome is decided
        # by the database, never by which thread happens to be faster.
        def claim_run(self: Store, *args: Any, **kw: Any) -> Any:
            try:
                return original(self, *args, **kw)
            finally:
                claimed.wait()

        monkeypatch.setattr(Store, "claim_run", claim_run)

    results: dict[int, Any] = {}

    def session(k: int) -> None:
        store = Store.open(db)
        try:
            plan = plan_resume(store, first.run_id, suites=[TinySuite(N, repeats=REPEATS)])
            start.wait()

            async def go() -> RunOutcome:
                return await resume_run(store, plan, simulator=sim, add_budget_nano=add)

            results[k] = anyio.run(go)
        except BaseException as exc:
            results[k] = exc
        finally:
            store.close()

    threads = [threading.Thread(target=session, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    outcomes = [r for r in results.values() if isinstance(r, RunOutcome)]
    refused = [r for r in results.values() if isinstance(r, ConfigError)]
    assert len(outcomes) == 1 and len(refused) == 1, results
    assert outcomes[0].status == "done"
    message = str(refused[0])
    assert f"run {first.run_id} is being resumed by pid {os.getpid()} on {socket.gethostname()}" in message
    assert "wait or use --force" in message and "\n" not in message
    row = _q(db, "SELECT * FROM runs")[0]
    assert int(row["budget_nano"]) == budget_before + add  # added once, by the winner
    assert row["status"] == "done" and row["owner_token"] is None  # released at the end
    assert set(_billed_per_unit(sim, db).values()) == {1}  # every unit paid exactly once
    assert len(_billed_per_unit(sim, db)) == N * REPEATS


def test_ownership_rules_heartbeat_stale_dead_force_and_release(db: str, sim: SimServer) -> None:
    from harness.run.resume import take_over

    first = _first_run(db, sim, budget="5")
    rid = first.run_id
    a, b = Store.open(db), Store.open(db)
    try:
        owner_a = take_over(a, rid, add_budget_nano=7)
        row = _q(db, "SELECT * FROM runs")[0]
        assert row["owner_token"] == owner_a.token and row["status"] == "running"
        assert int(row["owner_pid"]) == os.getpid() and row["owner_host"] == socket.gethostname()
        with pytest.raises(ConfigError, match=f"being resumed by pid {os.getpid()}"):
            take_over(b, rid, add_budget_nano=1000)
        assert int(_q(db, "SELECT budget_nano FROM runs")[0]["budget_nano"]) == usd_to_nano(Decimal(5)) + 7
        a.touch_heartbeat(rid)  # the owner renews
        # A stale heartbeat: another session may take over (and the old owner's heartbeat stops renewing).
        old = datetime.now(UTC) - timedelta(seconds=600)
        store = Store.open(db)
        try:
            with store.begin_write() as conn:
                conn.execute(sa.text("UPDATE runs SET heartbeat_at = :t"), {"t": _db_time(store, old)})
        finally:
            store.close()
        owner_b = take_over(b, rid)
        assert _q(db, "SELECT owner_token FROM runs")[0]["owner_token"] == owner_b.token
        assert a.touch_heartbeat(rid) is False  # no longer the owner: nothing renewed
        # Releasing is conditional on still being the owner: A's end leaves B's ownership alone.
        assert a.release_run(rid, "failed", owner_a.token) is False
        row = _q(db, "SELECT * FROM runs")[0]
        assert row["owner_token"] == owner_b.token and row["status"] == "running"
        # --force takes over a live owner, atomically.
        owner_a2 = take_over(a, rid, force=True)
        assert _q(db, "SELECT owner_token FROM runs")[0]["owner_token"] == owner_a2.token
        assert b.release_run(rid, "done", owner_b.token) is False
        assert a.release_run(rid, "done", owner_a2.token) is True
        row = _q(db, "SELECT * FROM runs")[0]
        assert row["owner_token"] is None and row["status"] == "done"
    finally:
        a.close()
        b.close()


def test_an_owner_whose_process_is_gone_is_taken_over_without_force(db: str, sim: SimServer) -> None:
    from harness.run.resume import take_over

    first = _first_run(db, sim, budget="5")
    now = datetime.now(UTC)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    store = Store.open(db)
    try:
        with store.begin_write() as conn:
            conn.execute(
                sa.text(
                    "UPDATE runs SET status = 'running', owner_token = 'other', owner_pid = :p, "
                    "owner_host = :h, heartbeat_at = :t"
                ),
                {"p": sleeper.pid, "h": socket.gethostname(), "t": _db_time(store, now)},
            )
        with pytest.raises(ConfigError, match=f"being resumed by pid {sleeper.pid} on "):
            plan_resume(store, first.run_id, suites=[TinySuite(N, repeats=REPEATS)])
        with pytest.raises(ConfigError, match="wait or use --force"):
            take_over(store, first.run_id)
        sleeper.kill()
        sleeper.wait()
        owner = take_over(store, first.run_id)  # its process is gone: no --force needed
        assert _q(db, "SELECT owner_token FROM runs")[0]["owner_token"] == owner.token
        store.release_run(first.run_id, "done", owner.token)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        store.close()


def _db_time(store: Store, t: datetime) -> Any:
    return t.replace(tzinfo=None).isoformat(sep=" ") if store.dialect == "sqlite" else t


def _cli_run(db: str, sim: SimServer, *extra: str) -> list[str]:
    return [
        "run", "demo", "-m", "openai/gpt-4o-mini", "--budget", "1", "--max-output-tokens", "1000",
        "--sim-url", sim.base_url, "--db", db, "--run-id", "shared-run", "--json", *extra,
    ]  # fmt: skip


def test_joining_a_run_with_another_plan_exits_2_naming_the_difference(
    db: str, sim: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli_run(db, sim, "--limit", "4")) == 0
    first = json.loads(capsys.readouterr().out)
    requests = len(sim.invoice()["requests"])
    code = main(_cli_run(db, sim, "--limit", "6", "--seed", "3"))
    err = capsys.readouterr().err
    assert code == 2, err
    line = err.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("Error:") and "shared-run" in line[0]
    assert "limit 4 -> 6" in line[0] and "seed 0 -> 3" in line[0]
    assert len(sim.invoice()["requests"]) == requests  # nothing was sent
    code = main(_cli_run(db, sim, "--limit", "4", "--max-output-tokens", "900"))
    err = capsys.readouterr().err
    assert code == 2 and "max_output_tokens" in err
    # The same plan still joins (as before this check), and buys nothing twice.
    assert main(_cli_run(db, sim, "--limit", "4")) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["id"] == first["id"] == "shared-run"


def test_cli_resume_of_a_run_owned_by_a_live_process_exits_2_adding_no_budget(
    db: str, sim: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli_run(db, sim, "--limit", "3")) == 0
    run_id = json.loads(capsys.readouterr().out)["id"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = Store.open(db)
        try:
            with store.begin_write() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE runs SET status = 'running', owner_token = 'other', owner_pid = :p, "
                        "owner_host = :h, heartbeat_at = :t"
                    ),
                    {"p": sleeper.pid, "h": socket.gethostname(), "t": _db_time(store, datetime.now(UTC))},
                )
        finally:
            store.close()
        budget = int(_q(db, "SELECT budget_nano FROM runs")[0]["budget_nano"])
        args = ["resume", run_id, "--add-budget", "3", "--sim-url", sim.base_url, "--db", db]
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0] == (
            f"Error: run {run_id} is being resumed by pid {sleeper.pid} on {socket.gethostname()}; "
            "wait or use --force"
        )
        assert int(_q(db, "SELECT budget_nano FROM runs")[0]["budget_nano"]) == budget
        assert _q(db, "SELECT owner_token FROM runs")[0]["owner_token"] == "other"
        # --force takes it over (atomically), adds the budget once and finishes the run.
        assert main([*args, "--force"]) == 0, capsys.readouterr().err
        row = _q(db, "SELECT * FROM runs")[0]
        assert int(row["budget_nano"]) == budget + usd_to_nano(Decimal(3))
        assert row["status"] == "done" and row["owner_token"] is None
    finally:
        sleeper.kill()
        sleeper.wait()
