"""Bad input, one case per row: exit 2, one line that names the fix, no traceback, and nothing recorded
(no run row left behind, a run's budget unchanged, no database created where none was).

Every case goes through the real command line (``harness.cli.main.main``, or a child process where the
environment must differ) on a real SQLite file, or the local PostgreSQL server for the NUL case.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.store.engine import Store

ROOT = Path(__file__).resolve().parents[2]

RUN = ["run", "demo", "-m", "openai/o4-mini", "--limit", "1"]
SIM = [*RUN, "--budget", "1", "--sim", "--sim-speed", "0"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _jsonl(tmp: Path, line: str) -> str:
    return _write(tmp, "suite.jsonl", line + "\n")


def _bundle(tmp: Path) -> str:
    """A bundle whose one call claims -$5 of real spend, with the run's totals edited to match."""
    run = {
        "id": "r-src",
        "status": "done",
        "simulated": False,
        "suites": ["demo"],
        "models": ["openai/o4-mini"],
        "budget_nano": 10**9,
        "spent_nano": -5 * 10**9,
        "committed_nano": -5 * 10**9,
        "config": {},
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    call = {
        "id": "c1",
        "run_id": "r-src",
        "model": "openai/o4-mini",
        "provider": "openai",
        "api": "chat",
        "provider_model": "o4-mini",
        "suite": "demo",
        "item_id": "i1",
        "repeat": 0,
        "attempt": 1,
        "role": "target",
        "status": "ok",
        "reserved_nano": 1000,
        "cost_nano": -5 * 10**9,
        "started_at": "2026-01-01T00:00:00+00:00",
        "cached": False,
    }
    header = {
        "type": "header",
        "format": "tollbench-bundle",
        "version": 1,
        "run": run,
        "counts": {"prices": 0, "calls": 1, "items": 0},
    }
    lines = [header, {"type": "call", "row": call}]
    return _write(tmp, "tampered.jsonl", "".join(json.dumps(x) + "\n" for x in lines))


Setup = Callable[[Path], list[str]]

#: (case id, args builder given tmp_path). Each builder returns the command line after `tollbench`.
CASES: list[tuple[str, Setup, str]] = [
    # --sim-profiles / --sim-faults (today: the simulator child fails after the run row exists)
    ("profiles-malformed-toml", lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", "x = [")], "p.toml"),
    (
        "profiles-wrong-type",
        lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", '[models."o4-mini"]\naccuracy = "high"\n')],
        "accuracy",
    ),
    (
        "profiles-bool-for-number",
        lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", '[models."o4-mini"]\nrpm = true\n')],
        "rpm",
    ),
    (
        "profiles-negative",
        lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", '[models."o4-mini"]\nttft_s = -1.0\n')],
        "ttft_s",
    ),
    (
        "profiles-unknown-key",
        lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", '[models."o4-mini"]\nbogus = 1\n')],
        "bogus",
    ),
    (
        "profiles-unknown-table",
        lambda t: [*SIM, "--sim-profiles", _write(t, "p.toml", '[modles."o4-mini"]\naccuracy = 0.5\n')],
        "modles",
    ),
    ("faults-malformed-toml", lambda t: [*SIM, "--sim-faults", _write(t, "f.toml", "x = [")], "f.toml"),
    (
        "faults-negative-rate",
        lambda t: [*SIM, "--sim-faults", _write(t, "f.toml", "error_500 = -0.5\n")],
        "error_500",
    ),
    (
        "faults-nan-rate",
        lambda t: [*SIM, "--sim-faults", _write(t, "f.toml", "error_500 = nan\n")],
        "error_500",
    ),
    (
        "faults-wrong-type",
        lambda t: [*SIM, "--sim-faults", _write(t, "f.toml", "error_500 = true\n")],
        "error_500",
    ),
    ("faults-unknown-key", lambda t: [*SIM, "--sim-faults", _write(t, "f.toml", "bogus = 1\n")], "bogus"),
    (
        "faults-nan-stall",
        lambda t: [*SIM, "--sim-faults", _write(t, "f.json", '{"stall_s": NaN}')],
        "stall_s",
    ),
    # budgets
    ("budget-9.2e9", lambda t: [*RUN, "--sim", "--budget", "9.2e9"], "--budget"),
    ("budget-int64-overflow", lambda t: [*RUN, "--sim", "--budget", "9300000000"], "--budget"),
    ("budget-1e400", lambda t: [*RUN, "--sim", "--budget", "1e400"], "--budget"),
    ("budget-negative", lambda t: [*RUN, "--sim", "--budget", "-1"], "--budget"),
    ("budget-nan", lambda t: [*RUN, "--sim", "--budget", "nan"], "--budget"),
    ("budget-inf", lambda t: [*RUN, "--sim", "--budget", "inf"], "--budget"),
    ("add-budget-overflow", lambda t: ["resume", "RUN", "--add-budget", "1e400"], "--add-budget"),
    ("add-budget-9.2e9", lambda t: ["resume", "RUN", "--add-budget", "9.2e9"], "--add-budget"),
    ("add-budget-nan", lambda t: ["resume", "RUN", "--add-budget", "nan"], "--add-budget"),
    ("add-budget-negative", lambda t: ["resume", "RUN", "--add-budget", "-2"], "--add-budget"),
    # JSONL suite files
    (
        "jsonl-deep-nesting",
        lambda t: [
            "run",
            _jsonl(t, '{"prompt": "q", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}"),
            "-m",
            "openai/o4-mini",
            "--budget",
            "1",
            "--sim",
        ],
        "nested",
    ),  # fmt: skip
    (
        "jsonl-nesting-below-recursion-limit",
        lambda t: [
            "run",
            _jsonl(t, '{"prompt": "q", "answer": "a", "x": ' + "[" * 500 + "]" * 500 + "}"),
            "-m",
            "openai/o4-mini",
            "--budget",
            "1",
            "--sim",
        ],
        "'x'",
    ),  # fmt: skip
    (
        "jsonl-lone-surrogate",
        lambda t: [
            "run",
            _jsonl(t, r'{"prompt": "q\ud800", "answer": "a"}'),
            "-m",
            "openai/o4-mini",
            "--sim",
        ],
        "'prompt'",
    ),
    (
        "jsonl-nul-in-answer",
        lambda t: [
            "run",
            _jsonl(t, r'{"prompt": "q", "answer": "a\u0000b"}'),
            "-m",
            "openai/o4-mini",
            "--sim",
        ],
        "'answer'",
    ),
    (
        "jsonl-nul-in-id",
        lambda t: [
            "run",
            _jsonl(t, r'{"prompt": "q", "answer": "a", "id": "x\u0000"}'),
            "-m",
            "openai/o4-mini",
            "--sim",
        ],
        "'id'",
    ),  # fmt: skip
    # timeouts
    ("attempt-timeout-0", lambda t: [*SIM, "--attempt-timeout", "0"], "--attempt-timeout"),
    ("attempt-timeout-negative", lambda t: [*SIM, "--attempt-timeout", "-1"], "--attempt-timeout"),
    ("attempt-timeout-nan", lambda t: [*SIM, "--attempt-timeout", "nan"], "--attempt-timeout"),
    ("attempt-timeout-inf", lambda t: [*SIM, "--attempt-timeout", "inf"], "--attempt-timeout"),
    ("stall-timeout-0", lambda t: [*SIM, "--stall-timeout", "0"], "--stall-timeout"),
    ("stall-timeout-nan", lambda t: [*SIM, "--stall-timeout", "nan"], "--stall-timeout"),
    ("reconcile-grace-nan", lambda t: ["reconcile", "RUN", "--grace", "nan"], "--grace"),
    # the simulator's URL, port and speed
    ("sim-url-refused", lambda t: [*SIM, "--sim-url", f"http://127.0.0.1:{_closed_port()}"], "no simulator"),
    ("sim-url-lookalike-host", lambda t: [*SIM, "--sim-url", "http://127.0.0.1.evil.example"], "--sim-url"),
    ("sim-url-userinfo", lambda t: [*SIM, "--sim-url", "http://localhost@10.0.0.1"], "--sim-url"),
    ("sim-url-https-public", lambda t: [*SIM, "--sim-url", "https://example.com"], "--sim-url"),
    (
        "resume-sim-url-lookalike",
        lambda t: ["resume", "RUN", "--sim-url", "http://127.0.0.1.evil.example"],
        "--sim-url",
    ),
    ("sim-serve-port-negative", lambda t: ["sim", "serve", "--port", "-1"], "--port"),
    ("sim-serve-port-too-big", lambda t: ["sim", "serve", "--port", "65536"], "--port"),
    ("sim-serve-speed-nan", lambda t: ["sim", "serve", "--speed", "nan"], "--speed"),
    ("sim-speed-inf", lambda t: [*RUN, "--budget", "1", "--sim", "--sim-speed", "inf"], "--sim-speed"),
    ("sim-speed-nan", lambda t: [*RUN, "--budget", "1", "--sim", "--sim-speed", "nan"], "--sim-speed"),
    ("sim-speed-negative", lambda t: [*RUN, "--budget", "1", "--sim", "--sim-speed", "-1"], "--sim-speed"),
    # --base-url, limits that cannot fit the budget, runaway repeats
    ("base-url-not-a-url", lambda t: [*SIM, "--base-url", "not a url"], "--base-url"),
    ("base-url-no-host", lambda t: [*SIM, "--base-url", "http:///v1"], "--base-url"),
    ("max-output-tokens-1e9", lambda t: [*SIM, "--max-output-tokens", "1000000000"], "smallest call"),
    ("repeats-2e9", lambda t: [*SIM, "--repeats", "2000000000"], "--repeats"),
    # a tampered bundle
    ("import-negative-spend", lambda t: ["import", _bundle(t)], "cost_nano"),
]


def _has_runs(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return int(con.execute("select count(*) from runs").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _budget(db: Path, run_id: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("select budget_nano from runs where id = ?", (run_id,)).fetchone()[0])
    finally:
        con.close()


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


@pytest.mark.parametrize(("setup", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_records_nothing(
    setup: Setup, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    args = setup(tmp_path)
    existing: str | None = None
    if "RUN" in args:  # commands on an existing run: make one (simulated, $1 budget)
        store = Store.open(str(db))
        try:
            existing = store.create_run(
                suites=["demo"],
                models=["openai/o4-mini"],
                budget_nano=10**9,
                simulated=True,
                config={},
                price_table_sha256="0" * 64,
            )
        finally:
            store.close()
        args = [existing if a == "RUN" else a for a in args]
    code = main([*args, "--db", str(db)] if args[0] != "sim" else args)
    out, err = capsys.readouterr()
    line = _one_line_error(code, out, err)
    assert needle in line, line
    if existing is None:
        assert _has_runs(db) == 0, "a run row was left behind"
    else:
        assert _has_runs(db) == 1 and _budget(db, existing) == 10**9


@pytest.mark.parametrize("key", ["x", "ab", "k3y"])
def test_an_api_key_of_1_to_3_characters_is_refused_before_anything_is_written(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such a key cannot be kept out of stored text (see harness/redact.py): refuse it, say why."""
    db = tmp_path / "runs.db"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    code = main([*RUN, "--budget", "1", "--db", str(db)])
    out, err = capsys.readouterr()
    line = _one_line_error(code, out, err)
    assert "OPENAI_API_KEY" in line and "4 or more characters" in line
    assert key not in line.removeprefix("Error: ").split("OPENAI_API_KEY")[0]
    assert _has_runs(db) == 0


# -- a damaged runs.db, for every command ----------------------------------------------------------------

_EVERY_COMMAND = [
    ["runs"], ["show", "RUN"], ["show", "RUN", "--calls", "--json"], ["costs"], ["resume", "RUN"],
    ["reconcile", "RUN"], ["export", "RUN", "-o", "out.jsonl"], ["rescore", "RUN"], ["reprice", "RUN"],
    [*RUN, "--budget", "1", "--sim"], ["estimate", "demo", "-m", "openai/o4-mini"], ["import", "BUNDLE"],
]  # fmt: skip


def _base_db(tmp_path: Path) -> tuple[Path, str, str]:
    """A database with one finished simulated run, and a bundle of it."""
    db = tmp_path / "base.db"
    code = main([*SIM, "--db", str(db)])
    assert code == 0
    con = sqlite3.connect(db)
    run_id = str(con.execute("select id from runs").fetchone()[0])
    con.close()
    bundle = tmp_path / "bundle.jsonl"
    assert main(["export", run_id, "-o", str(bundle), "--db", str(db)]) == 0
    return db, run_id, str(bundle)


def _flip_schema_names(src: Path, dst: Path) -> None:
    """Flip one byte of a table's name in its schema record (``table`` + name + name, contiguous in
    SQLite's record format) into invalid UTF-8: what a flipped bit in the schema looks like."""
    data = bytearray(src.read_bytes())
    hits = 0
    for name in (b"item_results", b"calls"):
        i = data.find(b"table" + name + name)
        if i >= 0:
            data[i + 5 + 1] = 0xFF
            hits += 1
    assert hits, "schema records not found"
    dst.write_bytes(bytes(data))


def _garble_text_column(src: Path, dst: Path, run_id: str) -> None:
    """A text column holding bytes that are not UTF-8 (what a flipped byte in a data page gives)."""
    dst.write_bytes(src.read_bytes())
    con = sqlite3.connect(dst)
    con.execute("update runs set config = cast(x'7b22ff22' as text) where id = ?", (run_id,))
    con.execute("update calls set request = cast(x'7b22ff22' as text)")
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("damaged")
    db, run_id, bundle = _base_db(tmp)
    _flip_schema_names(db, tmp / "schema.db")
    _garble_text_column(db, tmp / "column.db", run_id)
    return {"dir": tmp, "run_id": run_id, "bundle": bundle}


@pytest.mark.parametrize("kind", ["schema", "column"])
@pytest.mark.parametrize("args", _EVERY_COMMAND, ids=lambda a: "-".join(a[:2]))
def test_a_corrupt_database_is_one_line_and_exit_2_for_every_command(
    args: list[str], kind: str, damaged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = damaged["dir"] / f"{kind}.db"
    args = [damaged["run_id"] if a == "RUN" else damaged["bundle"] if a == "BUNDLE" else a for a in args]
    if args[0] == "export":
        args[3] = str(damaged["dir"] / "out.jsonl")
    before = db.read_bytes()
    code = main([*args, "--db", str(db)])
    out, err = capsys.readouterr()
    if kind == "column" and args[0] in ("runs", "costs", "estimate", "run", "import", "resume", "reconcile"):
        # these commands do not read the garbled columns (or refuse earlier for another reason)
        assert "Traceback" not in err
        return
    line = _one_line_error(code, out, err)
    assert "corrupt" in line and "backup" in line, line
    assert len(line) < 400
    if args[0] in ("run", "import"):
        assert db.read_bytes()[:4096] == before[:4096]


# -- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_nul_in_a_jsonl_field_is_refused_before_a_postgresql_run_starts(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL text cannot hold NUL: refused at load (file, line, field), no run row in PostgreSQL."""
    suite = _write(
        tmp_path,
        "nul.jsonl",
        '{"prompt": "fine", "answer": "a"}\n{"prompt": "q\\u0000", "answer": "a"}\n',
    )
    code = main(["run", suite, "-m", "openai/o4-mini", "--budget", "1", "--sim", "--db", pg_url])
    out, err = capsys.readouterr()
    line = _one_line_error(code, out, err)
    assert "nul.jsonl: line 2" in line and "'prompt'" in line and "NUL" in line
    store = Store.open(pg_url)
    try:
        assert store.list_runs() == []
    finally:
        store.close()


def test_a_postgresql_url_without_the_driver_names_the_extra(tmp_path: Path) -> None:
    """psycopg missing (simulated with a None entry in sys.modules, as an uninstalled module behaves)."""
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
        "from harness.cli.main import main\n"
        "sys.exit(main(['runs', '--db', 'postgresql://postgres@127.0.0.1:5432/test']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    line = _one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert "pip install 'tollbench[postgres]'" in line
