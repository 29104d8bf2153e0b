"""The response cache: a rerun re-scores from stored answers at no cost, --no-cache pays again, and any
change to the request (temperature, seed, effort, output limit, simulated vs live) misses."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.report import cost_rows, run_report_dict
from harness.run.cache import canonical_request, request_key
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import RunOutcome, run
from harness.sim import SimServer
from harness.store.engine import Store
from harness.types import Message, ModelSpec, Request
from tests.helpers.db import FAST_RETRY
from tests.helpers.db import rows as _rows
from tests.helpers.tiny_suite import TinySuite

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim() -> Any:
    with SimServer(seed=9, speed=0.0) as server:
        yield server


async def _run(db: Path, sim: Any, **kw: Any) -> RunOutcome:
    opts = RunOptions(
        suites=[TinySuite(12)],
        models=kw.pop("models", ["openai/o4-mini"]),
        budget_usd=Decimal("5"),
        simulated=True,
        concurrency=4,
        retry=FAST_RETRY,
        max_output_tokens=kw.pop("max_output_tokens", 3000),
        **kw,
    )
    store = Store.open(str(db))
    try:
        return await run(prepare_run(opts), store, simulator=sim)
    finally:
        store.close()


def _requests(sim: Any) -> int:
    return len(sim.invoice()["requests"])


def _report(db: Path, run_id: str) -> dict[str, Any]:
    store = Store.open(str(db))
    try:
        return run_report_dict(store, run_id)
    finally:
        store.close()


async def test_a_rerun_costs_nothing_and_rescores_from_the_cache(db_path: Path, sim: Any) -> None:
    first = await _run(db_path, sim)
    invoice_before = sim.invoice()
    second = await _run(db_path, sim)
    assert (first.status, second.status) == ("done", "done")
    assert sim.invoice()["total"] == invoice_before["total"]  # the provider was not asked again
    a, b = _report(db_path, first.run_id), _report(db_path, second.run_id)
    assert Decimal(b["spent_usd"]) == 0 and Decimal(a["spent_usd"]) > 0
    ra, rb = a["results"][0], b["results"][0]
    assert (rb["scored"], rb["correct"], rb["unusable"]) == (ra["scored"], ra["correct"], ra["unusable"])
    assert rb["cached"] == 12 and Decimal(rb["saved_usd"]) == Decimal(ra["spent_usd"])
    assert rb["cost_per_correct_usd"] == ra["cost_per_correct_usd"] is not None  # priced as bought
    # Cached answers are marked: their own call rows, cost 0, pointing at the call that paid.
    cached = _rows(db_path, "select * from calls where run_id = ?", second.run_id)
    paid = {c["id"]: c for c in _rows(db_path, "select * from calls where run_id = ?", first.run_id)}
    assert len(cached) == 12
    for c in cached:
        assert c["cached"] and c["status"] == "cached" and c["cost_nano"] == 0 and c["reserved_nano"] == 0
        assert c["reproduce_nano"] == paid[c["source_call_id"]]["cost_nano"]
        assert c["request_hash"] == paid[c["source_call_id"]]["request_hash"]
    items_a = {
        r["item_id"]: r for r in _rows(db_path, "select * from item_results where run_id = ?", first.run_id)
    }
    for r in _rows(db_path, "select * from item_results where run_id = ?", second.run_id):
        assert (r["answer_text"], r["correct"], r["status"]) == (
            items_a[r["item_id"]]["answer_text"],
            items_a[r["item_id"]]["correct"],
            items_a[r["item_id"]]["status"],
        )
        assert r["cost_nano"] == 0
    # `costs` reports what the cache saved.
    store = Store.open(str(db_path))
    try:
        by_run = {r["run"]: r for r in cost_rows(store, by=["run"])}
    finally:
        store.close()
    assert by_run[second.run_id]["cached"] == 12
    assert by_run[second.run_id]["saved_usd"] == a["spent_usd"]
    assert by_run[first.run_id]["saved_usd"] in ("0", "0.000000000")


async def test_no_cache_pays_again(db_path: Path, sim: Any) -> None:
    await _run(db_path, sim)
    n = _requests(sim)
    again = await _run(db_path, sim, use_cache=False)
    assert _requests(sim) == n + 12
    report = _report(db_path, again.run_id)
    assert Decimal(report["spent_usd"]) > 0 and report["results"][0]["cached"] == 0
    # Answers are still stored, so a later run is served from the cache.
    third = await _run(db_path, sim)
    assert _requests(sim) == n + 12 and _report(db_path, third.run_id)["results"][0]["cached"] == 12


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"max_output_tokens": 2500},
        {"models": ["openai/o4-mini-high"]},  # reasoning effort high
        {"models": ["warm/o4-mini"]},  # temperature 0.7 (alias below)
    ],
    ids=["seed", "max_output_tokens", "effort", "temperature"],
)
async def test_any_change_to_the_request_misses(
    db_path: Path, sim: Any, tmp_path: Path, change: dict[str, Any]
) -> None:
    aliases = tmp_path / "models.toml"
    aliases.write_text('[models."warm/o4-mini"]\nmodel = "openai/o4-mini"\ntemperature = 0.7\n')
    await _run(db_path, sim, models_file=aliases)
    n = _requests(sim)
    changed = await _run(db_path, sim, models_file=aliases, **change)
    assert _requests(sim) == n + 12, "a changed request must be bought, not served from the cache"
    assert _report(db_path, changed.run_id)["results"][0]["cached"] == 0


def test_the_key_covers_every_parameter_and_the_endpoint() -> None:
    spec = ModelSpec("openai/o4-mini", "openai", "chat", "o4-mini")
    base = Request("o4-mini", (Message("user", "2+2?"),), 1000)
    key = request_key(canonical_request(spec, base, repeat=0, run_seed=0, endpoint="simulator"))
    variants = [
        (base, 1, 0, "simulator"),  # another repeat
        (base, 0, 7, "simulator"),  # another --seed
        (base, 0, 0, "default"),  # a live API: a simulated answer never stands in for a real one
        (Request("o4-mini", (Message("user", "2+3?"),), 1000), 0, 0, "simulator"),
        (Request("o4-mini", base.messages, 1000, seed=5), 0, 0, "simulator"),
        (Request("o4-mini", base.messages, 1000, thinking_budget=512), 0, 0, "simulator"),
        (Request("o4-mini", base.messages, 1000, extra_body={"top_p": 0.5}), 0, 0, "simulator"),
    ]
    keys = {
        request_key(canonical_request(spec, r, repeat=rep, run_seed=s, endpoint=e))
        for r, rep, s, e in variants
    }
    assert key not in keys and len(keys) == len(variants)
    # Transport headers (the client request id) are not part of the request's identity.
    same = Request("o4-mini", base.messages, 1000, extra_headers={"x-client-request-id": "abc"})
    assert request_key(canonical_request(spec, same, repeat=0, run_seed=0, endpoint="simulator")) == key


def test_cli_run_no_cache_and_show_marks_cached_answers(
    db_path: Path, sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run", "demo", "-m", "openai/gpt-4o-mini", "--limit", "6", "--max-output-tokens", "2000",
        "--sim-url", sim.base_url, "--db", str(db_path), "--json",
    ]  # fmt: skip
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert Decimal(second["spent_usd"]) == 0 and second["results"][0]["cached"] == 6
    assert main([*args, "--no-cache"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert Decimal(third["spent_usd"]) > 0 and third["results"][0]["cached"] == 0
    assert main(["show", second["id"], "--db", str(db_path), "--calls"]) == 0
    out = capsys.readouterr().out
    assert "6 answers came from the response cache" in out and "cached" in out
    assert main(["costs", "--by", "run", "--db", str(db_path)]) == 0
    assert "saved by cache" in capsys.readouterr().out
    total = sum(usd_to_nano(Decimal(r["spent_usd"])) for r in (first, second, third))
    assert total == usd_to_nano(Decimal(sim.invoice()["total"]["usd"]))


async def test_a_fully_cached_simulated_run_starts_no_simulator(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _run(db_path, sim)

    async def no_simulator(plan: Any) -> Any:
        raise AssertionError("every answer is in the cache: no simulator is needed")

    monkeypatch.setattr("harness.run.session._start_simulator", no_simulator)
    opts = RunOptions(
        suites=[TinySuite(12)],
        models=["openai/o4-mini"],
        budget_usd=Decimal("5"),
        simulated=True,
        concurrency=4,
        retry=FAST_RETRY,
        max_output_tokens=3000,
    )
    store = Store.open(str(db_path))
    try:
        second = await run(prepare_run(opts), store)  # no simulator passed, none started
    finally:
        store.close()
    assert second.status == "done"
    report = _report(db_path, second.run_id)["results"][0]
    assert (
        report["cached"] == 12 and report["scored"] == _report(db_path, first.run_id)["results"][0]["scored"]
    )


async def test_units_past_the_first_batches_are_looked_up_too(db_path: Path, sim: Any) -> None:
    # The streaming path looks units up a batch at a time (64, then 256, ...) as it hands them out:
    # 408 units span three batches; the rerun buys none of them.
    big = await _run(db_path, sim, models=["openai/gpt-4o-mini"], repeats=34, seed=5)
    paid = _requests(sim)
    assert big.status == "done" and paid == 12 * 34
    again = await _run(db_path, sim, models=["openai/gpt-4o-mini"], repeats=34, seed=5)
    assert again.status == "done" and _requests(sim) == paid  # nothing bought twice
    report = _report(db_path, again.run_id)["results"][0]
    assert report["cached"] == 12 * 34 and Decimal(report["spent_usd"]) == 0


async def test_a_unit_waits_for_its_batch_lookup_rather_than_buying(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The look-ahead's lookups are slow here (a busy database): the workers reach their units while
    # their batch is still being looked up, and wait for it instead of buying what is cached.
    import time

    import harness.run.runner as runner_module

    first = await _run(db_path, sim, repeats=8)
    paid = _requests(sim)
    real = runner_module.find_cached

    def slow(store: Any, keys: Any) -> Any:
        time.sleep(0.3)
        return real(store, keys)

    monkeypatch.setattr(runner_module, "find_cached", slow)
    again = await _run(db_path, sim, repeats=8)
    assert (first.status, again.status) == ("done", "done")
    assert _requests(sim) == paid  # nothing bought twice
    assert _report(db_path, again.run_id)["results"][0]["cached"] == 12 * 8
