"""Servers that ignore the limit we meant, send no usage on streams, or cut a stream short (issue 11).

Against :class:`helpers.llamacpp_like.LlamaCppLike`, a server of our own that behaves like llama.cpp's
(reads only ``max_tokens``, no usage on streams, ends the running stream with ``[DONE]`` and no finish
reason when the next request arrives), whole ``tollbench run`` commands show that:

- the meter is never below what the server generated, call by call;
- no answer is lost or kept cut short: every unit ends with one answer that has a finish reason;
- the endpoint is remembered as streaming without usage, so its calls go non-streaming (usage known),
  within the run and from the start of the next one;
- a server that honours no limit at all is cut off by the adapter at the limit, and charged at least
  an upper bound of what it sent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from helpers.llamacpp_like import LlamaCppLike

from harness.cli.main import main
from harness.pricing.money import usd_to_nano
from harness.store.engine import Store

INPUT_PER_M = Decimal("0.10")
OUTPUT_PER_M = Decimal("0.40")

PRICES = f"""
provider = "local"

[[models]]
model = "gemma-3-270m"
input = "{INPUT_PER_M}"
output = "{OUTPUT_PER_M}"
notes = "test price for a local server"
"""


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return path


def _run(db: Path, prices: Path, *extra: str) -> int:
    return main(
        [
            "run", "demo", "-m", "llamacpp/gemma-3-270m", "--limit", "12", "-c", "4",
            "--max-output-tokens", "64", "--budget", "1", "--prices", str(prices), "--db", str(db),
            "--run-id", f"local-{len(list(db.parent.glob('*.db')))}", *extra,
        ]
    )  # fmt: skip


def _generated_cost_nano(server: LlamaCppLike, call_id: str, prompt_tokens: int) -> int:
    out = server.generated_for(call_id)
    return usd_to_nano((prompt_tokens * INPUT_PER_M + out * OUTPUT_PER_M) / 1_000_000)


@pytest.mark.timeout(120)
def test_llamacpp_like_server_is_metered_at_least_what_it_generated(
    tmp_path: Path, prices: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    with LlamaCppLike(natural_tokens=2000) as server:
        monkeypatch.setenv("LLAMACPP_BASE_URL", server.url)
        code = _run(db, prices)
        out, err = capsys.readouterr()
        assert code == 0, err

        store = Store.open(str(db))
        try:
            run_id = store.list_runs()[0]["id"]
            calls = store.calls(run_id)
            items = store.item_results(run_id)
            facts = store.endpoint_facts(server.url, "gemma-3-270m")
        finally:
            store.close()

        # The limit reached the server in the field it reads.
        assert all(g.limit == 64 for g in server.requests)
        assert max(g.generated for g in server.requests) <= 64
        # Every request the server saw is a call row, and each is charged at least what it generated.
        by_client = {g.client_id for g in server.requests}
        assert by_client == {c["id"] for c in calls}
        for c in calls:
            prompt = max(g.prompt_tokens for g in server.requests if g.client_id == c["id"])
            assert c["cost_nano"] >= _generated_cost_nano(server, c["id"], prompt), c
        # The cuts happened, were retried, and no cut answer was kept.
        cut = [g for g in server.requests if g.ended == "cut"]
        assert cut, "the test server never cut a stream: the test proves nothing"
        assert {c["error_type"] for c in calls if c["status"] == "error"} <= {"no_finish_reason"}
        ok = [c for c in calls if c["status"] == "ok"]
        assert len(items) == 12 and all(i["status"] in ("scored", "unusable") for i in items)
        assert len(ok) == 12 and all(c["finish_reason"] in ("length", "stop") for c in ok)
        assert {i["final_call_id"] for i in items} == {c["id"] for c in ok}
        # Learned: this endpoint cuts streams (and streams without usage), so later calls were not
        # streamed: whole requests, answered one by one with their usage.
        assert facts.get("cuts_streams") == "true"
        assert set(facts) <= {"cuts_streams", "no_stream_usage"} and set(facts.values()) == {"true"}
        assert any(not g.stream for g in server.requests)
        assert any(c["usage_known"] for c in ok)

        # Reports show the usage-unknown calls as such, never as 0 tokens beside their cost.
        unknown = [c for c in calls if not c["usage_known"] and c["cost_nano"] > 0]
        assert unknown
        for command in (["show", run_id], ["costs", "--by", "model"]):
            assert main([*command, "--db", str(db)]) == 0
            shown, _ = capsys.readouterr()
            assert f"usage unknown for {len(unknown)} call(s)" in shown, shown
            assert "+?" in shown or "+≤" in shown
        assert main(["show", run_id, "--db", str(db), "--json"]) == 0
        data = json.loads(capsys.readouterr()[0])
        assert data["results"][0]["usage_unknown_calls"] == len(unknown)

        # The next run starts non-streaming: every request has usage, nothing is cut.
        before = len(server.requests)
        assert _run(tmp_path / "second.db", prices) == 0
        assert _run(db, prices, "--run-id", "again", "--no-cache") == 0
        capsys.readouterr()
        second = server.requests[before:]
        store = Store.open(str(db))
        try:
            again = store.calls("again")
        finally:
            store.close()
        assert all(c["usage_known"] and c["status"] == "ok" for c in again)
        assert all(not g.stream for g in second[-len(again) :])


@pytest.mark.timeout(120)
def test_a_server_that_honours_no_limit_is_cut_off_and_charged_its_output_bound(
    tmp_path: Path, prices: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    models = tmp_path / "models.toml"
    models.write_text('[models."llamacpp/stream"]\nmodel = "llamacpp/gemma-3-270m"\nstreaming = "always"\n')
    with LlamaCppLike(natural_tokens=2000, honour_limit=False) as server:
        monkeypatch.setenv("LLAMACPP_BASE_URL", server.url)
        code = main(
            [
                "run", "demo", "-m", "llamacpp/stream", "--models-file", str(models), "--limit", "4",
                "-c", "1", "--max-output-tokens", "64", "--budget", "1", "--prices", str(prices),
                "--db", str(db),
            ]
        )  # fmt: skip
        _, err = capsys.readouterr()
        assert code == 0, err
        store = Store.open(str(db))
        try:
            calls = store.calls(store.list_runs()[0]["id"])
        finally:
            store.close()
        assert len(calls) == 4 and all(c["status"] == "ok" for c in calls)
        for c in calls:
            g = [r for r in server.requests if r.client_id == c["id"]]
            assert len(g) == 1 and g[0].stream
            # Cut off near the limit, not after the server's 2,000 tokens.
            assert g[0].generated <= 64 + 8, g[0]
            assert c["finish_reason"] == "client_output_limit" and not c["usage_known"]
            assert c["output_bound"] >= g[0].generated
            assert c["cost_nano"] >= c["reserved_nano"]
            assert c["cost_nano"] >= _generated_cost_nano(server, c["id"], g[0].prompt_tokens)
