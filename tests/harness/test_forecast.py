"""The cost forecast: sources, worst case, the budget pre-check, and calibration against the simulator.

Calibration: past runs are drawn with the simulator's own generator (:mod:`harness.sim.generate`, the
code the simulator bills with) into a real SQLite database; a new run is forecast from them and its
actual cost drawn the same way with fresh seeds. The forecast must contain the actual cost in at least
90% of the seeded cases. One end-to-end case goes through the real simulator over loopback HTTP.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from harness.answerkey import AnswerKey
from harness.forecast.estimate import (
    CallObs,
    Forecast,
    ForecastRow,
    check_budget,
    estimate_input_tokens,
    forecast_plan,
    load_history,
    load_model_profiles,
    load_published_usage,
    mark_pilot,
)
from harness.pricing.money import usd_to_nano
from harness.run.plan import ModelPlan, Plan, RunOptions, prepare_run
from harness.sim.generate import draw_cache, plan_output, prompt_tokens
from harness.sim.profiles import load_profiles
from harness.sim.profiles import resolve_model as resolve_profile
from harness.store.engine import Store, calls_table
from harness.suite import Item, Score
from harness.types import Message, Prompt, Usage, input_tokens_upper_bound
from tests.helpers.tiny_suite import TinySuite

SIM_PROFILES = load_profiles()


class McSuite:
    """Multiple-choice questions answered with a letter (suite type ``letter``)."""

    def __init__(self, n: int = 30, name: str = "mc") -> None:
        self._name = name
        self._items = [Item(f"m{i}", f"Which option equals {i}?", "B", stratum="x") for i in range(n)]

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_repeats(self) -> int:
        return 1

    @property
    def items(self) -> Sequence[Item]:
        return self._items

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        text = f"{item.question}\nA) {item.id}0\nB) {item.id}\nC) {item.id}1\nD) x\nAnswer: $LETTER"
        return Prompt((Message("user", text),), "B", "letter", ("A", "B", "C", "D"))

    async def score(self, prompt: Prompt, text: str) -> Score:
        return Score("scored", text.strip().endswith(prompt.target), None)


def _plan(suites: list[Any], models: list[str], max_out: int = 10000, **kw: Any) -> Plan:
    return prepare_run(
        RunOptions(
            suites=suites,
            models=models,
            budget_usd=Decimal(100),
            simulated=True,
            max_output_tokens=max_out,
            **kw,
        )
    )


def _draw_calls(plan: Plan, mp: ModelPlan, rng_seed: int) -> list[tuple[str, str, int, Usage]]:
    """What the simulator would bill for every unit of ``mp``: (suite, item, repeat, usage)."""
    spec = mp.spec
    profile = resolve_profile(SIM_PROFILES, spec.model, spec.provider)  # type: ignore[arg-type]
    assert profile is not None
    key = AnswerKey()
    out = []
    rng = random.Random(rng_seed)
    for unit in mp.units:
        prompt = plan.suites[unit.suite].render(unit.item, unit.repeat, plan.options.seed)
        key.add_prompt(prompt)
        user = prompt.messages[-1].content
        r = random.Random(rng.getrandbits(64))
        cache = draw_cache(profile, r, prompt_tokens([m.content for m in prompt.messages]))
        reasoning = profile.reasoning or (profile.thinking and spec.thinking_budget is not None)
        o = plan_output(
            profile,
            r,
            limit=mp.max_output_tokens,
            user_text=user,
            answer_key=key,
            reasoning_enabled=bool(reasoning),
            reasoning_cap=spec.thinking_budget,
            effort=spec.reasoning_effort,
        )
        usage = Usage(
            input_uncached=cache.uncached, cache_read=cache.cache_read, output=o.output, reasoning=o.reasoning
        )
        out.append((unit.suite, unit.item.id, unit.repeat, usage))
    return out


def _actual_nano(plan: Plan, model: str, seed: int) -> dict[str, int]:
    mp = plan.models[model]
    totals: dict[str, int] = {}
    for suite, _, _, usage in _draw_calls(plan, mp, seed):
        totals[suite] = totals.get(suite, 0) + usd_to_nano(mp.price.cost(usage))
    return totals


def _write_history(store: Store, plan: Plan, seed: int, *, simulated: bool = True) -> str:
    run_id = store.create_run(
        suites=list(plan.suites),
        models=list(plan.models),
        budget_nano=10**12,
        simulated=simulated,
        config={},
        price_table_sha256="x",
    )
    rows = []
    now = datetime.now(UTC)
    for name, mp in plan.models.items():
        for suite, item, rep, u in _draw_calls(plan, mp, seed):
            cost = usd_to_nano(mp.price.cost(u))
            rows.append(
                dict(  # noqa: C408
                    id=uuid.uuid4().hex,
                    run_id=run_id,
                    model=name,
                    provider=mp.spec.provider,
                    api=mp.spec.api,
                    provider_model=mp.spec.model,
                    suite=suite,
                    item_id=item,
                    repeat=rep,
                    attempt=1,
                    role="target",
                    status="ok",
                    reserved_nano=cost,
                    cost_nano=cost,
                    usage_known=True,
                    input_uncached=u.input_uncached,
                    cache_read=u.cache_read,
                    cache_write_5m=0,
                    cache_write_1h=0,
                    output_tokens=u.output,
                    reasoning_tokens=u.reasoning,
                    finish_reason="stop",
                    started_at=now,
                    cached=False,
                )
            )
    with store.begin_write() as conn:
        conn.execute(sa.insert(calls_table), rows)
    return run_id


# ------------------------------------------------------------------------------------------ basics


def test_input_tokens_and_worst_case_match_the_reservations() -> None:
    plan = _plan([TinySuite(20)], ["openai/o3"], max_out=5000)
    f = forecast_plan(plan)
    row = f.row("openai/o3", "tiny")
    assert row.source == "worst-case" and row.calls == 20
    prompts = [plan.suites["tiny"].render(u.item, u.repeat, 0) for u in plan.models["openai/o3"].units]
    assert row.input_tokens == sum(estimate_input_tokens(p.messages) for p in prompts)
    assert row.input_tokens_bound == sum(input_tokens_upper_bound(p.messages) for p in prompts)
    price = plan.models["openai/o3"].price
    # Exactly what the runner reserves, call by call.
    assert row.worst_case_nano == sum(
        usd_to_nano(price.worst_case(input_tokens_upper_bound(p.messages), 5000)) for p in prompts
    )
    assert row.expected_nano == row.upper_nano == row.worst_case_nano


def test_estimate_counts_four_bytes_per_token() -> None:
    assert estimate_input_tokens([Message("user", "x" * 400)]) == 3 + 100 + 4
    assert estimate_input_tokens([Message("system", "é" * 2), Message("user", "abc")]) == 3 + 1 + 4 + 1 + 4


def test_profile_source_without_history() -> None:
    plan = _plan([TinySuite(50)], ["openai/o4-mini", "openai/gpt-4o-mini"])
    f = forecast_plan(plan)
    for model in plan.models:
        row = f.row(model, "tiny")
        assert row.source == "profile"
        assert 0 < row.lower_nano < row.expected_nano < row.upper_nano <= row.worst_case_nano
    # A reasoning model costs more than a small chat model on the same prompts.
    assert (
        f.row("openai/o4-mini", "tiny").expected_nano > 5 * f.row("openai/gpt-4o-mini", "tiny").expected_nano
    )


def test_published_token_totals_calibrate_models_without_history() -> None:
    """Issue 11 (5): o1's published 44M output tokens over the cost study's 19,465 calls is the source
    for o1 with no history, and `estimate` says so; a total measured with thinking applies only to a
    spec with a thinking budget."""
    plan = _plan(
        [TinySuite(40), McSuite(40)],
        ["openai/o1", "anthropic/claude-3-7-sonnet-thinking", "anthropic/claude-3-7-sonnet-latest"],
        max_out=16000,
    )
    f = forecast_plan(plan)
    o1 = f.row("openai/o1", "mc")
    assert o1.source == "published" and "44M output tokens" in o1.note
    published = load_published_usage()["openai/o1"]
    assert published.mean_output == pytest.approx(44_000_000 / 19_465)
    # Multiple choice costs less than maths for the same model (its type factor is lower).
    assert f.row("openai/o1", "tiny").expected_nano > o1.expected_nano
    # The expected output per multiple-choice call is the published mean moved by the type factor:
    # o1 at $60 per 1M output tokens, within the source's widened interval.
    per_call_out = published.mean_output / published.mix_factor
    out_usd = Decimal(str(per_call_out)) * 40 * Decimal(60) / 1_000_000
    assert o1.lower_nano < usd_to_nano(out_usd) < o1.upper_nano
    assert f.row("anthropic/claude-3-7-sonnet-thinking", "mc").source == "published"
    assert f.row("anthropic/claude-3-7-sonnet-latest", "mc").source != "published"


def test_profiles_file_is_valid_and_names_priced_models() -> None:
    profs = load_model_profiles()
    assert "openai/o4-mini" in profs and "anthropic/claude-3-5-haiku-20241022" in profs
    with pytest.raises(ValueError, match="cannot read"):
        load_model_profiles(Path("/nonexistent.toml"))


def test_sources_in_order_of_preference(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "runs.db"))
    try:
        models = ["openai/o4-mini"]
        _write_history(store, _plan([McSuite(30)], models), seed=1)
        plan = _plan([TinySuite(30), McSuite(30)], models)
        f = forecast_plan(plan, store)
        assert f.row("openai/o4-mini", "mc").source == "history:this-suite"
        assert f.row("openai/o4-mini", "mc").history_calls == 30
        other = f.row("openai/o4-mini", "tiny")
        assert other.source == "history:other-suites" and "mc" in other.note
        # Live runs never use simulated history.
        live = forecast_plan(plan, store, simulated=False)
        assert {r.source for r in live.rows} == {"profile"}
        # Too little history falls through to the profile.
        assert forecast_plan(plan, store, min_history=31).row("openai/o4-mini", "mc").source == "profile"
    finally:
        store.close()


def test_history_reads_failed_attempts_as_overhead(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "runs.db"))
    try:
        plan = _plan([McSuite(20)], ["openai/o4-mini"])
        run_id = _write_history(store, plan, seed=2)
        with store.begin_write() as conn:
            conn.execute(
                sa.update(calls_table)
                .where(calls_table.c.item_id.in_(["m0", "m1"]))
                .values(status="error", usage_known=False)
            )
        hist = load_history(store, "openai/o4-mini", simulated=True)["mc"]
        assert len(hist.calls) == 18 and hist.overhead > 1
        assert load_history(store, "openai/o4-mini", simulated=True, runs=["nope"]) == {}
        assert len(load_history(store, "openai/o4-mini", simulated=True, runs=[run_id])["mc"].calls) == 18
    finally:
        store.close()


def test_check_budget_verdicts() -> None:
    row = ForecastRow("m", "s", 10, 100, 200, 1000, 800, 1500, 5000, "profile")
    f = Forecast((row,), False)
    assert check_budget(f, 1500).ok
    v = check_budget(f, 1200)
    assert not v.ok and "--allow-partial" in v.message and "upper bound" in v.message
    assert "\n" not in v.message
    assert check_budget(f, 1200, allow_partial=True).ok
    assert "is expected to" in check_budget(f, 900).message


def test_mark_pilot(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "runs.db"))
    try:
        rid = store.create_run(
            suites=["s"],
            models=["m"],
            budget_nano=1,
            simulated=True,
            config={"seed": 0},
            price_table_sha256="x",
        )
        mark_pilot(store, rid, {"items": 5})
        run = store.get_run(rid)
        assert run is not None and run["config"] == {"seed": 0, "pilot": {"items": 5}}
    finally:
        store.close()


def test_call_obs_shares() -> None:
    assert CallObs(100, 50, 10, 0, 5, 0).shares() == (Decimal("0.5"), Decimal("0.1"), Decimal(0))
    assert CallObs(0, 0, 0, 0, 5, 0).shares() == (0, 0, 0)


# ------------------------------------------------------------------------------------------ calibration

MODELS = ["openai/o4-mini", "anthropic/claude-haiku-4-5-thinking", "openai/gpt-4o-mini"]


def test_forecast_interval_contains_the_actual_cost_in_90_percent_of_cases(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "runs.db"))
    hits: dict[str, list[bool]] = {"history:this-suite": [], "history:other-suites": [], "profile": []}
    try:
        history_plan = _plan([TinySuite(40)], MODELS)
        target_plan = _plan([TinySuite(40), McSuite(40)], MODELS)
        for case in range(40):
            with store.begin_write() as conn:
                conn.execute(sa.delete(calls_table))
            _write_history(store, history_plan, seed=10_000 + case)
            f = forecast_plan(target_plan, store, seed=case)
            pf = forecast_plan(target_plan, None, seed=case)
            for model in MODELS:
                actual = _actual_nano(target_plan, model, seed=20_000 + case)
                for fc, suite in ((f, "tiny"), (f, "mc"), (pf, "tiny")):
                    row = fc.row(model, suite)
                    hits[row.source].append(row.lower_nano <= actual[suite] <= row.upper_nano)
    finally:
        store.close()
    rates = {k: sum(v) / len(v) for k, v in hits.items()}
    assert all(len(v) == 120 for v in hits.values())
    assert rates["history:this-suite"] >= 0.90, rates
    assert rates["history:other-suites"] >= 0.90, rates
    assert rates["profile"] >= 0.90, rates


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_end_to_end_history_from_the_simulator_forecasts_the_next_run(tmp_path: Path) -> None:
    """History written by real runs against the simulator (loopback HTTP, real SQLite); the forecast
    of the next run contains what the simulator then bills for it."""
    from harness.run.session import run
    from harness.sim import SimServer

    db = tmp_path / "runs.db"
    models = ["openai/o4-mini", "openai/gpt-4o-mini"]
    with SimServer(seed=3, speed=0.0) as sim:
        store = Store.open(str(db))
        try:
            history = _plan([TinySuite(30, name="arith")], models)
            first = await run(history, store, simulator=sim)
            assert first.status == "done"
            nxt = _plan([TinySuite(30, name="arith")], models, seed=1)
            f = forecast_plan(nxt, store)
            second = await run(nxt, store, simulator=sim)
            assert second.status == "done"
            report = {(r["model"], r["suite"]): r for r in store.run_report(second.run_id)}
        finally:
            store.close()
    for model in models:
        row = f.row(model, "arith")
        assert row.source == "history:this-suite" and row.history_calls == 30
        actual = report[(model, "arith")]["spent_nano"]
        assert row.lower_nano <= actual <= row.upper_nano, (model, row, actual)


def test_cli_estimate_json_spends_nothing_and_creates_no_database(tmp_path: Path, monkeypatch: Any) -> None:
    import json

    from click.testing import CliRunner

    from harness.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["estimate", "demo", "-m", "openai/o4-mini", "-m", "openai/o3", "--json", "--budget", "1"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["openai/o4-mini"]["source"] == "profile" and rows["openai/o3"]["source"] == "worst-case"
    for r in rows.values():
        for key in ("expected_usd", "upper_usd", "worst_case_usd"):
            assert isinstance(r[key], str) and Decimal(r[key]) >= 0
        assert r["calls"] == 40 and r["input_tokens"] > 0
    assert out["fits_budget"] is False and out["pilot"] is None
    assert not (tmp_path / "runs.db").exists()


def test_cli_estimate_pilot_on_the_simulator(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from harness.cli.main import cli

    db = str(tmp_path / "runs.db")
    args = ["estimate", "demo", "-m", "openai/gpt-4o-mini", "--sim", "--db", db, "--json"]
    result = CliRunner().invoke(cli, [*args, "--pilot", "6", "--budget", "0.5"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["pilot"]["status"] == "done" and Decimal(out["pilot"]["spent_usd"]) > 0
    row = out["rows"][0]
    assert row["source"] == "history:this-suite" and row["history_calls"] == 6 and row["calls"] == 40
    store = Store.open(db)
    try:
        run = store.get_run(out["pilot"]["run_id"])
        assert run is not None and run["simulated"] and run["config"]["pilot"]["items_per_suite"] == 6
        assert run["spent_nano"] <= usd_to_nano(Decimal("0.5"))
    finally:
        store.close()
    # Without --budget a pilot is refused before anything is spent.
    from harness.cli.main import main

    assert main([*args, "--pilot", "6"]) == 2
    assert main([*args, "--pilot", "0", "--budget", "1"]) == 2
