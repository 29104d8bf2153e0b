"""SciCode problems of the tests' own making, in SciCode's schema (no real problem), and a small
``test_data.h5`` in its layout made with h5py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEPS = "import numpy as np"


def _step(number: str, prompt: str, header: str, ret: str, tests: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "step_number": number,
        "step_description_prompt": prompt,
        "step_background": f"Background: fixture step {number}.",
        "function_header": header,
        "test_cases": tests,
        "return_line": ret,
        **extra,
    }


def problems() -> list[dict[str, Any]]:
    return [
        {
            "problem_name": "fixture_doubling",
            "problem_id": "fx1",
            "problem_description_main": "Fixture: double a number, then double it twice.",
            "problem_io": "x: float",
            "required_dependencies": DEPS,
            "sub_steps": [
                _step(
                    "fx1.1",
                    "Return twice x.",
                    "def double(x):\n    '''Twice x.'''",
                    "    return y",
                    ["assert np.allclose(double(2.0), target)", "assert np.allclose(double(3.0), target)"],
                ),
                _step(
                    "fx1.2",
                    "Return four times x using double.",
                    "def quad(x):\n    '''Four times x.'''",
                    "    return y",
                    ["assert np.allclose(quad(1.5), target)"],
                ),
            ],
            "general_tests": ["assert np.allclose(quad(1.0), target)"],
            "problem_background_main": "",
        },
        {
            "problem_name": "fixture_pairs",
            "problem_id": "fx2",
            "problem_description_main": "Fixture: sums and differences, then a norm.",
            "problem_io": "a, b: int",
            "required_dependencies": DEPS,
            "sub_steps": [
                _step(
                    "fx2.1",
                    "Return (a + b, a - b).",
                    "def pair(a, b):\n    '''Sum and difference.'''",
                    "    return s, d",
                    [
                        "from scicode.compare.cmp import cmp_tuple_or_list\n"
                        "assert cmp_tuple_or_list(pair(3, 1), target)"
                    ],
                ),
                _step(
                    "fx2.2",
                    "Return the Euclidean norm of v.",
                    "def norm(v):\n    '''Length of v.'''",
                    "    return n",
                    ["assert np.allclose(norm(np.array([3.0, 4.0])), target)"],
                ),
            ],
            "general_tests": [],
            "problem_background_main": "",
        },
        {
            "problem_name": "fixture_supplied",
            "problem_id": "62",
            "problem_description_main": "Fixture: a step that comes with its code, then one using it.",
            "problem_io": "xs: list",
            "required_dependencies": DEPS,
            "sub_steps": [
                _step(
                    "62.1",
                    "Add ten to x.",
                    "def offset(x):\n    '''x + 10.'''",
                    "    return y",
                    [],
                    ground_truth_code="def offset(x):\n    return x + 10",
                ),
                _step(
                    "62.2",
                    "Sum offset(x) over xs.",
                    "def shifted_sum(xs):\n    '''Sum of offsets.'''",
                    "    return total",
                    ["assert np.allclose(shifted_sum([1, 2]), target)"],
                ),
            ],
            "general_tests": [],
            "problem_background_main": "",
        },
    ]


#: Scripted answers per step: right ones, and one wrong (fx2.1).
RIGHT = {
    "fx1.1": "def double(x):\n    return 2 * x",
    "fx1.2": "def quad(x):\n    return double(double(x))",
    "fx2.1": "def pair(a, b):\n    return a, b",  # wrong: (3, 1), not (4, 2)
    "fx2.2": "def norm(v):\n    return float(np.sqrt((v ** 2).sum()))",
    "62.2": "def shifted_sum(xs):\n    return sum(offset(x) for x in xs)",
}


def answer(number: str, code: str | None = None) -> str:
    """A model answer for step ``number`` in the template's format."""
    body = RIGHT[number] if code is None else code
    return f"```python\n# Background: fixture step {number}.\nimport numpy as np\n{body}\n```"


def write_problems(path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    rows = problems() if rows is None else rows
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_h5(path: Path) -> Path:
    """Targets in test_data.h5's layout: ``/{step}/test{k}/var{j}`` (two vars make a tuple)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("fx1.1/test1/var1", data=4.0)
        f.create_dataset("fx1.1/test2/var1", data=6.0)
        f.create_dataset("fx1.2/test1/var1", data=6.0)
        f.create_dataset("fx2.1/test1/var1", data=4)
        f.create_dataset("fx2.1/test1/var2", data=2)
        f.create_dataset("fx2.2/test1/var1", data=5.0)
        f.create_dataset("62.2/test1/var1", data=23.0)
    return path
