"""SciCode: loading (schema, pins, options), the official step prompts, extraction, and scoring in the
sandbox (targets read from a small h5 made here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import suites
import suites.scicode as sc
from harness.errors import ConfigError, DataError
from harness.suite import StepAnswer, SteppedSuite
from tests.helpers import scicode_fixture as fx

pytestmark = pytest.mark.anyio


def _load(tmp_path: Path, **options: str) -> sc.SciCodeSuite:
    data = fx.write_problems(tmp_path / "problems_test.jsonl")
    h5 = fx.write_h5(tmp_path / "test_data.h5")
    opts = {"test_data": str(h5), "test_data_sha256": "any", "timeout": "20", **options}
    return sc.load(data=data, options=opts)


def _chain(suite: sc.SciCodeSuite, item_id: str, codes: dict[str, str]) -> tuple[list[StepAnswer], object]:
    prompt = suite.render(suite.item(item_id), 0, 0)
    answers: list[StepAnswer] = []
    for k in range(suite.step_count(prompt)):
        step = suite.step_prompt(prompt, k, [a.text for a in answers])
        number = str(step.meta["step"])
        answers.append(StepAnswer(fx.answer(number, codes.get(number)), "stop"))
    return answers, prompt


def test_loads_through_the_registry_as_a_stepped_suite(tmp_path: Path) -> None:
    data = fx.write_problems(tmp_path / "problems_test.jsonl")
    h5 = fx.write_h5(tmp_path / "t.h5")
    suite = suites.get_suite("scicode", data=data, options={"test_data": str(h5), "test_data_sha256": "any"})
    assert isinstance(suite, SteppedSuite) and suite.default_repeats == 3
    assert [i.id for i in suite.items] == ["fx1", "fx2", "62"]
    assert "scicode" in suites.suite_names()
    # 62.1 comes with its code: 62 asks one step.
    assert [suite.step_count(suite.render(i, 0, 0)) for i in suite.items] == [2, 2, 1]


def test_the_step_prompt_is_the_official_template_with_the_models_own_code(tmp_path: Path) -> None:
    suite = _load(tmp_path)
    prompt = suite.render(suite.item("fx1"), 0, 0)
    first = prompt.messages[0].content
    assert first.startswith("PROBLEM DESCRIPTION:\nYou will be provided with problem steps")
    assert (
        "Return twice x.\nBackground: fixture step fx1.1.\n\n"
        "def double(x):\n    '''Twice x.'''\n\n    return y" in first
    )
    answer = (
        "Sure.\n```python\n# Background: b\nimport numpy as np\n"
        "def helper():\n    pass\ndef double(x):\n    return x * 2\n```\n"
    )
    second = suite.step_prompt(prompt, 1, [answer]).messages[0].content
    # Only the function the header names, as upstream's get_function_from_code shows it.
    assert "def double(x):\n    return x * 2\n\nNEXT STEP - PROBLEM STEP AND FUNCTION HEADER:" in second
    assert "def helper" not in second
    assert second.endswith("in format of ```python```.")
    without = _load(tmp_path, with_background="false").render(suite.item("fx1"), 0, 0).messages[0].content
    assert "Background: fixture step" not in without


def test_extraction_takes_the_first_python_block_and_drops_imports() -> None:
    text = (
        "x\n```python\nimport os\nfrom math import pi\ndef f():\n    return pi\n```\n"
        "```python\ndef g(): pass\n```"
    )
    code = sc.extract_code(text)
    assert code is not None and "def f()" in code and "def g" not in code and "import" not in code
    assert sc.extract_code("no code at all") is None
    assert sc.function_code("def a():\n    return 1\ndef b():\n    return 2", "b") == "def b():\n    return 2"
    assert sc.function_code("def a(:", "a") == "def a(:"  # does not parse: kept whole
    assert sc.function_code("def a():\n    pass", "zzz") == ""


async def test_scores_each_step_in_the_sandbox_against_the_h5_targets(tmp_path: Path) -> None:
    suite = _load(tmp_path)
    answers, prompt = _chain(suite, "fx1", {})
    score = await suite.stepped_score(prompt, answers)  # type: ignore[arg-type]
    assert (score.status, score.correct, score.extracted) == ("scored", True, "steps 2/2")
    assert score.meta["step_results"] == {"fx1.1": True, "fx1.2": True}
    # A wrong step 1 fails it, and step 2 (built on it) too; tuples compare with cmp_tuple_or_list.
    answers, prompt = _chain(suite, "fx1", {"fx1.1": "def double(x):\n    return 3 * x"})
    score = await suite.stepped_score(prompt, answers)  # type: ignore[arg-type]
    assert score.meta["step_results"] == {"fx1.1": False, "fx1.2": False} and score.correct is False
    answers, prompt = _chain(suite, "fx2", {"fx2.1": "def pair(a, b):\n    return a + b, a - b"})
    score = await suite.stepped_score(prompt, answers)  # type: ignore[arg-type]
    assert score.meta["step_results"] == {"fx2.1": True, "fx2.2": True}


async def test_model_code_is_contained_a_loop_times_out_and_keys_are_not_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fixture-secret")
    suite = _load(tmp_path, timeout="2")
    # (import lines are dropped from answers, as upstream does: __import__ gets past that)
    leak = "def double(x):\n    assert 'OPENAI_API_KEY' not in __import__('os').environ\n    return 2 * x"
    answers, prompt = _chain(
        suite, "fx1", {"fx1.1": leak, "fx1.2": "def quad(x):\n    while True:\n        pass"}
    )
    score = await suite.stepped_score(prompt, answers)  # type: ignore[arg-type]
    assert score.meta["step_results"] == {"fx1.1": True, "fx1.2": False}
    net = (
        "def double(x):\n    socket = __import__('socket')\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return 2 * x"
    )
    answers, prompt = _chain(suite, "fx1", {"fx1.1": net})
    score = await suite.stepped_score(prompt, answers)  # type: ignore[arg-type]
    assert score.meta["step_results"]["fx1.1"] is False


async def test_no_code_in_an_answer_fails_its_step(tmp_path: Path) -> None:
    suite = _load(tmp_path)
    prompt = suite.render(suite.item("62"), 0, 0)
    score = await suite.stepped_score(prompt, [StepAnswer("I cannot help with that.", "stop")])
    assert (score.correct, score.meta["step_results"]) == (False, {"62.2": False})


def test_test_data_is_checked_against_its_sha256(tmp_path: Path) -> None:
    data = fx.write_problems(tmp_path / "problems_test.jsonl")
    h5 = fx.write_h5(tmp_path / "test_data.h5")
    with pytest.raises(DataError, match="SHA-256 .* the pin says 48b0272a"):
        sc.load(data=data, options={"test_data": str(h5)})
    from suites.loaders import file_sha256

    ok = sc.load(data=data, options={"test_data": str(h5), "test_data_sha256": file_sha256(h5)})
    assert ok.test_data == h5
    with pytest.raises(DataError, match="no such file"):
        sc.load(data=data, options={"test_data": str(tmp_path / "missing.h5")})


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="scicode needs its problems: pass --data"):
        sc.load(data=None)
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        sc.load(data=tmp_path, options={"colour": "red"})
    rows = fx.problems()
    del rows[2]["sub_steps"][0]["ground_truth_code"]
    path = fx.write_problems(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError, match="step 62.1 comes with its code.*gold=DIR"):
        sc.load(data=path, options={"test_data": str(tmp_path), "test_data_sha256": "any"})
    gold = tmp_path / "gold"
    gold.mkdir()
    (gold / "62.1.txt").write_text("def offset(x):\n    return x + 10\n")
    h5 = fx.write_h5(tmp_path / "t.h5")
    loaded = sc.load(data=path, options={"test_data": str(h5), "test_data_sha256": "any", "gold": str(gold)})
    assert "return x + 10" in loaded.steps(loaded.item("62"))[0].gold_code
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem_id": "1", "sub_steps": "nope"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl: line 1: sub_steps must be a non-empty list"):
        sc.load(data=bad, options={"test_data": str(h5), "test_data_sha256": "any"})


def test_a_directory_reads_test_and_dev_and_parquet_works(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = fx.problems()
    d = tmp_path / "eval"
    d.mkdir()
    fx.write_problems(d / "problems_test.jsonl", rows[:2])
    fx.write_problems(d / "problems_dev.jsonl", rows[2:])
    h5 = fx.write_h5(tmp_path / "t.h5")
    loaded = sc.load(data=d, options={"test_data": str(h5), "test_data_sha256": "any"})
    assert sorted(i.id for i in loaded.items) == ["62", "fx1", "fx2"]
    assert {i.stratum for i in loaded.items} == {"test", "dev"}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    from_parquet = sc.load(
        data=tmp_path / "test.parquet", options={"test_data": str(h5), "test_data_sha256": "any"}
    )
    assert [i.id for i in from_parquet.items] == ["fx1", "fx2", "62"]
    assert from_parquet.steps(from_parquet.item("fx1"))[0].test_cases == tuple(
        rows[0]["sub_steps"][0]["test_cases"]
    )


def test_the_simulator_key_finds_a_step_prompt_whatever_the_earlier_code(tmp_path: Path) -> None:
    from harness.answerkey import AnswerKey

    suite = _load(tmp_path)
    prompt = suite.render(suite.item("fx1"), 0, 0)
    key = AnswerKey()
    key.add_prompts(suite.key_prompts(prompt))
    real = suite.step_prompt(prompt, 1, [fx.answer("fx1.1")])
    assert key.get(real.messages[0].content) is not None


async def test_the_sandbox_imports_what_scicode_needs() -> None:
    from harness.sandbox import run_python

    code = "import numpy, scipy, scipy.sparse, sympy, h5py\nprint(numpy.__name__, h5py.__name__)\n"
    result = await run_python({"m.py": code}, "m.py")
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-500:]


@pytest.mark.slow
def test_run_scicode_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    data = fx.write_problems(tmp_path / "problems_test.jsonl")
    h5 = fx.write_h5(tmp_path / "test_data.h5")
    code = main(
        [
            "run", "scicode", "--data", str(data), "--suite-option", f"test_data={h5}",
            "--suite-option", "test_data_sha256=any", "--sim", "--sim-speed", "0",
            "-m", "openai/gpt-4o-mini", "--repeats", "1", "--db", str(tmp_path / "runs.db"), "--json",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert result["items"] == 3 and result["substeps"]["scored"] == 5 and result["calls"] == 5


def test_a_sandbox_python_without_numpy_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli.main import main

    assert sc._sandbox_missing() == ()  # the real probe: this machine's sandbox has them all
    # Every step would fail on its imports and score 0: refused, one line, exit 2, nothing written.
    monkeypatch.setattr(sc, "_sandbox_missing", lambda: ("numpy", "h5py"))
    with pytest.raises(ConfigError, match=r"cannot import numpy, h5py, which SciCode's tests need"):
        _load(tmp_path)
    data = fx.write_problems(tmp_path / "problems_test.jsonl")
    db = tmp_path / "runs.db"
    code = main(["run", "scicode", "--data", str(data), "--sim", "-m", "openai/gpt-4o-mini", "--db", str(db)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "TOLLBENCH_SANDBOX_PYTHON" in err[0]
    assert not db.exists()
