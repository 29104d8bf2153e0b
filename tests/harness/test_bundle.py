"""Export -> import: a bundle reproduces the run's report exactly (scores, tokens, costs), holds no key,
and loads as a new, imported run that never feeds the response cache and cannot be resumed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.cli.main import main
from harness.errors import ConfigError, DataError
from harness.report import run_report_dict
from harness.run.resume import plan_resume
from harness.run.retry import RetryPolicy
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.store.bundle import export_to_file, import_bundle
from harness.store.engine import Store
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

SECRET_OA = "sk-proj-BUNDLESECRET-0123456789abcdef"
SECRET_AN = "sk-ant-api03-BUNDLESECRET-fedcba9876543210"


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=31, speed=0.0) as server:
        yield server


def _live_run(db: Path, sim: Any, monkeypatch: pytest.MonkeyPatch, *, simulated: bool = False) -> str:
    """A run through the live code path (keys from the environment) pointed at the simulator."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_OA)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_AN)
    opts = RunOptions(
        suites=[TinySuite(8, repeats=2)],
        models=["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"],
        budget_usd=Decimal("3"),
        simulated=simulated,
        concurrency=4,
        retry=RetryPolicy(max_attempts=4, initial_wait_s=0.01),
        max_output_tokens=2000,
    )
    plan = prepare_run(opts)

    async def go() -> str:
        store = Store.open(str(db))
        try:
            return (await run(plan, store, simulator=sim if simulated else None)).run_id
        finally:
            store.close()

    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.anthropic_base_url)
    return anyio.run(go)


def _report(db: Path, run_id: str) -> dict[str, Any]:
    store = Store.open(str(db))
    try:
        return run_report_dict(store, run_id)
    finally:
        store.close()


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in report.items() if k not in ("id", "config")}
    return out


def test_export_import_round_trip_equals_the_original_report(
    tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    run_id = _live_run(db, sim, monkeypatch)
    # A second run answered from the cache: cached rows travel too.
    again = _live_run(db, sim, monkeypatch)
    bundle = tmp_path / "run.jsonl"
    for rid in (run_id, again):
        store = Store.open(str(db))
        try:
            summary = export_to_file(store, rid, bundle)
        finally:
            store.close()
        assert summary.calls == len(_rows(db, "select id from calls where run_id = ?", rid))
        text = bundle.read_bytes()
        for secret in (SECRET_OA, SECRET_AN):  # no key, not even a tail of one
            assert secret.encode() not in text and secret[-12:].encode() not in text
        assert b'"processes"' not in text  # host names and pids stay home
        other = tmp_path / f"elsewhere-{rid}.db"  # someone else's database
        store = Store.open(str(other))
        try:
            loaded = import_bundle(store, bundle)
            imported = run_report_dict(store, loaded.run_id)
        finally:
            store.close()
        original = _report(db, rid)
        assert loaded.source_run_id == rid and loaded.run_id != rid
        assert _comparable(imported) == _comparable(original)
        assert imported["config"]["imported"]["from_run"] == rid
        items = [dict(r) for r in _rows(other, "select * from item_results order by model, item_id, repeat")]
        want = [
            dict(r)
            for r in _rows(
                db, "select * from item_results where run_id = ? order by model, item_id, repeat", rid
            )
        ]
        keys = (
            "model",
            "suite",
            "item_id",
            "repeat",
            "status",
            "correct",
            "extracted",
            "answer_text",
            "cost_nano",
        )
        assert [{k: i[k] for k in keys} for i in items] == [{k: i[k] for k in keys} for i in want]
        calls = _rows(other, "select * from calls")
        assert all(c["request_hash"] is None for c in calls)  # never serves the response cache
        assert all(c["request"] is not None for c in calls if c["status"] in ("ok", "cached"))
        assert all(i["status"] in ("scored", "unusable") for i in items)
        final_ids = {i["final_call_id"] for i in items}
        assert final_ids <= {c["id"] for c in calls}
        # An absent raw usage, request or answer is SQL NULL in both databases (not JSON 'null').
        nulls = "select count(*) from calls where {} is null and run_id = ?"
        for column in ("raw_usage", "request", "response"):
            here = _rows(db, nulls.format(column), rid)[0][0]
            assert _rows(other, nulls.format(column), loaded.run_id)[0][0] == here, column
    assert _report(db, again)["results"][0]["cached"] == 16


def test_an_imported_run_is_marked_keeps_its_simulated_flag_and_cannot_be_resumed(
    tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    run_id = _live_run(db, sim, monkeypatch, simulated=True)
    bundle = tmp_path / "b.jsonl"
    assert main(["export", run_id, "-o", str(bundle), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["import", str(bundle), "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["simulated"] is True and report["id"] != run_id
    assert report["spent_usd"] == _report(db, run_id)["spent_usd"]
    assert main(["runs", "--db", str(db), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    store = Store.open(str(db))
    try:
        with pytest.raises(ConfigError, match="imported"):
            plan_resume(store, report["id"], suites=[TinySuite(8, repeats=2)])
    finally:
        store.close()


def test_bad_bundles_are_refused_with_one_line(
    tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "runs.db"
    run_id = _live_run(db, sim, monkeypatch, simulated=True)
    good = tmp_path / "good.jsonl"
    store = Store.open(str(db))
    try:
        export_to_file(store, run_id, good)
        lines = good.read_text().splitlines()
        cases = {
            "truncated": "\n".join(lines[:-1]),
            "not json": lines[0] + "\n{oops",
            "no header": "\n".join(lines[1:]),
            "newer": lines[0].replace('"version": 1', '"version": 99') + "\n" + "\n".join(lines[1:]),
            "edited spend": "\n".join(lines).replace('"cost_nano": ', '"cost_nano": 1', 1),
        }
        for name, text in cases.items():
            path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
            path.write_text(text)
            with pytest.raises(DataError) as info:
                import_bundle(store, path)
            assert "\n" not in str(info.value), name
        runs_before = len(store.list_runs())
    finally:
        store.close()
    assert runs_before == 1  # nothing half-imported
    assert main(["import", str(tmp_path / "truncated.jsonl"), "--db", str(db)]) == 2
    assert main(["export", "nope", "-o", str(tmp_path / "x.jsonl"), "--db", str(db)]) == 2
