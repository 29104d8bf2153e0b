"""The ``aa`` preset: `run aa` on a data directory of fixtures in the simulator (each suite's score with
its interval, the index, the total), `estimate aa` offline from the shipped statistics, `suites`
listing it, and its bad input (one line, exit 2)."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from harness.cli.main import main
from suites.presets import AA, StatsSuite, load_stats
from tests.helpers import scicode_fixture as sci
from tests.helpers.hle_fixture import write as write_hle
from tests.helpers.lcb_fixture import window_rows, write_rows

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "suites"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "aa-data"
    d.mkdir()
    shutil.copy(FIXTURES / "mmlu_pro.jsonl", d / "mmlu-pro.jsonl")
    shutil.copy(FIXTURES / "gpqa_diamond.csv", d / "gpqa-diamond.csv")
    shutil.copy(FIXTURES / "aime_2024.parquet", d / "aime2024.parquet")
    shutil.copy(FIXTURES / "math500.jsonl", d / "math500.jsonl")
    write_hle(d / "hle.jsonl")
    write_rows(d / "livecodebench.jsonl", window_rows())
    (d / "scicode").mkdir()
    sci.write_problems(d / "scicode" / "problems_test.jsonl")
    sci.write_h5(d / "scicode" / "test_data.h5")
    return d


def test_every_suite_of_the_preset_ships_statistics() -> None:
    for ps in AA.suites:
        stats = load_stats(ps.name)
        assert stats is not None, ps.name
        assert stats.repeats == ps.repeats
        suite = StatsSuite(stats)
        assert len(suite.items) == stats.calls
    assert load_stats("scicode").calls == 338  # type: ignore[union-attr]


@pytest.mark.slow
def test_run_aa_in_the_simulator_reports_each_suite_the_index_and_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _data_dir(tmp_path)
    db = str(tmp_path / "runs.db")
    code, out, err = _cli(
        capsys, "run", "aa", "--data-dir", str(d), "--sim", "--sim-speed", "0", "-m", "openai/gpt-4o-mini",
        "--limit", "2", "--repeats", "1", "--suite-option", "scicode.test_data_sha256=any",
        "--suite-option", "scicode.timeout=20", "--db", db, "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert sorted(report["suites"]) == sorted(s.name for s in AA.suites)
    assert report["config"]["options"]["max_output_tokens"] == 16384
    assert report["config"]["options"]["judge"] == "openai/gpt-4o-2024-08-06"
    (model,) = report["preset"]["models"]
    assert [s["suite"] for s in model["suites"]] == [s.name for s in AA.suites]
    for s in model["suites"]:
        assert s["score"] is not None and s["ci_low"] <= s["score"] <= s["ci_high"], s
    sci_row = next(s for s in model["suites"] if s["suite"] == "scicode")
    assert sci_row["metric"] == "sub-step accuracy"
    assert model["index"] == pytest.approx(sum(s["score"] for s in model["suites"]) / 7)
    assert Decimal(model["spent_usd"]) == Decimal(report["spent_usd"])
    hle = next(r for r in report["results"] if r["suite"] == "hle")
    assert hle["judge_calls"] == 2


def test_estimate_aa_for_o1_works_offline_and_compares_with_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing downloaded
    code, out, err = _cli(
        capsys, "estimate", "aa", "-m", "openai/o1", "--db", str(tmp_path / "none.db"), "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    preset = data["preset"]
    assert sorted(preset["from_statistics"]) == sorted(s.name for s in AA.suites)
    (o1,) = preset["models"]
    assert o1["study_usd"] == "2767.05"
    assert 0.5 < o1["ratio_to_study"] < 2.0
    suites = {r["suite"] for r in data["rows"]}
    assert "scicode" in suites and any(s.startswith("hle judge") for s in suites)
    sci_row = next(r for r in data["rows"] if r["suite"] == "scicode")
    assert sci_row["calls"] == 338 * 3
    code, out, err = _cli(capsys, "estimate", "aa", "-m", "openai/o1", "--db", str(tmp_path / "none.db"))
    assert code == 0 and "the study (Artificial Analysis cost study, spring 2025) paid $2,767.05" in out


def test_suites_lists_scicode_and_the_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "suites", "--json")
    assert code == 0
    rows = json.loads(out)
    assert any(r["name"] == "scicode" for r in rows)
    (aa,) = [r for r in rows if r.get("preset")]
    assert aa["name"] == "aa" and len(aa["suites"]) == 7


def test_bad_preset_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _data_dir(tmp_path)
    shutil.rmtree(d / "scicode")
    db = str(tmp_path / "runs.db")
    cases = [
        (["run", "aa", "--data-dir", str(d)], "aa: scicode: scicode needs its problems"),
        (["run", "aa", "--data", str(d / "math500.jsonl")], "a preset takes --data-dir"),
        (["run", "aa", "demo"], "runs on its own"),
        (["run", "demo", "--data-dir", str(d)], "--data-dir is for presets"),
        (["run", "aa", "--data-dir", str(tmp_path / "nope")], "no such directory"),
        (["run", "aa", "--data-dir", str(d), "--suite-option", "timeout=3"], "SUITE.KEY=VALUE"),
    ]
    for args, needle in cases:
        code, _, err = _cli(capsys, *args, "--sim", "-m", "openai/gpt-4o-mini", "--db", db)
        assert code == 2, (args, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, err)


@pytest.mark.slow
def test_resume_of_a_preset_run_loads_its_suites_from_the_data_dir_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _data_dir(tmp_path)
    db = str(tmp_path / "runs.db")
    code, out, err = _cli(
        capsys, "run", "aa", "--data-dir", str(d), "--sim", "--sim-speed", "0", "-m", "openai/gpt-4o-mini",
        "--limit", "1", "--repeats", "1", "--suite-option", "scicode.test_data_sha256=any",
        "--budget", "0.0006", "--max-output-tokens", "300", "--allow-partial", "-c", "1",
        "--db", db, "--json",
    )  # fmt: skip
    assert code == 3, err  # stopped at the budget
    run_id = json.loads(out)["id"]
    code, out, err = _cli(capsys, "resume", run_id, "--add-budget", "5", "--db", db, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "done"
    assert sum(r["not_run"] for r in report["results"]) == 0
    assert sorted(r["suite"] for r in report["results"]) == sorted(s.name for s in AA.suites)
