"""LiveCodeBench rows of the tests' own making, in the raw ``code_generation_lite`` schema."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path
from typing import Any


def encode_private(tests: list[dict[str, str]]) -> str:
    """Upstream's encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def stdin_row(qid: str, date: str, *, private: str | None = None, title: str = "Add") -> dict[str, Any]:
    public = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    hidden = [
        {"input": "10 20\n", "output": "30\n", "testtype": "stdin"},
        {"input": "-5 5\n", "output": "0\n", "testtype": "stdin"},
    ]
    return {
        "question_title": title,
        "question_content": f"Read a and b, print a+b. ({qid})",
        "platform": "atcoder",
        "question_id": qid,
        "contest_id": "fx",
        "contest_date": date,
        "starter_code": "",
        "difficulty": "easy",
        "public_test_cases": json.dumps(public),
        "private_test_cases": private if private is not None else encode_private(hidden),
        "metadata": "{}",
    }


def functional_row(qid: str, date: str) -> dict[str, Any]:
    public = [{"input": "1\n2", "output": "3", "testtype": "functional"}]
    hidden = [
        {"input": "[1, 2]\n[3]", "output": "[1, 2, 3]", "testtype": "functional"},
    ]
    return {
        "question_title": "Join",
        "question_content": f"Return a+b. ({qid})",
        "platform": "leetcode",
        "question_id": qid,
        "contest_id": "fx-weekly",
        "contest_date": date,
        "starter_code": "class Solution:\n    def add(self, a, b):\n        ",
        "difficulty": "medium",
        "public_test_cases": json.dumps(public),
        "private_test_cases": json.dumps(hidden),  # the plain-JSON form
        "metadata": json.dumps({"func_name": "add"}),
    }


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def window_rows() -> list[dict[str, Any]]:
    """Six rows: four in the default window (both ends included), two outside."""
    return [
        stdin_row("fx_in_start", "2024-07-01T00:00:00"),
        functional_row("fx_fn", "2024-09-15T12:30:00"),
        stdin_row("abc311_c", "2024-10-01T00:00:00"),  # an ERRATA id: tagged
        stdin_row("fx_in_end", "2025-01-01T00:00:00"),
        stdin_row("fx_before", "2024-06-30T23:59:00"),
        stdin_row("fx_after", "2025-01-01T12:00:00"),  # after midnight of the end day: out, as upstream
    ]
