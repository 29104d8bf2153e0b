"""``scicode``: SciCode (Tian et al., 2024), scientific code generation in sequential sub-steps.

Data: the problems as SciCode ships them, ``problems_test.jsonl`` (65 problems) and
``problems_dev.jsonl`` (15), from github.com/scicode-bench/SciCode ``eval/data`` (Inspect pins commit
69a8cfc8) or the hub's ``SciCode1/SciCode``: ``--data`` is one such file (JSONL or parquet) or a
directory holding both (every ``*.jsonl``/``*.parquet`` in it is read). No full hub revision of the
problems is known, so the problems are never downloaded: ``--data`` is required. Artificial Analysis
uses test + dev: 80 problems, 341 steps, 338 scored (13.6, 62.1 and 76.3 come with their code).

Targets: ``test_data.h5`` (about 1 GB; SHA-256 ``48b0272a...b890``), downloaded from the hub mirror
``xantheocracy/scicode-mirror`` at a pinned revision, or ``--suite-option test_data=PATH`` (a local
copy, checked against the same SHA-256 unless ``test_data_sha256=any``). The harness reads a step's
groups out of it and gives the sandbox only those (a small HDF5 file).

Options (``--suite-option KEY=VALUE``):

=====================  ==================================================================
``test_data``          a local ``test_data.h5``
``test_data_sha256``   the SHA-256 it must have (default the pin); ``any``: not checked
``gold``               a directory with the gold code of the steps that come with it
                       (``13.6.txt``, ``62.1.txt``, ``76.3.txt`` in SciCode's ``eval/data``),
                       when the rows do not carry it (``ground_truth_code``)
``with_background``    ``true`` (default, as Artificial Analysis) or ``false``
``timeout``            seconds per step's tests (default 300, as Inspect)
``unsafe_sandbox``     ``true``: run model code even where the machine cannot isolate it
=====================  ==================================================================

Generation is sequential within a problem: each sub-step's prompt (SciCode's official template
``multistep_template.txt`` with the step backgrounds, which is what upstream's ``--with-background``
selects) holds the earlier steps' descriptions and the model's own code for them (the function the
step's header names, taken from the model's answer), so a problem is one unit of the run whose
sub-steps are a chain of calls (:class:`harness.suite.SteppedSuite`, driven by
:mod:`harness.run.steps`). The code is the answer's first ``python`` fenced block (Artificial
Analysis's regex), import lines removed as upstream does.

Scoring: each scored sub-step runs in the sandbox (:mod:`harness.sandbox`): the dependencies, the
earlier steps' functions, the step's code, then ``targets = process_hdf5_to_tuple(step, n)`` and
each test case with ``target = targets[i]``; exit code 0 passes. The sandbox gets the harness's own
``scicode.parse.parse.process_hdf5_to_tuple`` and ``scicode.compare.cmp`` helpers (the tests import
them). Reported: sub-step accuracy (the study's figure, 338 per repeat) and the main-problem solve
rate (a problem counts only if all its scored steps pass), each with its interval.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio.to_thread

from harness.errors import ConfigError, DataError
from harness.sandbox import GIB, Limits, run_python, run_python_sync
from harness.suite import STEP_SEPARATOR, Item, Score, StepAnswer
from harness.types import Message, Prompt

from .base import BaseSuite, SuiteInfo
from .loaders import HubSource, Row, fetch_hub_file, file_sha256, read_rows

__all__ = [
    "GOLD_STEPS",
    "INFO",
    "OPTIONS",
    "PROMPT_TEMPLATE",
    "SciCodeSuite",
    "Step",
    "TEST_DATA",
    "extract_code",
    "function_code",
    "load",
]

#: ``test_data.h5`` on the hub mirror Inspect uses (byte-identical to upstream's Google Drive file).
TEST_DATA = HubSource(
    repo_id="xantheocracy/scicode-mirror",
    filename="test_data.h5",
    revision="2f903a64a1c4eb62c7c649b0caf7ecb2c0217590",
    schema="SciCode test_data.h5",
    sha256="48b0272a88b17dbd29777c217e1b4fb2b019b92e11cc2add847409db9541b890",
)

#: Steps whose code SciCode supplies (never asked, never scored; their gold code is in the prompt).
GOLD_STEPS = frozenset({"13.6", "62.1", "76.3"})

OPTIONS = ("test_data", "test_data_sha256", "gold", "with_background", "timeout", "unsafe_sandbox")

DEFAULT_TIMEOUT_S = 300.0

#: SciCode's ``eval/data/multistep_template.txt`` verbatim (the template upstream's
#: ``--with-background`` selects; the step backgrounds go into the step descriptions).
PROMPT_TEMPLATE = (
    "PROBLEM DESCRIPTION:\n"
    "You will be provided with problem steps along with background knowledge necessary for solving the "
    "problem. Your task will be to develop a Python solution focused on the next step of the "
    "problem-solving process.\n\n"
    "PROBLEM STEPS AND FUNCTION CODE:\n"
    "Here, you'll find the Python code for the initial steps of the problem-solving process. This code "
    "is integral to building the solution.\n\n"
    "{problem_steps_str}\n\n"
    "NEXT STEP - PROBLEM STEP AND FUNCTION HEADER:\n"
    "This part will describe the next step in the problem-solving process. A function header will be "
    "provided, and your task is to develop the Python code for this next step based on the provided "
    "description and function header.\n\n"
    "{next_step_str}\n\n"
    "DEPENDENCIES:\n"
    "Use only the following dependencies in your solution. Do not include these dependencies at the "
    "beginning of your code.\n\n"
    "{dependencies}\n\n"
    "RESPONSE GUIDELINES:\n"
    "Now, based on the instructions and information provided above, write the complete and executable "
    "Python program for the next step in a single block.\n"
    "Your response should focus exclusively on implementing the solution for the next step, adhering "
    "closely to the specified function header and the context provided by the initial steps.\n"
    "Your response should NOT include the dependencies and functions of all previous steps. If your "
    "next step function calls functions from previous steps, please make sure it uses the headers "
    "provided without modification.\n"
    "DO NOT generate EXAMPLE USAGE OR TEST CODE in your response. Please make sure your response python "
    "code in format of ```python```."
)

#: Where a step prompt's own part begins (the simulator keys its answers from here on:
#: :func:`harness.answerkey.fingerprint`).
NEXT_STEP_HEADER = "NEXT STEP - PROBLEM STEP AND FUNCTION HEADER:"

INFO = SuiteInfo(
    name="scicode",
    items=80,
    source=f"scicode-bench/SciCode problems (--data); targets {TEST_DATA.repo_id}@{TEST_DATA.revision[:8]}",
    license="Apache-2.0",
    access="open; problems by --data, test_data.h5 from the hub; code runs in the sandbox",
    default_repeats=3,
    description="scientific code in sequential sub-steps (338 scored), tests in a sandbox",
)

_AA_CODE = re.compile(r"(?<=```python\n)((?:\n|.)+?)(?=\n```)")
_ANY_FENCE = re.compile(r"```[^\n]*\n((?:\n|.)*?)\n?```")
_IMPORT_LINE = re.compile(r"^\s*(import .*|from .*\s+import\s+.*)", re.MULTILINE)
_HEADER_NAME = re.compile(r"\b(?:def|class)\s+(\w+)\s*\(")

#: What the sandbox gets besides the step's script: the helpers SciCode's tests import, the harness's
#: own implementations (upstream's package is not installed there).
_PARSE_HELPER = '''\
"""process_hdf5_to_tuple: the targets of one step, read from the targets.h5 beside this run."""
import h5py
import scipy.sparse


def _value(obj):
    value = obj[()]
    return value.decode("utf-8", errors="strict") if isinstance(value, bytes) else value


def _sparse(group):
    data, shape = group["data"][()], tuple(group["shape"][()])
    if "row" in group and "col" in group:
        return scipy.sparse.coo_matrix((data, (group["row"][()], group["col"][()])), shape=shape)
    if "blocksize" in group:
        return scipy.sparse.bsr_matrix(
            (data, group["indices"][()], group["indptr"][()]),
            shape=shape,
            blocksize=tuple(group["blocksize"][()]),
        )
    return scipy.sparse.csr_matrix((data, group["indices"][()], group["indptr"][()]), shape=shape)


def _dict(group):
    out = {}
    for key, obj in group.items():
        if isinstance(obj, h5py.Group):
            out[key] = _sparse(obj["sparse_matrix"])
            continue
        value = _value(obj)
        try:
            out[float(key)] = value
        except ValueError:
            out[key] = value
    return out


def _group(group):
    keys = list(group.keys())
    if keys and keys[0] == "list":
        return [_value(group["list"][k]) for k in group["list"].keys()]
    if keys and keys[0] == "sparse_matrix":
        return _sparse(group["sparse_matrix"])
    return _dict(group)


def _entry(obj):
    return _value(obj) if isinstance(obj, h5py.Dataset) else _group(obj)


def process_hdf5_to_tuple(step_id, test_num, h5py_file="targets.h5"):
    out = []
    with h5py.File(h5py_file, "r") as f:
        for k in range(test_num):
            path = f"{step_id}/test{k + 1}"
            if path not in f:
                raise FileNotFoundError(f"Path {path} not found in the file.")
            node = f[path]
            if not isinstance(node, h5py.Group):
                raise FileNotFoundError(f"Path {path} not found in the file.")
            names = list(node.keys())
            if len(names) == 1:
                out.append(_entry(node[names[0]]))
            else:
                out.append(tuple(_entry(node[name]) for name in names))
    return out
'''

_CMP_HELPER = '''\
"""Comparisons SciCode's tests import (cmp_tuple_or_list, are_dicts_close, are_csc_matrix_close)."""
import numpy as np
import scipy.sparse


def are_csc_matrix_close(a, b, rtol=1e-05, atol=1e-08):
    a, b = scipy.sparse.csc_matrix(a), scipy.sparse.csc_matrix(b)
    return a.shape == b.shape and np.allclose(a.toarray(), b.toarray(), rtol=rtol, atol=atol)


def _close(a, b):
    if scipy.sparse.issparse(a) or scipy.sparse.issparse(b):
        return are_csc_matrix_close(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return are_dicts_close(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return cmp_tuple_or_list(a, b)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    try:
        return bool(np.allclose(a, b))
    except (TypeError, ValueError):
        return a == b


def are_dicts_close(a, b, rtol=1e-05, atol=1e-08):
    def norm(d):
        return {str(k) if not isinstance(k, str) else k: v for k, v in d.items()}

    a, b = norm(a), norm(b)
    if a.keys() != b.keys():
        return False
    return all(_close(a[k], b[k]) for k in a)


def cmp_tuple_or_list(a, b):
    if len(a) != len(b):
        return False
    return all(_close(x, y) for x, y in zip(a, b))
'''

_SANDBOX_PACKAGE = {
    "scicode/__init__.py": "",
    "scicode/parse/__init__.py": "",
    "scicode/parse/parse.py": _PARSE_HELPER,
    "scicode/compare/__init__.py": "",
    "scicode/compare/cmp.py": _CMP_HELPER,
}


@dataclass(frozen=True, slots=True)
class Step:
    """One sub-step of a problem, as the rows give it."""

    number: str
    description: str
    background: str
    function_header: str
    return_line: str
    test_cases: tuple[str, ...]
    gold_code: str = ""
    """The supplied code of a step in :data:`GOLD_STEPS` (never asked, never scored)."""

    @property
    def scored(self) -> bool:
        return self.number not in GOLD_STEPS

    @property
    def function_name(self) -> str | None:
        m = _HEADER_NAME.search(self.function_header)
        return m.group(1) if m else None


def extract_code(text: str) -> str | None:
    """The code of an answer: its first ``python`` fenced block (AA's regex), else its first fenced
    block; import lines removed (upstream's ``extract_python_script``). None: no code."""
    m = _AA_CODE.search(text)
    code = m.group(1) if m else None
    if code is None:
        m2 = _ANY_FENCE.search(text)
        code = m2.group(1) if m2 else None
    if code is None or not code.strip():
        return None
    return _IMPORT_LINE.sub("", code)


def function_code(code: str | None, name: str | None) -> str:
    """The definition named ``name`` in ``code`` (what a later step's prompt shows of an earlier
    step, as upstream's ``get_function_from_code``); the whole code when it does not parse; empty
    when there is no code or no such definition."""
    if not code:
        return ""
    if name is None:
        return code
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return ast.unparse(node)
    return ""


class SciCodeSuite(BaseSuite):
    """SciCode problems: one item per main problem, its sub-steps a chain of calls."""

    def __init__(
        self,
        items: Sequence[Item],
        source: str,
        *,
        test_data: Path | None,
        sandbox_level: str,
        with_background: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(INFO.name, INFO.default_repeats, items, source)
        self.test_data = test_data
        """The targets file (None: no scoring possible, the suite is loaded for estimates only)."""
        self.sandbox_level = sandbox_level
        self.with_background = with_background
        self.timeout_s = timeout_s

    # -- what the runner asks -----------------------------------------------------------------------

    def steps(self, item: Item) -> tuple[Step, ...]:
        steps: tuple[Step, ...] = item.data["steps"]
        return steps

    def asked(self, item: Item) -> list[int]:
        """Indexes (0-based) of the steps the model is asked (every step but the supplied ones)."""
        return [i for i, s in enumerate(self.steps(item)) if s.scored]

    def target(self, item: Item, step: Step) -> str:
        """What a step prompt records as its target: nothing (the tests decide; subclasses in tests
        put a scripted answer here for the simulator to answer with)."""
        return ""

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """The problem's first call (its first asked step); the same for every repeat."""
        return self.step_prompt(self._base(item), 0, [])

    def _base(self, item: Item) -> Prompt:
        return Prompt(messages=(), target="", answer_format="text", meta={"item_id": item.id})

    def step_count(self, prompt: Prompt) -> int:
        return len(self.asked(self.item(str(prompt.meta["item_id"]))))

    def step_prompt(self, prompt: Prompt, step: int, answers: Sequence[str]) -> Prompt:
        """The prompt of asked step ``step`` (0-based) given the model's answers to the earlier ones."""
        item = self.item(str(prompt.meta["item_id"]))
        steps = self.steps(item)
        asked = self.asked(item)
        if not 0 <= step < len(asked) or len(answers) < step:
            raise ValueError(f"scicode {item.id}: no step {step} after {len(answers)} answers")
        index = asked[step]
        codes = self._previous_code(item, answers[:step])
        text = self._prompt_text(item, index, codes)
        number = steps[index].number
        return Prompt(
            messages=(Message("user", text),),
            target=self.target(item, steps[index]),
            answer_format="text",
            meta={"item_id": item.id, "step": number, "sandbox": self.sandbox_level},
        )

    def key_prompts(self, prompt: Prompt) -> list[Prompt]:
        """Every step prompt of the problem as the simulator's answer key needs them (keyed from
        the next step's part on, which does not depend on the earlier answers)."""
        n = self.step_count(prompt)
        return [self.step_prompt(prompt, k, [""] * k) for k in range(n)]

    def _previous_code(self, item: Item, answers: Sequence[str]) -> list[str]:
        """The code each step before the next asked one contributes: the model's function for an
        asked step, the supplied code for a gold one."""
        steps = self.steps(item)
        out: list[str] = []
        it = iter(answers)
        for s in steps:
            if not s.scored:
                out.append(function_code(s.gold_code, s.function_name))
                continue
            try:
                answer = next(it)
            except StopIteration:
                break
            out.append(function_code(extract_code(answer), s.function_name))
        return out

    def _describe(self, s: Step) -> str:
        return f"{s.description}\n{s.background}" if self.with_background else s.description

    def _prompt_text(self, item: Item, index: int, codes: Sequence[str]) -> str:
        steps = self.steps(item)
        lines: list[str] = []
        for i in range(index):
            lines += [self._describe(steps[i]), codes[i], "------"]
        s = steps[index]
        next_step = "\n\n".join([self._describe(s), f"{s.function_header}\n\n{s.return_line}"])
        return PROMPT_TEMPLATE.format(
            problem_steps_str="\n\n".join(lines[:-1]),
            next_step_str=next_step,
            dependencies=str(item.data["dependencies"]),
        )

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Score a recorded chain (the steps' texts joined by ``STEP_SEPARATOR``, as ``rescore``
        reads it from the item result)."""
        return await self.stepped_score(prompt, [StepAnswer(t, "stop") for t in text.split(STEP_SEPARATOR)])

    async def stepped_score(self, prompt: Prompt, answers: Sequence[StepAnswer]) -> Score:
        """Run each scored step's tests in the sandbox. ``correct``: every scored step passed (the
        main-problem solve); ``meta``: ``steps_passed``/``steps_scored`` and the verdict per step
        (sub-step accuracy). A sandbox that cannot start, or targets that cannot be read, make the
        problem ``unusable``."""
        item = self.item(str(prompt.meta["item_id"]))
        if self.test_data is None:
            return Score("unusable", None, None, "no_test_data")
        steps = self.steps(item)
        texts = [a.text for a in answers]
        codes = self._previous_code(item, texts)
        deps = str(item.data["dependencies"])
        verdicts: dict[str, bool] = {}
        own = iter(texts)
        for index, s in enumerate(steps):
            if not s.scored:
                continue
            answer = next(own, None)
            code = extract_code(answer) if answer is not None else None
            if code is None:
                verdicts[s.number] = False
                continue
            try:
                targets = await anyio.to_thread.run_sync(_step_targets, self.test_data, s.number)
            except (OSError, KeyError, ValueError) as exc:
                return Score("unusable", None, None, "targets_unreadable", {"error": str(exc)[:200]})
            program = "\n".join([deps, *codes[:index], code, "", _test_block(s)])
            files: dict[str, str | bytes] = {**_SANDBOX_PACKAGE, "main.py": program, "targets.h5": targets}
            limits = Limits(timeout_s=self.timeout_s + 5, cpu_s=int(self.timeout_s) + 5, memory_bytes=2 * GIB)
            result = await run_python(files, "main.py", limits=limits)
            if result.launch_error:
                return Score("unusable", None, None, "sandbox_error")
            verdicts[s.number] = result.returncode == 0 and not result.timed_out
        passed = sum(verdicts.values())
        meta = {"steps_passed": passed, "steps_scored": len(verdicts), "step_results": verdicts}
        return Score("scored", passed == len(verdicts), f"steps {passed}/{len(verdicts)}", None, meta)


def _test_block(s: Step) -> str:
    lines = [
        "from scicode.parse.parse import process_hdf5_to_tuple",
        f"targets = process_hdf5_to_tuple({s.number!r}, {len(s.test_cases)})",
    ]
    for i, test in enumerate(s.test_cases):
        lines += [f"target = targets[{i}]", test]
    return "\n".join(lines) + "\n"


def _step_targets(test_data: Path, number: str) -> bytes:
    """A small HDF5 file holding only step ``number``'s groups of ``test_data``."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(test_data, "r") as src, h5py.File(buf, "w") as dst:
        if number not in src:
            raise KeyError(f"{test_data}: no targets for step {number}")
        src.copy(src[number], dst, name=number)
    return buf.getvalue()


# -- loading --------------------------------------------------------------------------------------

_SCHEMA = "SciCode (problem_id, required_dependencies, sub_steps)"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _steps(row: Row, gold_dir: Path | None) -> tuple[Step, ...]:
    raw = row.require("sub_steps", schema=_SCHEMA)
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{row.where}: sub_steps must be a non-empty list")
    out: list[Step] = []
    for j, s in enumerate(raw, 1):
        if not isinstance(s, Mapping):
            raise DataError(f"{row.where}: sub_steps[{j}] is not an object")
        number = _text(s.get("step_number")).strip()
        if not number or not _text(s.get("function_header")).strip():
            raise DataError(f"{row.where}: sub_steps[{j}] needs step_number and function_header")
        tests: Any = s.get("test_cases")
        if hasattr(tests, "tolist"):
            tests = tests.tolist()
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise DataError(f"{row.where}: step {number}: test_cases must be a list of strings")
        gold = ""
        if number in GOLD_STEPS:
            gold = _text(s.get("ground_truth_code"))
            if not gold.strip() and gold_dir is not None:
                path = gold_dir / f"{number}.txt"
                if not path.is_file():
                    raise DataError(f"scicode: {path} is missing (the supplied code of step {number})")
                gold = path.read_text(encoding="utf-8")
            if not gold.strip():
                raise DataError(
                    f"{row.where}: step {number} comes with its code, which this row does not carry: "
                    f"pass --suite-option gold=DIR (SciCode's eval/data holding {number}.txt)"
                )
        out.append(
            Step(
                number=number,
                description=_text(s.get("step_description_prompt")),
                background=_text(s.get("step_background")),
                function_header=_text(s.get("function_header")),
                return_line=_text(s.get("return_line")),
                test_cases=tuple(tests),
                gold_code=gold,
            )
        )
    return tuple(out)


def _paths(data: Path) -> list[Path]:
    path = data.expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jsonl", ".parquet"))
        if not found:
            raise DataError(f"{path}: no SciCode problems file (problems_test.jsonl, problems_dev.jsonl)")
        return found
    raise DataError(f"{path}: no such file or directory")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load(
    *,
    data: Path | None = None,
    offline: bool | None = None,
    options: Mapping[str, str] | None = None,
    need_targets: bool = True,
) -> SciCodeSuite:
    """Load SciCode's problems from ``data`` and find its targets file.

    Args:
        data: ``problems_test.jsonl``/``problems_dev.jsonl`` (or parquet), or a directory of them.
        options: module docs.
        need_targets: False: load the problems without ``test_data.h5`` (estimates).

    Raises:
        ConfigError: bad options, or a machine that cannot isolate model code.
        DataError: no ``--data``, malformed rows, a targets file whose SHA-256 is not the pin's.
    """
    from .livecodebench import require_isolation

    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"scicode: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    try:
        timeout_s = float(opts.get("timeout", DEFAULT_TIMEOUT_S))
    except ValueError:
        raise ConfigError(f"scicode: timeout must be a number of seconds, got {opts['timeout']!r}") from None
    if timeout_s <= 0:
        raise ConfigError("scicode: timeout must be positive")
    level = require_isolation(INFO.name, _truthy(opts.get("unsafe_sandbox", "false")))
    if need_targets:
        _require_sandbox_modules()
    if data is None:
        raise DataError(
            "scicode needs its problems: pass --data with SciCode's problems_test.jsonl and "
            "problems_dev.jsonl (github.com/scicode-bench/SciCode eval/data), or a directory holding both"
        )
    gold_dir = Path(opts["gold"]).expanduser() if opts.get("gold") else None
    items: list[Item] = []
    seen: dict[str, str] = {}
    for path in _paths(data):
        for row in read_rows(path):
            pid = _text(row.require("problem_id", schema=_SCHEMA)).strip()
            if pid in seen:
                raise DataError(f"{row.where}: duplicate problem_id {pid!r} (first at {seen[pid]})")
            seen[pid] = row.where
            steps = _steps(row, gold_dir)
            split = "dev" if "dev" in path.name else "test"
            data_ = {
                "steps": steps,
                "dependencies": _text(row.get("required_dependencies")),
                "name": _text(row.get("problem_name")),
                "split": split,
            }
            items.append(Item(pid, _text(row.get("problem_description_main")), "", split, data_))
    if not items:
        raise DataError(f"scicode: no problem in {data}")
    test_data = _test_data(opts, offline) if need_targets else None
    return SciCodeSuite(
        items,
        str(data),
        test_data=test_data,
        sandbox_level=level,
        with_background=_truthy(opts.get("with_background", "true")),
        timeout_s=timeout_s,
    )


def _test_data(opts: Mapping[str, str], offline: bool | None) -> Path:
    want = opts.get("test_data_sha256", TEST_DATA.sha256 or "").strip().lower()
    if "test_data" not in opts:
        return fetch_hub_file(INFO.name, TEST_DATA, offline=offline)
    path = Path(opts["test_data"]).expanduser()
    if not path.is_file():
        raise DataError(f"scicode: test_data {path}: no such file")
    if want != "any":
        got = file_sha256(path)
        if got != want:
            raise DataError(
                f"scicode: {path} has SHA-256 {got}, the pin says {want}: not SciCode's test_data.h5; "
                "use the pinned file, or pass --suite-option test_data_sha256=any (or its hash) for a "
                "copy you made yourself"
            )
    return path


#: What SciCode's tests import inside the sandbox.
SANDBOX_MODULES = ("numpy", "scipy", "sympy", "h5py")


@lru_cache(maxsize=1)
def _sandbox_missing() -> tuple[str, ...]:
    """The modules of :data:`SANDBOX_MODULES` the sandbox's interpreter cannot find (probed once)."""
    probe = "import importlib.util\nprint(' '.join(m for m in %r if importlib.util.find_spec(m) is None))\n"
    result = run_python_sync({"probe.py": probe % (SANDBOX_MODULES,)}, "probe.py")
    if not result.ok:
        why = result.launch_error or result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise ConfigError(f"scicode: the sandbox could not run its interpreter ({why})")
    return tuple(result.stdout.decode("utf-8", "replace").split())


def _require_sandbox_modules() -> None:
    """Refuse a run whose every step would fail on an import (scored 0, silently).

    Raises:
        ConfigError: naming the modules missing and the fixes.
    """
    missing = _sandbox_missing()
    if missing:
        from harness.sandbox import isolation

        raise ConfigError(
            f"scicode: the sandbox's python ({isolation().python}) cannot import {', '.join(missing)}, "
            "which SciCode's tests need: install them there (pip install 'tollbench[scicode]') or set "
            "TOLLBENCH_SANDBOX_PYTHON to an interpreter that has them (tollbench sandbox check)"
        )
