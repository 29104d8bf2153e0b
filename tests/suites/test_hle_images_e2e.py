"""HLE with ``images=true`` end to end: the image items go through the real SDKs (OpenAI Chat
Completions, Anthropic Messages, OpenAI Responses, Gemini) to the simulator, which bills each image
as input tokens; scores are exact for scripted answers, every call (the judge's included) is one
invoice line at the metered cost and was reserved at least its cost, and the image is in the cache key.
A text-only model is refused before anything is written (one line, exit 2)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

import suites.hle as hle
from harness.cli.main import main
from harness.errors import ConfigError
from harness.models import image_rule_for
from harness.pricing.money import usd_to_nano
from harness.report import run_report_dict
from harness.run.runner import RunOptions, prepare_run
from harness.run.session import run
from harness.sim import SimServer
from harness.sim.generate import prompt_tokens
from harness.store.engine import Store
from harness.suite import Item
from harness.types import image_tokens_upper_bound
from tests.helpers.hle_fixture import write

#: Items fx0..fx3 (text) and fx100, fx101 (with images); the scripted model gets fx1 and fx101 wrong.
WRONG = {"fx1": "3", "fx101": "7"}

MODELS = {
    "chat": ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
    "messages": ("anthropic/claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
    "responses": ("openai-responses/gpt-4o", "openai", "gpt-4o"),
    "gemini": ("google/gemini-2.5-flash", "google", "gemini-2.5-flash"),
}


class Scripted(hle.HleSuite):
    def target(self, item: Item) -> str:
        return WRONG.get(item.id, item.answer)


def _suite(tmp_path: Path) -> Scripted:
    loaded = hle.load(data=write(tmp_path / "hle.jsonl", n=4, images=2), options={"images": "true"})
    return Scripted(loaded.name, 1, loaded.items, loaded.source)


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.parametrize("api", list(MODELS))
async def test_image_items_are_sent_billed_and_scored(tmp_path: Path, api: str) -> None:
    name, provider, model = MODELS[api]
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f'[models."{model}"]\naccuracy = 1.0\n')
    suite = _suite(tmp_path)
    db = tmp_path / "runs.db"
    opts = RunOptions(suites=[suite], models=[name], budget_usd=Decimal("5"), simulated=True)
    with SimServer(seed=3, speed=0.0, profiles=profiles) as sim:
        store = Store.open(str(db))
        try:
            outcome = await run(prepare_run(opts), store, simulator=sim)
            report = run_report_dict(store, outcome.run_id)
        finally:
            store.close()
        invoice = sim.invoice()
    assert outcome.status == "done"
    items = {r["item_id"]: r for r in _rows(db, "select * from item_results")}
    assert {k for k, r in items.items() if r["correct"]} == {"fx0", "fx2", "fx3", "fx100"}
    (result,) = report["results"]
    assert (result["correct"], result["scored"], result["unscored"]) == (4, 6, 0)

    calls = _rows(db, "select * from calls")
    assert len(calls) == len(invoice["requests"]) == 12  # 6 answers, 6 judgments
    for c in calls:
        billed = invoice["requests"][c["request_id"]]
        assert c["status"] == "ok" and c["cost_nano"] == usd_to_nano(Decimal(billed["usd"]))
        assert c["reserved_nano"] >= c["cost_nano"]
    spent = sum(c["cost_nano"] for c in calls)
    assert spent == usd_to_nano(Decimal(invoice["total"]["usd"])) == usd_to_nano(Decimal(report["spent_usd"]))

    # The image items' prompts were billed their image tokens on top of the text.
    rule = image_rule_for(provider, model)
    for item in suite.items:
        (c,) = [c for c in calls if c["item_id"] == item.id and c["role"] == "target"]
        billed = invoice["requests"][c["request_id"]]["tokens"]
        prompt = sum(billed[k] for k in ("input_uncached", "cache_read", "cache_write_5m", "cache_write_1h"))
        image = item.data["image"]
        extra = image_tokens_upper_bound(rule, image) if image is not None else 0
        assert prompt == prompt_tokens([hle.SYSTEM_PROMPT, item.question]) + extra, item.id
        assert (extra > 0) == item.id.startswith("fx10")

    # The cache key holds the image's hash, and the same run again buys nothing.
    requests = {c["item_id"]: json.loads(c["request"]) for c in calls if c["role"] == "target"}
    (_, user) = requests["fx100"]["messages"]
    assert user["images"] == [f"image/png;sha256={suite.item('fx100').data['image'].sha256}"]
    assert "images" not in requests["fx0"]["messages"][1]
    with SimServer(seed=3, speed=0.0, profiles=profiles) as sim:
        store = Store.open(str(db))
        try:
            await run(prepare_run(opts), store, simulator=sim)
        finally:
            store.close()
        assert sim.invoice()["requests"] == {}


def test_a_text_only_model_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _suite(tmp_path)
    opts = RunOptions(suites=[suite], models=["openai/o3-mini"], budget_usd=Decimal("5"), simulated=True)
    needle = r"openai/o3-mini takes no images .* 2 of hle's calls in this run carry an image: drop"
    with pytest.raises(ConfigError, match=needle):
        prepare_run(opts)
    # Without the image items (the default) the same model runs.
    text_only = hle.load(data=tmp_path / "hle.jsonl")
    prepare_run(replace(opts, suites=[text_only]))
    # An alias that declares the model's image bound lets it take them.
    models = tmp_path / "models.toml"
    models.write_text('[models."my/vision"]\nmodel = "openai/o3-mini"\nimage_tokens = 2000\n')
    vision = RunOptions(
        suites=[suite], models=["my/vision"], budget_usd=Decimal("5"), simulated=True, models_file=models
    )
    plan = prepare_run(vision)
    assert plan.models["my/vision"].spec.image_rule is not None

    db = str(tmp_path / "runs.db")
    data = str(tmp_path / "hle.jsonl")
    code = main(["run", "hle", "--data", data, "--suite-option", "images=true", "--sim",
                 "-m", "openai/o3-mini", "--db", db])  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "takes no images" in lines[0], err
    assert not Path(db).exists() or not _rows(Path(db), "select * from calls")


def test_estimate_counts_the_image_items_with_suite_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write(tmp_path / "hle.jsonl", images=2))
    db = str(tmp_path / "none.db")
    base = ["estimate", "hle", "--data", data, "--db", db, "--json"]
    assert main([*base, "-m", "openai/gpt-4o"]) == 0
    text = json.loads(capsys.readouterr().out)["rows"][0]
    assert main([*base, "-m", "openai/gpt-4o", "--suite-option", "images=true"]) == 0
    images = json.loads(capsys.readouterr().out)["rows"][0]
    assert (text["calls"], images["calls"]) == (6, 8)
    # Each image adds at least its model's bound to the reserved (worst-case) input tokens.
    rule = image_rule_for("openai", "gpt-4o")
    assert rule is not None
    assert images["input_tokens_bound"] > text["input_tokens_bound"] + 2 * 85
    # A text-only model is refused as run refuses it: one line, exit 2.
    assert main([*base, "-m", "openai/o3-mini", "--suite-option", "images=true"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "takes no images" in err[0]
    assert main([*base, "-m", "openai/gpt-4o", "--suite-option", "images"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
