"""LiveCodeBench: the raw schema, the restricted unpickler, the window, the prompt, upstream's
comparison, and scoring in the sandbox (run as root, as in CI)."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

import suites.livecodebench as lcb
from harness.errors import ConfigError, DataError
from harness.sandbox import core
from harness.suite import score_answer
from suites import get_suite
from tests.helpers.lcb_fixture import encode_private, stdin_row, window_rows, write_rows

pytestmark = pytest.mark.anyio


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "test5.jsonl", window_rows())


def _fence(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


# -- decoding ---------------------------------------------------------------------------------------


def test_private_tests_decode_from_json_and_from_the_pickled_form() -> None:
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert lcb.decode_tests(json.dumps(tests)) == lcb.decode_tests(encode_private(tests))
    assert lcb.decode_tests(encode_private(tests)) == [lcb.Test("1\n", "2\n", "stdin")]


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_that_would_run_code_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = base64.b64encode(zlib.compress(pickle.dumps(_Exploit(str(marker))))).decode()
    with pytest.raises(DataError, match="unsafe pickle refused"):
        lcb.decode_tests(blob, "row 1")
    assert not marker.exists()
    # A pickled list (not a string) is refused too, even though it holds no code.
    blob = base64.b64encode(zlib.compress(pickle.dumps([{"input": "1"}]))).decode()
    with pytest.raises(DataError):
        lcb.decode_tests(blob)


def test_a_zlib_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lcb, "MAX_DECODED_BYTES", 1000)
    blob = base64.b64encode(zlib.compress(pickle.dumps("x" * 100_000))).decode()
    with pytest.raises(DataError, match="inflates to more than"):
        lcb.decode_tests(blob)


def test_garbage_tests_are_a_data_error() -> None:
    for bad in ("not json, not base64 !", json.dumps([{"input": "1", "output": 2, "testtype": "stdin"}])):
        with pytest.raises(DataError):
            lcb.decode_tests(bad)


# -- loading --------------------------------------------------------------------------------------


def test_the_default_window_is_inclusive_as_upstream_compares(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    assert [i.id for i in suite.items] == ["fx_in_start", "fx_fn", "abc311_c", "fx_in_end"]
    assert suite.default_repeats == 3
    errata = {i.id: i.data["errata"] for i in suite.items}
    assert errata["abc311_c"] == "multiple_answers" and errata["fx_fn"] == ""


def test_window_and_release_options(data: Path) -> None:
    suite = get_suite("lcb", data=data, options={"start": "2024-06-01", "end": "2024-07-31"})
    assert [i.id for i in suite.items] == ["fx_in_start", "fx_before"]
    for bad in ({"start": "July"}, {"release": "v9"}, {"colour": "red"}, {"start": "2025-02-01"}):
        with pytest.raises(ConfigError):
            get_suite("livecodebench", data=data, options=bad)


def test_release_files_and_the_files_a_window_needs() -> None:
    assert [f.name for f in lcb.release_files("release_v5")][-1] == "test5.jsonl"
    assert [f.name for f in lcb.release_files("v2")] == ["test.jsonl", "test2.jsonl"]
    assert [f.name for f in lcb.release_files("only_v3")] == ["test3.jsonl"]
    needed = lcb.files_for_window(lcb.release_files("release_v5"), lcb.DEFAULT_START, lcb.DEFAULT_END)
    # The AA window needs test3..test5 (about 2.4 GB), never all six files.
    assert [f.name for f in needed] == ["test3.jsonl", "test4.jsonl", "test5.jsonl"]


def test_a_directory_must_hold_the_files_the_window_needs(tmp_path: Path) -> None:
    write_rows(tmp_path / "test5.jsonl", window_rows())
    with pytest.raises(DataError, match="missing test3.jsonl, test4.jsonl"):
        get_suite("livecodebench", data=tmp_path)
    write_rows(tmp_path / "test3.jsonl", [stdin_row("fx3", "2024-07-02T00:00:00")])
    write_rows(tmp_path / "test4.jsonl", [stdin_row("fx4", "2024-08-02T00:00:00")])
    suite = get_suite("livecodebench", data=tmp_path)
    assert [i.id for i in suite.items][:2] == ["fx3", "fx4"] and len(suite.items) == 6


def test_bad_rows_name_their_line(tmp_path: Path) -> None:
    row = stdin_row("fx", "2024-08-01T00:00:00")
    del row["question_content"]
    path = write_rows(tmp_path / "bad.jsonl", [stdin_row("ok", "2024-08-01T00:00:00"), row])
    with pytest.raises(DataError, match="line 2: missing field 'question_content'"):
        get_suite("livecodebench", data=path)
    path = write_rows(tmp_path / "dup.jsonl", [stdin_row("a", "2024-08-01"), stdin_row("a", "2024-08-02")])
    with pytest.raises(DataError, match="duplicate question_id"):
        get_suite("livecodebench", data=path)


def test_a_machine_that_cannot_isolate_refuses_unless_unsafe(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    none = core.Isolation("none", "/usr/bin/python3", False, "open", False, False)
    monkeypatch.setattr(lcb, "isolation", lambda: none)
    with pytest.raises(ConfigError, match="cannot isolate"):
        get_suite("livecodebench", data=data)
    suite = get_suite("livecodebench", data=data, options={"unsafe_sandbox": "true"})
    assert suite.render(suite.items[0], 0, 0).meta["sandbox"] == "none"


# -- prompt and extraction ----------------------------------------------------------------------


def test_the_prompt_is_upstreams(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    stdin = suite.render(suite.items[0], 0, 0)
    assert [m.role for m in stdin.messages] == ["system", "user"]
    assert stdin.messages[0].content == lcb.SYSTEM_MESSAGE
    assert stdin.messages[1].content == (
        "### Question:\nRead a and b, print a+b. (fx_in_start)\n\n"
        "### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not "
        "directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that "
        "when the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT."
        "\n```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with backticks)\n\n"
    )
    functional = suite.render(suite.items[1], 0, 0)
    assert (
        "### Format: You will use the following starter code to write the solution to the problem and "
        "enclose your code within delimiters.\n```python\nclass Solution:\n    def add(self, a, b):\n"
        "        \n```\n\n" in functional.messages[1].content
    )
    assert functional.meta["sandbox"] in ("bwrap", "namespaces")
    assert suite.render(suite.items[2], 1, 0).meta["errata"] == "multiple_answers"


def test_extraction_takes_the_last_fenced_block() -> None:
    text = "```python\nprint(1)\n```\nthen better:\n```\nprint(2)\n```"
    assert lcb.extract_code(text) == "print(2)"
    assert lcb.extract_code("no code here") is None
    assert lcb.extract_code("```python\n```") is None


def test_upstreams_stdout_comparison() -> None:
    assert lcb.compare_stdout("3\n", "3")
    assert lcb.compare_stdout("  1 2 \n\n3  \n", "1 2\n\n3")
    assert lcb.compare_stdout("0.50 1e2\n", "0.5 100")  # token-wise Decimal
    assert not lcb.compare_stdout("3\n4\n", "3")  # line counts differ
    assert not lcb.compare_stdout("abc", "abd")
    assert not lcb.compare_stdout("0.5000001", "0.5")


# -- scoring in the sandbox -----------------------------------------------------------------------


async def _score(suite: Any, index: int, text: str) -> Any:
    prompt = suite.render(suite.items[index], 0, 0)
    return await score_answer(suite, prompt, text, "stop")


async def test_stdin_solutions_are_run_on_public_and_private_tests(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    good = _fence("a, b = map(int, input().split())\nprint(a + b)")
    score = await _score(suite, 0, good)
    assert (score.status, score.correct, score.extracted) == ("scored", True, "pass 3/3")
    # Passes the public test, fails the first private one.
    cheat = _fence("print(3)")
    score = await _score(suite, 0, cheat)
    assert (score.correct, score.extracted) == (False, "wrong_answer 2/3")
    score = await _score(suite, 0, _fence("raise SystemExit(input() and 1)"))
    assert (score.correct, score.extracted) == (False, "runtime_error 1/3")
    score = await _score(suite, 0, "I would add the numbers.")
    assert (score.status, score.correct, score.extracted) == ("scored", False, None)
    # Upstream's preamble is there (no import of its own needed).
    score = await _score(suite, 0, _fence("print(sum(map(int, stdin.readline().split())))"))
    assert score.correct


async def test_functional_solutions_call_the_method_and_compare_json(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    good = _fence("class Solution:\n    def add(self, a, b):\n        print('noise')\n        return a + b")
    assert (await _score(suite, 1, good)).extracted == "pass 2/2"
    as_tuple = _fence("class Solution:\n    def add(self, a: Any, b: Any) -> Any:\n        return (a + b)")
    assert (await _score(suite, 1, as_tuple)).correct
    wrong = _fence("class Solution:\n    def add(self, a, b):\n        return a")
    assert (await _score(suite, 1, wrong)).extracted == "wrong_answer 1/2"


async def test_a_timeout_fails_the_problem_and_ends_it(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    suite.test_timeout_s = 3.0
    # The first test loops forever: the problem fails at test 1, the other two never run.
    t0 = time.monotonic()
    score = await _score(suite, 0, _fence("while True:\n    pass"))
    took = time.monotonic() - t0
    assert (score.correct, score.extracted) == (False, "time_limit 1/3")
    assert took < 2 * (suite.test_timeout_s + lcb.STARTUP_S)


async def test_model_code_cannot_reach_the_network_or_the_keys(data: Path) -> None:
    os.environ["OPENAI_API_KEY"] = "sk-lcb-secret"
    try:
        suite = get_suite("livecodebench", data=data)
        leak = _fence(
            "import os, socket\n"
            "input()\n"
            "ok = 'OPENAI_API_KEY' not in os.environ\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=1); ok = False\n"
            "except OSError:\n"
            "    pass\n"
            "print(3 if ok else 4)"
        )
        assert (await _score(suite, 0, leak)).extracted == "wrong_answer 2/3"  # 3 on the public test
    finally:
        del os.environ["OPENAI_API_KEY"]


async def test_a_sandbox_that_cannot_start_is_unusable_not_wrong(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = get_suite("livecodebench", data=data)

    async def broken(*args: Any, **kwargs: Any) -> core.Result:
        return core.Result(125, b"", b"sandbox: no", False, 0.0, launch_error="sandbox: no")

    monkeypatch.setattr(lcb, "run_python", broken)
    score = await _score(suite, 0, _fence("print(3)"))
    assert (score.status, score.reason) == ("unusable", "sandbox_error")


def test_the_private_tests_are_read_again_from_the_file(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    item = suite.items[0]
    assert "private_test_cases" not in item.data
    assert [t.output for t in suite.tests(item)] == ["3\n", "30\n", "0\n"]
    assert [t.testtype for t in suite.tests(suite.items[1])] == ["functional", "functional"]


async def test_tests_that_cannot_be_read_again_are_unusable_not_wrong(data: Path) -> None:
    suite = get_suite("livecodebench", data=data)
    os.unlink(data)  # the file went away mid-run
    score = await _score(suite, 0, _fence("print(3)"))
    assert (score.status, score.reason) == ("unusable", "tests_unreadable")
