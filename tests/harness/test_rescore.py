"""Rescore and reprice: a run's stored answers scored again and its calls priced again, without sending
or paying anything and without writing to the database.

Runs are real (the simulator, a SQLite file); the checks are exact: every verdict reproduced, every
cost reproduced to the nano-dollar, and a doubled price shows exactly the expected difference.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.audit.reprice import reprice_run
from harness.audit.rescore import rescore_run
from harness.cli.main import main
from harness.errors import DataError
from harness.pricing.money import usd_str
from harness.pricing.table import PriceTable
from harness.report import run_report_dict
from harness.run.plan import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import FaultConfig, SimServer
from harness.store.bundle import export_to_file, import_bundle
from harness.store.engine import Store
from harness.suite import Item, Score, Suite, score_answer
from harness.types import Message, Prompt
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import execute as _execute
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

MODELS = ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")


def _tiny() -> TinySuite:
    return TinySuite(8, repeats=2)


def _copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a SQLite file (WAL included) to edit without touching the shared one."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return dst


def _snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every tollbench table, to prove a command wrote nothing."""
    return {
        t: [tuple(r) for r in _rows(db, f"select * from {t} order by rowid")]
        for t in ("runs", "calls", "item_results", "prices")
    }


def _simulated_run(
    db: Path, sim: Any, suites: Sequence[str | Suite], models: Sequence[str] = MODELS, **kw: Any
) -> str:
    plan = prepare_run(
        RunOptions(
            suites=list(suites),
            models=list(models),
            budget_usd=Decimal("3"),
            simulated=True,
            concurrency=4,
            max_output_tokens=2000,
            retry=FAST_RETRY,
            **kw,
        )
    )

    async def go() -> str:
        store = Store.open(str(db))
        try:
            return (await run(plan, store, simulator=sim)).run_id
        finally:
            store.close()

    return anyio.run(go)


@dataclass(frozen=True)
class Runs:
    db: Path
    run_id: str
    """16 items x 2 models, bought from the simulator."""
    cached_id: str
    """The same run again: every answer from the response cache."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Two runs made once for the module (tests that edit the database work on a copy)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp, SimServer(seed=31, speed=0.0) as sim:
        mp.delenv("TOLLBENCH_PRICES", raising=False)
        mp.setenv("HOME", str(home))
        db = tmp_path_factory.mktemp("runs") / "runs.db"
        first = _simulated_run(db, sim, [_tiny()])
        again = _simulated_run(db, sim, [_tiny()])
        yield Runs(db, first, again)


def _store(db: Path) -> Store:
    return Store.open(str(db))


# --------------------------------------------------------------------------------------------- rescore


def test_score_answer_follows_the_runner_rules() -> None:
    suite = _tiny()
    prompt = suite.render(suite.items[3], 0, 0)  # target "3 + 21 % 11" = 13

    def score(text: str, finish: str) -> Score:
        async def go() -> Score:
            return await score_answer(suite, prompt, text, finish)

        return anyio.run(go)

    assert score("\\boxed{13}", "refusal") == Score("unusable", None, None, "refused")
    assert score("  ", "stop") == Score("unusable", None, None, "empty")
    assert score("", "length") == Score("unusable", None, None, "truncated")
    assert score("thinking about it", "length") == Score("unusable", None, None, "truncated")
    assert score("thinking about it", "stop") == Score("scored", False, None)
    assert score("so \\boxed{13}", "length") == Score("scored", True, "13")
    assert score("\\boxed{12}", "stop") == Score("scored", False, "12")


def test_rescoring_a_local_run_reproduces_every_verdict_and_writes_nothing(runs: Runs) -> None:
    before = _snapshot(runs.db)
    store = _store(runs.db)
    try:
        for rid in (runs.run_id, runs.cached_id):  # bought answers, then answers from the cache
            result = rescore_run(store, rid, suites=[_tiny()])
            report = {(r["model"], r["suite"]): r for r in run_report_dict(store, rid)["results"]}
            assert result.changed == []
            assert [(g.model, g.suite) for g in result.groups] == sorted(report)
            for g in result.groups:
                r = report[(g.model, g.suite)]
                assert g.items == g.answers == 16
                assert (g.scored_before, g.correct_before) == (r["scored"], r["correct"])
                assert (g.scored_after, g.correct_after) == (g.scored_before, g.correct_before)
                assert g.accuracy_after == g.accuracy_before == r["accuracy"]
                assert g.changed == g.prompt_mismatch == g.from_item_text == 0
            assert 0 < sum(g.correct_before for g in result.groups) < 32  # a mix of right and wrong
    finally:
        store.close()
    assert _snapshot(runs.db) == before


def test_rescoring_after_export_and_import_gives_the_same(runs: Runs, tmp_path: Path) -> None:
    bundle = tmp_path / "run.jsonl"
    other = tmp_path / "elsewhere.db"
    store = _store(runs.db)
    try:
        export_to_file(store, runs.run_id, bundle)
        original = rescore_run(store, runs.run_id, suites=[_tiny()]).as_dict()
    finally:
        store.close()
    store = _store(other)
    try:
        new_id = import_bundle(store, bundle).run_id
        imported = rescore_run(store, new_id, suites=[_tiny()]).as_dict()
    finally:
        store.close()
    assert imported["imported_from"] == runs.run_id and imported["run_id"] == new_id
    assert imported["changed"] == 0 and imported["changed_items"] == []
    assert imported["results"] == original["results"]


def test_an_edited_verdict_is_reported_as_changed(runs: Runs, tmp_path: Path) -> None:
    db = _copy_db(runs.db, tmp_path / "edited.db")
    scored = _rows(
        db,
        "select * from item_results where run_id = ? and status = 'scored' order by model, item_id, repeat",
        runs.run_id,
    )
    right = next(r for r in scored if r["correct"])
    wrong = next(r for r in scored if not r["correct"])
    key = "run_id = ? and model = ? and suite = ? and item_id = ? and repeat = ?"
    _execute(db, f"update item_results set correct = 0 where {key}", *[right[k] for k in _KEY])
    _execute(
        db,
        f"update item_results set status = 'unusable', correct = null, reason = 'empty' where {key}",
        *[wrong[k] for k in _KEY],
    )
    store = _store(db)
    try:
        result = rescore_run(store, runs.run_id, suites=[_tiny()])
    finally:
        store.close()
    changed = {(c.model, c.item_id, c.repeat): c.as_dict() for c in result.changed}
    assert set(changed) == {(r["model"], r["item_id"], r["repeat"]) for r in (right, wrong)}
    flipped = changed[(right["model"], right["item_id"], right["repeat"])]
    assert (flipped["before"], flipped["after"]) == ("wrong", "correct")
    assert flipped["extracted"] == right["extracted"] == right["target"]
    revived = changed[(wrong["model"], wrong["item_id"], wrong["repeat"])]
    assert (revived["before"], revived["after"]) == ("unusable", "wrong")
    assert revived["extracted"] == wrong["extracted"]
    assert sum(g.changed for g in result.groups) == 2


class _Reworded(TinySuite):
    """The same items and targets, asked in other words (a suite that changed its prompt)."""

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        text = f"Compute: {item.question} Reply with \\boxed{{N}}."
        return Prompt(messages=(Message("user", text),), target=item.answer, answer_format="boxed")


def test_a_changed_prompt_is_counted_and_missing_items_are_refused(runs: Runs) -> None:
    store = _store(runs.db)
    try:
        result = rescore_run(store, runs.run_id, suites=[_Reworded(8, repeats=2)])
        assert result.total_prompt_mismatch == 32 and result.changed == []
        with pytest.raises(DataError, match="lacks 4 item") as info:
            rescore_run(store, runs.run_id, suites=[TinySuite(4, repeats=2)])
        assert "--data" in str(info.value) and "\n" not in str(info.value)
    finally:
        store.close()


_KEY = ("run_id", "model", "suite", "item_id", "repeat")


def test_rescore_cli_on_an_imported_run_asks_for_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "questions.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"x{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
            for i in range(6)
        )
    )
    db = tmp_path / "runs.db"
    with SimServer(seed=5, speed=0.0) as sim:
        run_id = _simulated_run(db, sim, [str(data)], models=["openai/gpt-4o-mini"])
    assert main(["rescore", run_id, "--db", str(db), "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert here["answers"] == 6 and here["changed"] == 0
    assert [r["suite"] for r in here["results"]] == ["jsonl:questions"]
    bundle = tmp_path / "b.jsonl"
    assert main(["export", run_id, "-o", str(bundle), "--db", str(db)]) == 0
    other = tmp_path / "elsewhere" / "runs.db"
    other.parent.mkdir()
    assert main(["import", str(bundle), "--db", str(other), "--json"]) == 0
    new_id = json.loads(capsys.readouterr().out)["id"]
    moved = tmp_path / "elsewhere" / "copy-of-the-data.jsonl"
    shutil.move(data, moved)  # the data file is not where the run read it

    assert main(["rescore", new_id, "--db", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "\n" not in err
    assert "questions.jsonl" in err and "--data" in err

    before = _snapshot(other)
    assert main(["rescore", new_id, "--db", str(other), "--data", str(moved), "--json"]) == 0
    there = json.loads(capsys.readouterr().out)
    assert there["imported_from"] == run_id and there["changed"] == 0
    assert there["results"] == here["results"]
    assert main(["rescore", new_id, "--db", str(other), "--data", str(moved)]) == 0
    assert "all 6 verdicts as recorded" in capsys.readouterr().out
    assert _snapshot(other) == before


# --------------------------------------------------------------------------------------------- reprice


def test_repricing_with_the_built_in_table_equals_the_recorded_cost(runs: Runs) -> None:
    before = _snapshot(runs.db)
    store = _store(runs.db)
    try:
        result = reprice_run(store, runs.run_id)
        cached = reprice_run(store, runs.cached_id)
        spent = int(store.get_run(runs.run_id)["spent_nano"])  # type: ignore[index]
    finally:
        store.close()
    assert [m.model for m in result.models] == sorted(MODELS)
    for m in result.models:
        assert m.priced_calls == 16 and m.recorded_nano > 0
        assert m.repriced_nano == m.recorded_nano and m.changed_calls == 0
        assert m.unknown_calls == m.cached_calls == m.no_price_calls == 0
        assert m.current_price_ids == m.recorded_price_ids
    assert result.total("recorded_nano") == spent
    assert result.as_dict()["difference_usd"] == "0"
    # Answers from the cache cost 0 here: not repriced, shown as their cost to reproduce.
    bought = {m.model: m.recorded_nano for m in result.models}
    for m in cached.models:
        assert m.priced_calls == 0 and m.recorded_nano == m.repriced_nano == 0
        assert m.cached_calls == 16 and m.reproduce_nano == bought[m.model]
    assert _snapshot(runs.db) == before


def test_a_doubled_price_shows_exactly_the_expected_difference(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'provider = "openai"\n\n[[models]]\nmodel = "gpt-4o-mini"\n'
        'input = "0.15"\ncached_input = "0.075"\noutput = "1.20"\n'  # output doubled from 0.60
    )
    calls = _rows(
        runs.db, "select * from calls where run_id = ? and model = 'openai/gpt-4o-mini'", runs.run_id
    )
    # $0.60 per million tokens is 600 nano-dollars a token: doubling adds exactly 600 per output token.
    expected = sum(int(c["output_tokens"]) for c in calls) * 600
    assert expected > 0
    assert main(["reprice", runs.run_id, "--db", str(runs.db), "--prices", str(prices), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_model = {m["model"]: m for m in out["models"]}
    openai = by_model["openai/gpt-4o-mini"]
    assert openai["difference_usd"] == usd_str(expected)
    assert Decimal(openai["repriced_usd"]) - Decimal(openai["recorded_usd"]) == Decimal(usd_str(expected))
    assert openai["changed_calls"] == 16
    assert by_model["anthropic/claude-haiku-4-5"]["difference_usd"] == "0"
    assert out["difference_usd"] == usd_str(expected)
    assert str(prices) in out["price_files"]
    assert main(["reprice", runs.run_id, "--db", str(runs.db), "--prices", str(prices)]) == 0
    text = capsys.readouterr().out
    assert f"+${usd_str(expected)}" in text and "recorded" in text


def test_unknown_usage_calls_are_counted_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.db"
    faults = FaultConfig(disconnect_mid_stream=0.2, error_500=0.15, retry_after_s=0.01)
    with SimServer(seed=11, speed=0.0, faults=faults) as sim:
        run_id = _simulated_run(db, sim, [_tiny()])
    # A call a crash left in flight: still reserved, counted at its worst case.
    victim = _rows(db, "select id from calls where status = 'ok' order by started_at limit 1")[0]["id"]
    _execute(
        db,
        "update calls set status = 'reserved', cost_nano = null, usage_known = null, input_uncached = null, "
        "output_tokens = null, reasoning_tokens = null where id = ?",
        victim,
    )
    calls = _rows(db, "select * from calls where run_id = ?", run_id)
    unknown = [c for c in calls if c["status"] == "reserved" or (not c["usage_known"] and c["cost_nano"])]
    unbilled = [c for c in calls if c["status"] != "reserved" and not c["usage_known"] and not c["cost_nano"]]
    known = [c for c in calls if c["status"] != "reserved" and c["usage_known"]]
    assert len(unknown) > 1 and unbilled, "the fault schedule injected nothing"
    store = _store(db)
    try:
        result = reprice_run(store, run_id)
    finally:
        store.close()
    assert result.total("unknown_calls") == len(unknown)
    assert result.total("open_calls") == 1
    assert result.total("unknown_nano") == sum(
        int(c["reserved_nano"]) if c["status"] == "reserved" else int(c["cost_nano"]) for c in unknown
    )
    assert result.total("unbilled_calls") == len(unbilled)
    assert result.total("priced_calls") == len(known)
    assert result.total("recorded_nano") == sum(int(c["cost_nano"]) for c in known)
    assert result.total("repriced_nano") == result.total("recorded_nano")
    assert main(["reprice", run_id, "--db", str(db)]) == 0
    assert f"{len(unknown)} calls have no known usage" in capsys.readouterr().out


def test_a_model_without_a_price_is_reported_not_a_crash(runs: Runs) -> None:
    full = PriceTable.load(user_default=False)
    table = PriceTable([p for p in full.rows(history=True) if p.model != "gpt-4o-mini"])
    store = _store(runs.db)
    try:
        result = reprice_run(store, runs.run_id, table=table)
    finally:
        store.close()
    by_model = {m.model: m for m in result.models}
    openai = by_model["openai/gpt-4o-mini"]
    assert openai.no_price_calls == 16 and openai.priced_calls == 0 and openai.no_price_nano > 0
    assert openai.no_price is not None and "No price for openai/gpt-4o-mini" in openai.no_price
    assert "--prices" in openai.no_price
    anthropic = by_model["anthropic/claude-haiku-4-5"]
    assert anthropic.priced_calls == 16 and anthropic.repriced_nano == anthropic.recorded_nano


# --------------------------------------------------------------------------------------------- the CLI


def test_bad_input_exits_2_with_one_line(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(runs.db)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nprovider = "openai"\nmodel = "gpt-4o-mini"\ninput = 0.15\noutput = "1"\n')
    missing_db = tmp_path / "nowhere.db"
    cases = [
        ["rescore", "no-such-run", "--db", db],
        ["reprice", "no-such-run", "--db", db, "--json"],
        ["reprice", runs.run_id, "--db", db, "--prices", str(tmp_path / "missing.toml")],
        ["reprice", runs.run_id, "--db", db, "--prices", str(bad)],
        ["rescore", runs.run_id, "--db", str(missing_db)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("Error: ") and "\n" not in err, (argv, err)
        assert captured.out == ""
    assert not missing_db.exists()  # a read-only command creates no database
    assert main(["reprice", runs.run_id, "--db", db]) == 0
    assert "repriced with today's price table" in capsys.readouterr().out


def test_a_call_is_repriced_at_the_service_tier_it_was_billed_at(runs: Runs) -> None:
    from datetime import UTC, datetime

    from harness.audit.reprice import reprice_calls
    from harness.pricing.money import usd_to_nano

    query = "select service_tier from calls where provider = 'openai' and status = 'ok'"
    tiers = {r["service_tier"] for r in _rows(runs.db, query)}
    assert tiers == {"default"}  # what the simulator, like the API, reports
    table = PriceTable.load(())
    call = {
        "model": "openai/o4-mini", "provider": "openai", "provider_model": "o4-mini", "status": "ok",
        "usage_known": True, "input_uncached": 1000, "output_tokens": 2000, "reasoning_tokens": 1500,
        "cost_nano": 0, "started_at": datetime(2026, 11, 1, tzinfo=UTC), "service_tier": "flex",
    }  # fmt: skip
    (flex,) = reprice_calls([call], table)
    (base,) = reprice_calls([{**call, "service_tier": None}], table)
    assert flex.repriced_nano == usd_to_nano(Decimal("0.00055") + Decimal("0.0044"))  # $0.55 / $2.20 per M
    assert base.repriced_nano == usd_to_nano(Decimal("0.0011") + Decimal("0.0088"))  # $1.10 / $4.40 per M
