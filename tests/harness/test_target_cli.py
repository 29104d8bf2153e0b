"""``--target-ci`` and ``--control`` through the real command line against the simulator (loopback HTTP):
the stop, the stored summary, the control model's run first and its reuse, and what ``show`` says."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.store.engine import Store

pytestmark = pytest.mark.slow


def _suite(tmp_path: Path, n: int = 160) -> Path:
    path = tmp_path / "sums.jsonl"
    with path.open("w") as f:
        for i in range(n):
            a, b = i % 17, (7 * i) % 23
            row = {"id": f"q{i}", "prompt": f"What is {a} + {b}? End with 'Answer: N'.", "answer": a + b}
            row["topic"] = "small" if a + b < 20 else "large"
            f.write(json.dumps(row) + "\n")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _run(db: Path, suite: Path, model: str, *extra: str) -> list[str]:
    return [
        "run",
        str(suite),
        "-m",
        model,
        "--budget",
        "5",
        "--sim",
        "--sim-speed",
        "0",
        "--max-output-tokens",
        "600",
        "--db",
        str(db),
        "-c",
        "4",
        "--target-ci",
        "0.2",
        *extra,
    ]


def _config(db: Path, run_id: str) -> dict:
    store = Store.open(str(db))
    try:
        return store.get_run(run_id)["config"]  # type: ignore[index]
    finally:
        store.close()


def test_target_ci_through_the_cli_stops_on_the_betting_sequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, suite = tmp_path / "runs.db", _suite(tmp_path)
    # One call at a time: where a sequence stops must not depend on which of several calls in flight
    # finished first (with -c 4 the two methods could stop on the same item count by timing alone).
    code, out, err = _cli(capsys, *_run(db, suite, "openai/gpt-4o-mini"), "-c", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    (summary,) = _config(db, report["id"])["target_ci"]
    assert summary["method"] == "betting" and summary["reached"]
    assert summary["interval"]["half_width"] <= 0.2 and summary["n_items"] < 160
    assert report["config"]["options"]["ci_method"] == "betting"
    code, out, _ = _cli(capsys, "show", report["id"], "--db", str(db))
    assert code == 0 and "of 160 items" in out
    # the old sequence stays selectable, and buys more for the same width
    code, out, err = _cli(
        capsys, *_run(db, suite, "openai/gpt-4o-mini"), "-c", "1", "--ci-method", "eb", "--json"
    )
    assert code == 0, err
    (eb,) = _config(db, json.loads(out)["id"])["target_ci"]
    assert eb["method"] == "eb" and eb["n_items"] > summary["n_items"]


def test_control_runs_the_cheap_model_first_then_reuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, suite = tmp_path / "runs.db", _suite(tmp_path)
    code, out, err = _cli(
        capsys, *_run(db, suite, "openai/o4-mini", "--control", "openai/gpt-4o-mini"), "--json"
    )
    assert code == 0, err
    assert "control openai/gpt-4o-mini: 160 calls on every item" in err
    report = json.loads(out)
    (summary,) = _config(db, report["id"])["target_ci"]
    assert summary["method"] == "control" and summary["reached"]
    control = summary["control"]
    assert control["model"] == "openai/gpt-4o-mini" and control["reused"] is False
    assert Decimal(control["control_spent_usd"]) > 0 and Decimal(control["expensive_spent_usd"]) > 0
    assert control["items_without_control"] is not None and control["items_saved"] is not None
    store = Store.open(str(db))
    try:
        runs = store.list_runs()
        control_run = store.get_run(control["run_id"])
        assert control_run is not None and control_run["models"] == ["openai/gpt-4o-mini"]
        results = [r for r in store.item_results(control["run_id"]) if r["status"] in ("scored", "unusable")]
        assert len(results) == 160  # the control answered every item
        # both runs together stayed inside the one --budget
        assert sum(r["spent_nano"] for r in runs) <= 5 * 10**9
    finally:
        store.close()
    code, out, _ = _cli(capsys, "show", report["id"], "--db", str(db))
    assert code == 0 and "control openai/gpt-4o-mini" in out and "correlation" in out

    # a second run reuses the control's answers: nothing of the cheap model is bought again
    code, out, err = _cli(
        capsys, *_run(db, suite, "openai/o4-mini", "--control", "openai/gpt-4o-mini"), "--json"
    )
    assert code == 0, err
    assert f"reusing run {control['run_id']}" in err and "calls on every item" not in err
    (again,) = _config(db, json.loads(out)["id"])["target_ci"]
    assert again["control"]["reused"] is True and again["control"]["run_id"] == control["run_id"]


def test_a_control_run_stopped_before_the_target_claims_no_saving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The budget ends the expensive model after a few items: nothing was saved yet, whatever the
    forecast without the control says (the summary used to read that forecast as a saving)."""
    db, suite = tmp_path / "runs.db", _suite(tmp_path)
    args = _run(db, suite, "openai/o4-mini", "--control", "openai/gpt-4o-mini", "--json")
    args[args.index("--budget") + 1] = "0.06"
    code, out, err = _cli(capsys, *args)
    assert code == 3, err  # stopped at the budget
    (summary,) = _config(db, json.loads(out)["id"])["target_ci"]
    assert summary["method"] == "control" and not summary["reached"]
    assert summary["control"]["items_saved"] is None
    assert "target not met yet" in summary["line"] and "fewer than without the control" not in err


def test_control_needs_target_ci_and_another_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, suite = tmp_path / "runs.db", _suite(tmp_path, 20)
    base = ["run", str(suite), "-m", "openai/o4-mini", "--budget", "1", "--sim", "--db", str(db)]
    code, _, err = _cli(capsys, *base, "--control", "openai/gpt-4o-mini")
    assert code == 2 and "--control needs --target-ci" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, *base, "--target-ci", "0.1", "--control", "openai/o4-mini")
    assert code == 2 and "must not be a model of the run" in err
    assert not db.exists()  # nothing written


def test_estimate_forecasts_items_and_dollars_per_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _suite(tmp_path, 3000)
    args = ["estimate", str(suite), "-m", "openai/o4-mini", "--db", str(tmp_path / "none.db"), "--json"]
    code, out, err = _cli(
        capsys, *args, "--target-ci", "0.03", "--control", "openai/gpt-4o-mini", "--rho", "0.8"
    )
    assert code == 0, err
    report = json.loads(out)
    rows = {r["method"]: r for r in report["target_ci"]["rows"]}
    assert set(rows) == {"fixed", "betting", "eb", "control"}
    assert all(r["population"] == 3000 and r["model"] == "openai/o4-mini" for r in rows.values())
    # the betting sequence is near the fixed-size sample (which ignores the finite population), eb above
    assert rows["betting"]["items"] < min(1.1 * rows["fixed"]["items"], rows["eb"]["items"])
    assert rows["control"]["items"] < rows["betting"]["items"]  # rho 0.8: 1 - rho^2 = 0.36 of the variance
    # dollars follow the items; the control's row includes the cheap model's full run
    full = {r["model"]: Decimal(r["expected_usd"]) for r in report["rows"]}
    assert (
        Decimal(rows["betting"]["expected_usd"])
        < Decimal(rows["eb"]["expected_usd"])
        < full["openai/o4-mini"]
    )
    assert Decimal(rows["control"]["expected_usd"]) > full["openai/gpt-4o-mini"]
    assert "includes openai/gpt-4o-mini" in rows["control"]["note"]
    assert not (tmp_path / "none.db").exists()
    code, _, err = _cli(capsys, *args, "--control", "openai/gpt-4o-mini")
    assert code == 2 and "--control needs --target-ci" in err


def test_control_history_uses_other_models_earlier_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, suite = tmp_path / "runs.db", _suite(tmp_path, 120)
    base = _run(db, suite, "openai/o4-mini", "--control", "history")
    code, _, err = _cli(capsys, *base)
    assert code == 2 and "fewer than 2 other models" in err  # no history yet: nothing bought
    history = [
        "run",
        str(suite),
        "-m",
        "openai/gpt-4o-mini",
        "-m",
        "anthropic/claude-haiku-4-5",
        "--budget",
        "5",
        "--sim",
        "--sim-speed",
        "0",
        "--max-output-tokens",
        "600",
        "--db",
        str(db),
        "-c",
        "4",
        "--json",
    ]
    code, out, err = _cli(capsys, *history)
    assert code == 0, err
    earlier = json.loads(out)["id"]
    # estimate: the history row costs nothing and is forecast at the history's own correlation
    est = ["estimate", str(suite), "-m", "openai/o4-mini", "--db", str(db), "--sim", "--json"]
    code, out, err = _cli(capsys, *est, "--target-ci", "0.2", "--control", "history")
    assert code == 0, err
    rows = {r["method"]: r for r in json.loads(out)["target_ci"]["rows"]}
    assert set(rows) == {"fixed", "betting", "eb", "history"}
    assert "2 models' earlier runs, nothing bought" in rows["history"]["note"]
    assert "leave-one-model-out" in rows["history"]["note"]
    assert Decimal(rows["history"]["expected_usd"]) <= Decimal(rows["eb"]["expected_usd"])
    code, out, err = _cli(capsys, *base, "--json")
    assert code == 0, err
    assert f"item difficulty from history (2 models, runs {earlier})" in err
    (summary,) = _config(db, json.loads(out)["id"])["target_ci"]
    history = summary["control"]["history"]
    assert history["models"] == ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"]
    # the simulator's models barely agree item by item: the history is forecast not to pay, and the
    # run says so and uses the betting interval (decided before the model answered anything)
    assert history["correlation"] is not None and history["correlation"] < 0.5
    assert not history["used"] and history["items_with"] >= history["items_without"]
    assert "not used" in err and "not worth it" in rows["history"]["note"]
    assert summary["method"] == "betting" and summary["reached"]
    assert "history of 2 models not used" in summary["line"]
    code, out, _ = _cli(capsys, "show", json.loads(out)["id"], "--db", str(db))
    assert code == 0 and "history of 2 models not used" in out


def test_history_is_used_where_it_is_forecast_to_pay(tmp_path: Path) -> None:
    from harness.run.control import history_pays
    from harness.run.plan import RunOptions, prepare_run

    opts = RunOptions(
        suites=[str(_suite(tmp_path, 3000))],
        models=["openai/o4-mini"],
        budget_usd=Decimal(1),
        target_ci=0.03,
        control="history",
        simulated=True,
    )
    plan = prepare_run(opts)
    (suite,) = plan.suites
    good, poor = history_pays(plan, suite, 0.8), history_pays(plan, suite, 0.3)
    assert good["used"] and good["items_with"] < good["items_without"] and good["without"] == "betting"
    assert not poor["used"] and poor["items_without"] == good["items_without"]
    assert not history_pays(plan, suite, None)["used"]


def test_resume_continues_the_target_and_prints_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, suite = tmp_path / "runs.db", _suite(tmp_path)
    args = _run(db, suite, "openai/gpt-4o-mini", "-c", "1", "--json")
    args[args.index("--budget") + 1] = "0.0015"  # a few items, then the budget
    code, out, err = _cli(capsys, *args)
    assert code == 3, err
    run_id = json.loads(out)["id"]
    (first,) = _config(db, run_id)["target_ci"]
    assert not first["reached"]
    code, out, err = _cli(capsys, "resume", run_id, "--add-budget", "5", "--db", str(db))
    assert code == 0, err
    (summary,) = _config(db, run_id)["target_ci"]
    assert summary["reached"] and first["n_items"] < summary["n_items"] < 160
    # resume prints the target's line as run does (n of N, the interval, reached)
    assert summary["line"] in out and "of 160 items" in out
