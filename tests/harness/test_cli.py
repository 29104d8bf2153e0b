"""The command line: exit codes, one-line errors, JSON contracts, and whole runs in child processes
against the simulator (Ctrl-C, two processes sharing one budget, no keys at rest)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.sim import SimServer
from harness.store.engine import Store

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _child(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "no-such-suite", "-m", "openai/o4-mini", "--budget", "1", "--sim"], "no-such-suite"),
        (
            ["run", "demo", "-m", "openai/gpt-nonexistent", "--budget", "1", "--sim"],
            "No price for openai/gpt-nonexistent",
        ),
        (["run", "demo", "-m", "nonsense", "--budget", "1", "--sim"], "nonsense"),
        (["run", "demo", "-m", "openai/o4-mini", "--budget", "1"], "OPENAI_API_KEY"),
        (["run", "demo", "-m", "anthropic/claude-haiku-4-5", "--budget", "1"], "ANTHROPIC_API_KEY"),
        (["run", "demo", "-m", "openai/o4-mini"], "--budget"),
        (["run", "demo", "-m", "openai/o4-mini", "--budget", "ten", "--sim"], "--budget"),
        (["run", "demo", "-m", "openai/o4-mini", "--budget", "-3", "--sim"], "--budget"),
        (["costs", "--by", "color"], "--by"),
        (["costs", "--since", "yesterday"], "--since"),
        (["show", "no-such-run"], "no-such-run"),
        (["prices", "openai/gpt-nonexistent"], "gpt-nonexistent"),
        (
            [
                "run",
                "demo",
                "-m",
                "openai/o4-mini",
                "--budget",
                "1",
                "--sim",
                "--prices",
                "/nonexistent.toml",
            ],
            "nonexistent.toml",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], needle: str, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if args[0] in ("costs", "show"):
        Store.open(str(db_path)).close()  # an existing, empty database
        code, out, err = _cli(*args, "--db", str(db_path), capsys=capsys)
    else:
        code, out, err = _cli(*args, capsys=capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err


READ_COMMANDS = [
    ["runs"], ["show", "r1"], ["costs"], ["resume", "r1"], ["reconcile", "r1"],
    ["export", "r1", "-o", "b.jsonl"], ["rescore", "r1"], ["reprice", "r1"],
]  # fmt: skip


@pytest.mark.parametrize("args", READ_COMMANDS)
def test_commands_that_read_runs_never_create_a_database(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "typo.db"
    code, _, err = _cli(*args, "--db", str(db), capsys=capsys)
    assert (
        code == 2
        and err.strip() == f"Error: no database at {db} (pass --db PATH_OR_URL, or set TOLLBENCH_DB)"
    )
    assert not db.exists()


def test_db_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("create table notes (x text)")
    con.commit()
    con.close()
    code, _, err = _cli("runs", "--db", str(foreign), capsys=capsys)
    assert code == 2 and err.startswith("Error:") and "other.db" in err
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    code, _, err = _cli("runs", "--db", str(garbage), capsys=capsys)
    assert code == 2 and "garbage.db" in err
    assert garbage.read_bytes() == b"this is not a database" * 100  # nothing overwritten


def test_sim_run_json_then_runs_show_and_costs(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(
        "run",
        "demo",
        "-m",
        "openai/o4-mini",
        "-m",
        "anthropic/claude-haiku-4-5",
        "--budget",
        "5",
        "--sim",
        "--sim-speed",
        "0",
        "--limit",
        "8",
        "--max-output-tokens",
        "4000",
        "--db",
        str(db_path),
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    for key in ("id", "status", "budget_usd", "spent_usd", "simulated", "results"):
        assert key in report
    assert report["status"] == "done" and report["simulated"] is True
    assert Decimal(report["spent_usd"]) <= Decimal(report["budget_usd"]) == Decimal("5")
    assert {(r["model"], r["suite"]) for r in report["results"]} == {
        ("openai/o4-mini", "demo"),
        ("anthropic/claude-haiku-4-5", "demo"),
    }
    for r in report["results"]:
        assert r["calls"] >= 8 and r["items"] == 8 and r["output_tokens"] > 0
        assert isinstance(r["spent_usd"], str) and Decimal(r["spent_usd"]) > 0
        assert r["accuracy"] is not None and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    by_model = {r["model"]: r for r in report["results"]}
    assert by_model["openai/o4-mini"]["reasoning_tokens"] > 0  # o4-mini reasons

    code, out, _ = _cli("runs", "--json", "--db", str(db_path), capsys=capsys)
    runs = json.loads(out)
    assert code == 0 and runs[0]["id"] == report["id"] and runs[0]["simulated"] is True
    code, out, _ = _cli("show", report["id"], "--json", "--calls", "--db", str(db_path), capsys=capsys)
    shown = json.loads(out)
    assert shown["spent_usd"] == report["spent_usd"] and len(shown["calls"]) >= 16
    code, out, _ = _cli("show", report["id"], "--db", str(db_path), capsys=capsys)
    assert code == 0 and "SIMULATED" in out


def test_costs_by_model_suite_equal_the_call_rows(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for models in (["openai/gpt-4o-mini"], ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"]):
        args = [
            "run",
            "demo",
            "--budget",
            "5",
            "--sim",
            "--sim-speed",
            "0",
            "--limit",
            "6",
            "--max-output-tokens",
            "3000",
            "--db",
            str(db_path),
        ]
        for m in models:
            args += ["-m", m]
        code, _, err = _cli(*args, capsys=capsys)
        assert code == 0, err
    code, out, _ = _cli("costs", "--by", "model,suite", "--json", "--db", str(db_path), capsys=capsys)
    assert code == 0
    got = {
        (r["model"], r["suite"]): (Decimal(r["spent_usd"]), r["calls"], r["output_tokens"])
        for r in json.loads(out)
    }
    want: dict[tuple[str, str], tuple[Decimal, int, int]] = {}
    for row in _rows(
        db_path,
        "select model, suite, sum(cost_nano) c, count(*) n, sum(output_tokens) o "
        "from calls group by model, suite",
    ):
        want[(row["model"], row["suite"])] = (Decimal(row["c"]).scaleb(-9), row["n"], row["o"])
    assert got == want
    assert len(got) == 2
    code, out, _ = _cli("costs", "--by", "run", "--json", "--db", str(db_path), capsys=capsys)
    assert len(json.loads(out)) == 2


def test_no_api_key_value_is_ever_written(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_oa = "sk-proj-SECRETVALUE-0123456789abcdef"
    secret_an = "sk-ant-api03-SECRETVALUE-fedcba9876543210"
    with SimServer(seed=1, speed=0.0) as sim:
        # A live run (real code path for keys) pointed at the simulator through the SDKs' own variables.
        monkeypatch.setenv("OPENAI_API_KEY", secret_oa)
        monkeypatch.setenv("ANTHROPIC_API_KEY", secret_an)
        monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.anthropic_base_url)
        code, _, err = _cli(
            "run",
            "demo",
            "-m",
            "openai/gpt-4o-mini",
            "-m",
            "anthropic/claude-haiku-4-5",
            "--budget",
            "2",
            "--limit",
            "4",
            "--max-output-tokens",
            "2000",
            "--db",
            str(db_path),
            capsys=capsys,
        )
    assert code == 0, err
    blob = b"".join(p.read_bytes() for p in db_path.parent.glob("runs.db*"))
    for secret in (secret_oa, secret_an):
        assert secret.encode() not in blob
        assert secret[-12:].encode() not in blob
    assert len(_rows(db_path, "select * from calls")) >= 8


@pytest.fixture
def slow_sim() -> Any:
    with SimServer(seed=5, speed=0.5) as sim:
        yield sim


def test_ctrl_c_settles_in_flight_calls_and_exits_130(db_path: Path, slow_sim: Any) -> None:
    proc = _child(
        [
            "run",
            "demo",
            "-m",
            "openai/o4-mini",
            "--budget",
            "5",
            "--sim-url",
            slow_sim.base_url,
            "-c",
            "8",
            "--max-output-tokens",
            "4000",
            "--db",
            str(db_path),
        ]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if db_path.exists():
            try:
                n = _rows(db_path, "select count(*) n from calls")[0]["n"]
            except sqlite3.OperationalError:
                continue
            if n >= 4:
                break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["status"] == "interrupted"
    calls = _rows(db_path, "select * from calls")
    assert calls and all(c["status"] != "reserved" for c in calls)  # nothing left unsettled
    assert any(c["status"] == "interrupted" for c in calls)
    assert run_row["committed_nano"] == run_row["spent_nano"] == sum(c["cost_nano"] for c in calls)
    invoice = usd_to_nano(Decimal(slow_sim.invoice()["total"]["usd"]))
    assert run_row["spent_nano"] >= invoice
    statuses = {r["status"] for r in _rows(db_path, "select status from item_results")}
    assert "not_run" in statuses


def test_two_processes_on_one_run_share_the_budget(db_path: Path) -> None:
    budget = Decimal("0.15")
    with SimServer(seed=11, speed=0.02) as sim:
        args = [
            "run",
            "demo",
            "-m",
            "openai/o4-mini",
            "--budget",
            str(budget),
            "--sim-url",
            sim.base_url,
            "--run-id",
            "shared-run",
            "--allow-partial",
            "-c",
            "6",
            "--max-output-tokens",
            "3000",
            "--repeats",
            "3",
            "--db",
            str(db_path),
        ]
        first = _child(args)
        time.sleep(0.3)  # the first creates the run; the second joins it
        second = _child(args)
        results = [p.communicate(timeout=120) for p in (first, second)]
        codes = {first.returncode, second.returncode}
        invoice = usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))
    assert codes <= {0, 3}, results
    assert 3 in codes, "the budget was meant to run out"
    runs = _rows(db_path, "select * from runs")
    assert len(runs) == 1
    limit = usd_to_nano(budget)
    calls = _rows(db_path, "select * from calls")
    assert sum(c["cost_nano"] for c in calls) <= limit
    assert runs[0]["committed_nano"] <= limit and invoice <= limit
    assert len({c["id"] for c in calls}) == len(calls)


def test_sim_serve_prints_base_urls_and_serves_the_sdks() -> None:
    from openai import OpenAI

    proc = _child(["sim", "serve", "--port", "0", "--speed", "0", "--seed", "3"])
    try:
        assert proc.stdout is not None
        urls = {}
        for _ in range(2):
            line = proc.stdout.readline().strip()
            name, _, value = line.partition("=")
            urls[name] = value
        assert set(urls) == {"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"}
        assert urls["OPENAI_BASE_URL"].startswith("http://127.0.0.1:") and urls["OPENAI_BASE_URL"].endswith(
            "/v1"
        )
        client = OpenAI(api_key="sim", base_url=urls["OPENAI_BASE_URL"], max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], max_completion_tokens=50
        )
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 50
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_sim_serve_refuses_a_public_bind(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli("sim", "serve", "--host", "0.0.0.0", "--port", "0", capsys=capsys)
    assert code == 2, err
    assert "loopback" in err.lower() and len(err.strip().splitlines()) == 1, err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("flag", "value", "says"), [("--pace", "-0.5", "--pace"), ("--workers", "0", "--workers")]
)
def test_sim_serve_refuses_a_bad_pace_or_workers(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    code, _, err = _cli("sim", "serve", "--port", "0", flag, value, capsys=capsys)
    assert code == 2, err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_forecast_refuses_a_budget_that_cannot_finish(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run",
        "demo",
        "-m",
        "openai/o4-mini",
        "--budget",
        "0.05",
        "--sim",
        "--sim-speed",
        "0",
        "--max-output-tokens",
        "3000",
        "--db",
        str(db_path),
    ]
    code, _, err = _cli(*args, capsys=capsys)
    assert code == 2, err
    assert "95% upper bound" in err and "--allow-partial" in err and len(err.strip().splitlines()) == 1
    assert not db_path.exists() or not _rows(db_path, "select * from calls")  # nothing spent
    code, _, err = _cli(*args, "--allow-partial", capsys=capsys)
    assert code == 3, err  # ran, and stopped at the budget
    run_row = _rows(db_path, "select * from runs")[0]
    assert run_row["status"] == "budget_exhausted" and run_row["committed_nano"] <= usd_to_nano(
        Decimal("0.05")
    )
