"""``livecodebench``: LiveCodeBench code generation (``livecodebench/code_generation_lite``).

Data: the raw JSONL files of the pinned revision (``test.jsonl``, ``test2.jsonl`` ... ``test6.jsonl``;
``release_vN`` is the cumulative list up to ``testN.jsonl``, ``vN`` alone just ``testN.jsonl``), read
directly (the dataset script is refused by ``datasets`` >= 4). Only the files a date window needs
are downloaded (never all 4.5 GB). Defaults are Artificial Analysis v2's: release ``v5``, contest
dates 2024-07-01 to 2025-01-01 (315 problems), 3 samples.

Options (``--suite-option KEY=VALUE``):

==================  ======================================================================
``release``         ``release_v5`` (default; ``v5``/``5`` work too), ``release_v1`` ..
                    ``release_v6``, or one file's problems: ``only_v3``
``start``, ``end``  contest-date window, ``YYYY-MM-DD``, both inclusive as upstream compares
                    them (``start <= contest_date <= end`` at midnight)
``unsafe_sandbox``  ``true``: run model code even where the machine cannot isolate it
==================  ======================================================================

Prompt: LiveCodeBench's own for chat models (its system message; ``### Question:``, the format
section with the starter code or the stdin instructions, ``### Answer:``). Extraction: the lines
between the last two lines holding a code fence (upstream's ``extract_code``).

Scoring: each test in its own sandboxed run (:mod:`harness.sandbox`): public tests, then private
tests, 6 s each (plus 1 s for the interpreter to start), the first failure ends the problem. stdin
tests feed the input through the real stdin and compare upstream's way (whole output stripped, split
into lines, each stripped; line counts equal; each line equal or equal token-wise as ``Decimal``).
Functional (LeetCode) tests call ``Solution().<func_name>(*args)`` with one JSON value per input line
and compare the JSON result with ``==`` (a tuple counts as a list). Both get upstream's import
preamble. pass@1 is the mean over the samples.

Private tests are either JSON or ``base64(zlib(pickle(json)))``; the pickle is read by an unpickler
that accepts nothing but strings (:func:`decode_tests`), never by ``pickle.loads``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from harness.errors import ConfigError, DataError
from harness.sandbox import Limits, isolation, run_python
from harness.suite import Item, Score
from harness.types import Message, Prompt

from .base import BaseSuite, SuiteInfo
from .loaders import HubSource, Row, check_row, fetch_hub_file

__all__ = [
    "ERRATA",
    "FILES",
    "INFO",
    "IMPORT_PREAMBLE",
    "LiveCodeBenchSuite",
    "OPTIONS",
    "REVISION",
    "SYSTEM_MESSAGE",
    "Test",
    "compare_stdout",
    "decode_tests",
    "extract_code",
    "load",
]

REPO = "livecodebench/code_generation_lite"
#: The revision Inspect-era graders pair with LiveCodeBench commit 28fef95e (BENCHMARKS.md section 13).
REVISION = "0fe84c3912ea0c4d4a78037083943e8f0c4dd505"


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    name: str
    first: date
    """First contest date in the file (approximate, from the release notes), for choosing files."""
    last: date
    sha256: str | None = None
    size: int | None = None


#: The six files in release order, with the contest months they cover (release notes: v1 May 2023 -
#: Mar 2024, v2 to May 2024, v3 to Jul 2024, v4 to Sep 2024, v5 to Jan 2025, v6 to Apr 2025).
FILES: tuple[ReleaseFile, ...] = (
    ReleaseFile("test.jsonl", date(2023, 5, 1), date(2024, 3, 31)),
    ReleaseFile("test2.jsonl", date(2024, 4, 1), date(2024, 5, 31)),
    ReleaseFile("test3.jsonl", date(2024, 5, 1), date(2024, 7, 31)),
    ReleaseFile("test4.jsonl", date(2024, 7, 1), date(2024, 9, 30)),
    ReleaseFile("test5.jsonl", date(2024, 9, 1), date(2025, 1, 31)),
    ReleaseFile(
        "test6.jsonl",
        date(2025, 1, 1),
        date(2025, 4, 30),
        sha256="bb4c364f71921c4495a6ad15abe1a927350b720009f4933e2e71f8af0f6fd1f5",
        size=134_303_240,
    ),
)

#: Files are chosen for a window with this much slack on both sides (the spans are approximate).
_SLACK_DAYS = 15

DEFAULT_RELEASE = "release_v5"
DEFAULT_START = date(2024, 7, 1)
DEFAULT_END = date(2025, 1, 1)
#: Problems in the default window of release v5 (AA v2's 315).
DEFAULT_WINDOW_PROBLEMS = 315

OPTIONS = ("release", "start", "end", "unsafe_sandbox")

#: Upstream ERRATA.md (commit 28fef95e): problems kept in the benchmark and tagged in results.
_MULTIPLE_ANSWERS = (
    "abc311_c",
    "abc326_d",
    "abc327_b",
    "abc333_e",
    "abc343_e",
    "abc362_c",
    "find-words-containing-character",
    "find-the-peaks",
    "generate-binary-strings-without-adjacent-zeros",
    "arc185_c",
    "abc343_a",
)
ERRATA: Mapping[str, str] = {
    **dict.fromkeys(_MULTIPLE_ANSWERS, "multiple_answers"),
    "abc337_e": "interactive",
    "abc355_e": "interactive",
    "abc350_c": "bad_tests",
    "apply-operations-to-make-string-empty": "bad_tests",
    "most-frequent-ids": "bad_tests",
    "arc189_a": "bad_tests",
}

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and "
    "will generate a correct Python program that matches the specification and passes all tests."
)
_FORMAT_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your "
    "code within delimiters."
)
_FORMAT_STDIN = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
    "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
    "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT."
)

#: Upstream's preamble (``testing_util.import_string``), put before every solution.
IMPORT_PREAMBLE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
    "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
    "import json\nsys.setrecursionlimit(50000)\n"
)

#: Seconds per test (upstream's default), and what the interpreter gets on top to start.
TEST_TIMEOUT_S = 6.0
STARTUP_S = 1.0
#: The most a private-test blob may inflate to (a zlib bomb is refused, not decompressed).
MAX_DECODED_BYTES = 1 << 30

INFO = SuiteInfo(
    name="livecodebench",
    items=DEFAULT_WINDOW_PROBLEMS,
    source=f"{REPO}@{REVISION[:8]} (release_v5, 2024-07-01..2025-01-01)",
    license="cc (card); problems from LeetCode, AtCoder, Codeforces",
    access="open; code runs in the sandbox (tollbench sandbox check)",
    default_repeats=3,
    description="code generation, stdin and LeetCode tests in a sandbox, pass@1",
)

TestType = Literal["stdin", "functional"]


@dataclass(frozen=True, slots=True)
class Test:
    input: str
    output: str
    testtype: TestType


# -- decoding ---------------------------------------------------------------------------------------


class _StringsOnly(pickle.Unpickler):
    """An unpickler for data files: globals (and so any callable, hence any code) are refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused {module}.{name}: only strings may be unpickled")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: only strings may be unpickled")


def _inflate(blob: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(blob, MAX_DECODED_BYTES)
    if d.unconsumed_tail:
        raise ValueError(f"inflates to more than {MAX_DECODED_BYTES} bytes")
    return out + d.flush()


def decode_tests(value: Any, where: str = "tests") -> list[Test]:
    """A test list from a ``public_test_cases``/``private_test_cases`` cell: a JSON string (or an
    already parsed list), or ``base64(zlib(pickle(json string)))`` read by a strings-only unpickler.

    Raises:
        DataError: anything else (a pickle that holds more than a string is refused unexecuted).
    """
    if isinstance(value, list):
        raw: Any = value
    elif isinstance(value, str):
        try:
            raw = json.loads(value)
        except json.JSONDecodeError:
            try:
                blob = base64.b64decode(value.encode("ascii"), validate=True)
                text = _StringsOnly(io.BytesIO(_inflate(blob))).load()
            except (binascii.Error, UnicodeEncodeError, zlib.error, ValueError, EOFError) as exc:
                raise DataError(f"{where}: neither JSON nor base64+zlib+pickle ({exc})") from None
            except pickle.UnpicklingError as exc:
                raise DataError(f"{where}: unsafe pickle refused ({exc})") from None
            if not isinstance(text, str):
                held = type(text).__name__
                raise DataError(f"{where}: the pickle holds a {held}, not a JSON string") from None
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: the decoded tests are not JSON ({exc.msg})") from None
    else:
        raise DataError(f"{where}: expected a JSON string, got {type(value).__name__}")
    if not isinstance(raw, list):
        raise DataError(f"{where}: expected a list of tests")
    tests = []
    for i, t in enumerate(raw):
        if not isinstance(t, Mapping) or not all(isinstance(t.get(k), str) for k in ("input", "output")):
            raise DataError(f"{where}: test {i} needs string fields input and output")
        kind = t.get("testtype")
        if kind == "stdin" or kind == "functional":
            tests.append(Test(t["input"], t["output"], kind))
        else:
            raise DataError(f"{where}: test {i} has testtype {kind!r} (stdin or functional)")
    return tests


# -- extraction and comparison ---------------------------------------------------------------------


def extract_code(text: str) -> str | None:
    """The lines between the last two lines that hold a code fence (upstream's rule), else None."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return None
    code = "\n".join(lines[fences[-2] + 1 : fences[-1]])
    return code if code.strip() else None


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except InvalidOperation:
        return None


def compare_stdout(got: str, expected: str) -> bool:
    """Upstream's stdin comparison: stripped lines, equal count, each exact or equal as Decimals."""
    got_lines, want_lines = _stripped_lines(got), _stripped_lines(expected)
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines, strict=True):
        if g == w:
            continue
        gd, wd = _decimals(g), _decimals(w)
        if gd is None or wd is None or gd != wd:
            return False
    return True


_FUNCTIONAL_MAIN = """\
import io, json, sys
_real_stdout = sys.stdout
sys.stdout = io.StringIO()  # what the solution prints is not its answer
_args = json.loads(sys.stdin.read())
import solution as _solution
_source = open(_solution.__file__, encoding="utf-8").read()
_obj = _solution.Solution() if "class Solution" in _source else _solution
_out = getattr(_obj, {fn!r})(*_args)
if isinstance(_out, tuple):
    _out = list(_out)
sys.stdout = _real_stdout
sys.stdout.write(json.dumps(_out))
"""


# -- the suite ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Location:
    path: str
    offset: int


class LiveCodeBenchSuite(BaseSuite):
    """LiveCodeBench problems; the private tests stay in the data file until a problem is scored."""

    def __init__(
        self,
        items: Sequence[Item],
        source: str,
        *,
        sandbox_level: str,
        window: str,
        test_timeout_s: float = TEST_TIMEOUT_S,
    ) -> None:
        super().__init__(INFO.name, INFO.default_repeats, items, source)
        self.sandbox_level = sandbox_level
        self.window = window
        self.test_timeout_s = test_timeout_s

    def target(self, item: Item) -> str:
        """What the prompt records as its target: nothing (the tests decide; subclasses in tests put
        a scripted solution here for the simulator to answer with)."""
        return ""

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """LiveCodeBench's chat prompt; the same for every sample."""
        starter = str(item.data.get("starter_code") or "")
        text = f"### Question:\n{item.question}\n\n"
        if starter:
            text += f"### Format: {_FORMAT_STARTER}\n```python\n{starter}\n```\n\n"
        else:
            text += f"### Format: {_FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
        text += "### Answer: (use the provided format with backticks)\n\n"
        meta: dict[str, Any] = {
            "item_id": item.id,
            "platform": item.data.get("platform"),
            "difficulty": item.data.get("difficulty"),
            "contest_date": item.data.get("contest_date"),
            "sandbox": self.sandbox_level,
        }
        if item.data.get("errata"):
            meta["errata"] = item.data["errata"]
        return Prompt(
            messages=(Message("system", SYSTEM_MESSAGE), Message("user", text)),
            target=self.target(item),
            answer_format="text",
            meta=meta,
        )

    def tests(self, item: Item) -> list[Test]:
        """Public then private tests of ``item`` (the private ones read again from the data file)."""
        public = decode_tests(item.data["public_test_cases"], f"{item.id}: public_test_cases")
        private_raw = item.data.get("private_test_cases")
        if private_raw is None:
            loc: _Location = item.data["private_at"]
            private_raw = _read_field(loc.path, loc.offset, "private_test_cases")
        private = decode_tests(private_raw, f"{item.id}: private_test_cases") if private_raw else []
        return public + private

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Run the extracted code on the tests in order; the first failing test ends the problem.

        ``extracted`` records the verdict (``pass 12/12``, ``wrong_answer 3/12``, ``time_limit``,
        ``runtime_error``); a sandbox that could not start is ``unusable``/``sandbox_error``, tests
        that can no longer be read from the data file ``unusable``/``tests_unreadable``.
        """
        code = extract_code(text)
        if code is None:
            return Score("scored", False, None)
        item = self.item(str(prompt.meta["item_id"]))
        try:
            tests = await anyio.to_thread.run_sync(self.tests, item)
        except (OSError, ValueError, DataError):  # the data file changed or went away mid-run
            return Score("unusable", None, None, "tests_unreadable")
        fn = str(item.data.get("func_name") or "")
        limits = Limits(timeout_s=self.test_timeout_s + STARTUP_S, cpu_s=int(self.test_timeout_s) + 2)
        solution = IMPORT_PREAMBLE + "\n" + code
        for i, test in enumerate(tests, 1):
            verdict = await self._run_test(solution, test, fn, limits)
            if verdict == "sandbox_error":
                return Score("unusable", None, None, "sandbox_error")
            if verdict != "pass":
                return Score("scored", False, f"{verdict} {i}/{len(tests)}")
        return Score("scored", True, f"pass {len(tests)}/{len(tests)}")

    async def _run_test(self, solution: str, test: Test, fn: str, limits: Limits) -> str:
        expected: Any = None
        if test.testtype == "functional":
            try:
                args = [json.loads(line) for line in test.input.split("\n")]
                expected = json.loads(test.output)
            except json.JSONDecodeError:
                return "bad_test"
            files = {"solution.py": solution, "main.py": _FUNCTIONAL_MAIN.format(fn=fn)}
            result = await run_python(files, "main.py", stdin=json.dumps(args).encode(), limits=limits)
        else:
            files = {"solution.py": solution}
            result = await run_python(files, "solution.py", stdin=test.input.encode(), limits=limits)
        if result.launch_error:
            return "sandbox_error"
        if result.timed_out or result.killed_by == "SIGXCPU":
            return "time_limit"
        if result.returncode != 0:
            return "runtime_error"
        got = result.stdout.decode("utf-8", "replace")
        if test.testtype == "functional":
            try:
                value = json.loads(got)
            except json.JSONDecodeError:
                return "runtime_error"
            return "pass" if value == expected else "wrong_answer"
        return "pass" if compare_stdout(got, test.output) else "wrong_answer"


# -- loading --------------------------------------------------------------------------------------


def _read_field(path: str, offset: int, field: str) -> Any:
    with open(path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    return json.loads(line).get(field)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"livecodebench: {option} must be a date YYYY-MM-DD, got {value!r}") from None


def release_files(release: str) -> list[ReleaseFile]:
    """The files of a release: ``release_vN`` (cumulative), or ``only_vN`` (one file)."""
    key = release.strip().lower()
    m = re.fullmatch(r"(?:release_)?v?([1-6])", key)
    if m:
        return list(FILES[: int(m.group(1))])
    m = re.fullmatch(r"only_v([1-6])", key)
    if m:
        return [FILES[int(m.group(1)) - 1]]
    raise ConfigError(
        f"livecodebench: release must be release_v1 .. release_v6 (or only_v1 .. only_v6), got {release!r}"
    )


def files_for_window(files: Sequence[ReleaseFile], start: date, end: date) -> list[ReleaseFile]:
    """The files whose contest dates can fall in ``start..end`` (with slack for approximate spans)."""
    slack = _SLACK_DAYS
    return [
        f
        for f in files
        if (f.first - start).days <= (end - start).days + slack and (f.last - start).days >= -slack
    ]


def _rows(path: Path) -> list[tuple[Row, int]]:
    """Every record of a raw JSONL file with the byte offset of its line."""
    out: list[tuple[Row, int]] = []
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with f:
        offset = 0
        for lineno, line in enumerate(f, 1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: line {lineno}: not valid JSON ({exc})") from None
            if not isinstance(value, dict):
                raise DataError(f"{path}: line {lineno}: expected a JSON object")
            out.append((Row(f"{path}: line {lineno}", value), start))
    return out


_REQUIRED = ("question_id", "question_content", "platform", "contest_date", "public_test_cases")


def _item(row: Row, path: Path, offset: int) -> tuple[Item, datetime]:
    schema = REPO
    for name in _REQUIRED:
        row.require(name, schema=schema)
    qid = str(row.data["question_id"])
    try:
        when = datetime.fromisoformat(str(row.data["contest_date"]))
    except ValueError:
        bad = row.data["contest_date"]
        raise DataError(f"{row.where}: contest_date {bad!r} is not an ISO date") from None
    try:
        meta = json.loads(row.data.get("metadata") or "{}")
    except json.JSONDecodeError:
        raise DataError(f"{row.where}: metadata is not JSON") from None
    public = row.data["public_test_cases"]
    decode_tests(public, f"{row.where}: public_test_cases")  # fail at load, not mid-run
    title = str(row.data.get("question_title") or "")
    errata = ERRATA.get(qid) or ERRATA.get(_slug(title)) or ""
    data: dict[str, Any] = {
        "platform": row.data["platform"],
        "difficulty": row.data.get("difficulty"),
        "contest_id": row.data.get("contest_id"),
        "contest_date": when.isoformat(),
        "starter_code": row.data.get("starter_code") or "",
        "func_name": meta.get("func_name") if isinstance(meta, dict) else None,
        "public_test_cases": public,
        "private_at": _Location(str(path), offset),
        "errata": errata,
    }
    item = Item(qid, str(row.data["question_content"]), "", str(row.data.get("difficulty") or ""), data)
    return item, when


def _check_light(row: Row) -> None:
    """Storability checks on the fields kept in memory (the private tests are checked when decoded)."""
    light = {k: v for k, v in row.data.items() if k != "private_test_cases"}
    check_row(Row(row.where, light))


def _local_files(data: Path, files: Sequence[ReleaseFile]) -> list[Path]:
    path = data.expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [path / f.name for f in files if (path / f.name).is_file()]
        missing = [f.name for f in files if not (path / f.name).is_file()]
        if missing:
            raise DataError(
                f"{path}: the window needs {', '.join(f.name for f in files)}; missing {', '.join(missing)}"
            )
        return found
    raise DataError(f"{path}: no such file or directory")


def load(
    *, data: Path | None = None, offline: bool | None = None, options: Mapping[str, str] | None = None
) -> LiveCodeBenchSuite:
    """Load the problems of a release whose contest date is in the window.

    Args:
        data: A raw JSONL file (its problems in the window), or a directory holding the release's
            ``test*.jsonl`` files; default: the pinned files from the hub (only those the window needs).
        options: ``release``, ``start``, ``end``, ``unsafe_sandbox`` (module docs).

    Raises:
        ConfigError: bad options, or a machine that cannot isolate model code (without
            ``unsafe_sandbox=true``).
        DataError: missing or malformed data, a downloaded file whose hash does not match its pin,
            or a default window that does not hold its 315 problems.
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"livecodebench: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    release = opts.get("release", DEFAULT_RELEASE)
    start = _parse_date(opts["start"], "start") if "start" in opts else DEFAULT_START
    end = _parse_date(opts["end"], "end") if "end" in opts else DEFAULT_END
    if end < start:
        raise ConfigError(f"livecodebench: end {end} is before start {start}")
    unsafe = opts.get("unsafe_sandbox", "false").strip().lower() in ("1", "true", "yes", "on")
    level = require_isolation(INFO.name, unsafe)
    files = files_for_window(release_files(release), start, end)
    if data is not None:
        paths = _local_files(data, files)
        source = str(data)
    else:
        paths = [fetch_hub_file(INFO.name, _hub(f), offline=offline) for f in files]
        source = f"hf://{REPO}@{REVISION}/{{{','.join(f.name for f in files)}}}"
    lo, hi = datetime.combine(start, datetime.min.time()), datetime.combine(end, datetime.min.time())
    items: list[Item] = []
    seen: dict[str, str] = {}
    for path in paths:
        for row, offset in _rows(path):
            _check_light(row)
            item, when = _item(row, path, offset)
            if not lo <= when.replace(tzinfo=None) <= hi:
                continue
            if item.id in seen:
                raise DataError(f"{row.where}: duplicate question_id {item.id!r} (first at {seen[item.id]})")
            seen[item.id] = row.where
            items.append(item)
    window = f"{release} {start}..{end}"
    if not items:
        raise DataError(f"livecodebench: no problem of {source} has a contest date in {start}..{end}")
    default = (release, start, end) == (DEFAULT_RELEASE, DEFAULT_START, DEFAULT_END)
    if data is None and default and len(items) != DEFAULT_WINDOW_PROBLEMS:
        raise DataError(
            f"livecodebench: the default window holds {len(items)} problems, not "
            f"{DEFAULT_WINDOW_PROBLEMS}: the pinned files changed; pass --data with the files of "
            f"revision {REVISION}"
        )
    return LiveCodeBenchSuite(items, source, sandbox_level=level, window=window)


def _hub(f: ReleaseFile) -> HubSource:
    return HubSource(REPO, f.name, REVISION, schema=REPO, sha256=f.sha256, size=f.size)


def require_isolation(suite: str, unsafe: bool) -> str:
    """The machine's isolation level for model code; refuses ``none`` unless ``unsafe``.

    Raises:
        ConfigError: the machine cannot isolate and ``unsafe`` is False.
    """
    level = isolation().level
    if level == "none" and not unsafe:
        raise ConfigError(
            f"{suite} runs model-written code and this machine cannot isolate it (no bubblewrap, "
            "no working unshare; see `tollbench sandbox check`). Install bubblewrap, or pass "
            "--suite-option unsafe_sandbox=true to run it with network and files reachable."
        )
    return level
