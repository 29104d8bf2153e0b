"""The command line of the new suites: `run hle --judge`, `run livecodebench --suite-option`,
`sandbox check`, and their bad input (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from tests.helpers.hle_fixture import write as write_hle
from tests.helpers.lcb_fixture import window_rows, write_rows


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_run_hle_in_the_simulator_reports_judge_dollars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_hle(tmp_path / "hle.jsonl")
    db = str(tmp_path / "runs.db")
    code, out, err = _cli(
        capsys, "run", "hle", "--data", str(data), "--sim", "--sim-speed", "0", "-m", "openai/gpt-4o-mini",
        "--judge", "openai/gpt-4o", "--db", db, "--json",
    )  # fmt: skip
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert result["judge_calls"] == 6 and result["unscored"] == 0
    assert json.loads(out)["config"]["options"]["judge"] == "openai/gpt-4o"


def test_bad_judge_and_suite_options_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hle_data = str(write_hle(tmp_path / "hle.jsonl"))
    lcb_data = str(write_rows(tmp_path / "test5.jsonl", window_rows()))
    db = str(tmp_path / "runs.db")
    cases = [
        (["run", "hle", "--data", hle_data, "--judge", "anthropic/claude-haiku-4-5"], "structured output"),
        (["run", "demo", "--judge", "openai/gpt-4o"], "only for judged suites"),
        (["run", "hle", "--data", hle_data, "--judge", "openai/no-such-model-x"], "judge"),
        (["run", "livecodebench", "--data", lcb_data, "--suite-option", "end=soon"], "end must be a date"),
        (["run", "livecodebench", "--data", lcb_data, "--suite-option", "release=v9"], "release must be"),
    ]
    for args, needle in cases:
        code, _, err = _cli(capsys, *args, "--sim", "-m", "openai/gpt-4o-mini", "--db", db)
        assert code == 2, (args, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, err)


def test_sandbox_check_prints_the_level_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "sandbox", "check", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["contained"] is True and payload["isolation"]["level"] in ("bwrap", "namespaces")
    assert [c["name"] for c in payload["checks"]] == [
        "network", "environment", "fork", "memory", "write", "endless loop",
    ]  # fmt: skip
