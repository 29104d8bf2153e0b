"""``aime2024`` and ``aime2025``: the 30 problems of each year's AIME I and II.

Sources (pinned): AIME 2024 from ``Maxwell-Jia/AIME_2024`` (the copy Inspect uses; it carries fixes
to three problems), AIME 2025 from ``math-ai/aime25``. Local files may also be in the schema of
``HuggingFaceH4/aime_2024`` (``id, problem, solution, answer, url, year``) or
``AI-MO/aimo-validation-aime`` (filtered to the suite's year by ``url``).

Prompt and extraction: AA v2 boxed template. Scoring: the answer is an integer 0-999, compared as an
integer (``007`` = 7) on the fast path; anything else (``\\frac{14}{2}``) goes to math-verify.
Default repeats: 10 (AA v2). Strata: the exam (``I``/``II``) where the data says which, else the year.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.suite import Item

from .base import MathSuite, SuiteInfo
from .extract import parse_integer
from .loaders import HubSource, Row, load_rows, unique_ids

__all__ = ["INFO_2024", "INFO_2025", "SOURCES", "AimeSuite", "load"]

SOURCES: dict[int, HubSource] = {
    2024: HubSource(
        repo_id="Maxwell-Jia/AIME_2024",
        filename="aime_2024_problems.parquet",
        revision="8d88b2876a82a080e2f172cc9b25d0d9d2cb4792",
        schema="Maxwell-Jia/AIME_2024 (ID, Problem, Answer) or HuggingFaceH4/aime_2024",
    ),
    2025: HubSource(
        repo_id="math-ai/aime25",
        filename="test.jsonl",
        revision="563bb8404243c5f09de6ec262f2db674fe5bce9b",
        schema="math-ai/aime25 (id, problem, answer)",
        sha256="b4e273c02d3e7fe1b74b59eae768fc8230bfb0f79539890cb56f4361caac0331",
        size=15_813,
    ),
}

INFO_2024 = SuiteInfo(
    name="aime2024",
    items=30,
    source=f"{SOURCES[2024].repo_id} (train split, {SOURCES[2024].filename})",
    license="MIT on the packaging; problems (c) MAA",
    access="open",
    default_repeats=10,
    description="AIME 2024 I and II, integer answers 0-999",
)
INFO_2025 = SuiteInfo(
    name="aime2025",
    items=30,
    source=f"{SOURCES[2025].repo_id} (test split, {SOURCES[2025].filename})",
    license="Apache-2.0 on the packaging; problems (c) MAA",
    access="open",
    default_repeats=10,
    description="AIME 2025 I and II, integer answers 0-999",
)

_EXAM_IN_ID = re.compile(r"(20\d\d)[-_ ]?(?:AIME[-_ ]?)?(II|I)\b[-_ ]?(\d+)?", re.IGNORECASE)
_URL_YEAR = re.compile(r"/(20\d\d)_AIME_(II|I)_Problems/Problem_(\d+)", re.IGNORECASE)


class AimeSuite(MathSuite):
    """An AIME year; the target is the integer answer without leading zeros."""

    def target(self, item: Item) -> str:
        value = parse_integer(item.answer)
        return str(value) if value is not None else item.answer.strip()

    def meta(self, item: Item) -> dict[str, Any]:
        return {"year": item.data.get("year"), "exam": item.data.get("exam")}


def _year_and_exam(row: Row) -> tuple[int | None, str]:
    """The year and exam (``I``/``II``) the row states, from ``year``, ``url`` or the id."""
    year: int | None = None
    exam = ""
    url = row.get("url")
    if isinstance(url, str):
        m = _URL_YEAR.search(url)
        if m:
            year, exam = int(m.group(1)), m.group(2).upper()
    raw_id = row.get("ID", "id")
    if isinstance(raw_id, str) and not exam:
        m = _EXAM_IN_ID.search(raw_id)
        if m:
            year, exam = int(m.group(1)), m.group(2).upper()
    raw_year = row.get("year", "Year")
    if raw_year is not None and str(raw_year).strip().isdigit():
        year = int(str(raw_year).strip())
    return year, exam


def load(year: int, *, data: Path | None = None, offline: bool | None = None) -> AimeSuite:
    """Load AIME ``year`` (2024 or 2025) from ``data`` or the hub at the pinned revision.

    Rows that state another year (``year`` column, AoPS ``url``, or an id like ``2023-I-4``) are
    skipped, so the 90-row ``AI-MO/aimo-validation-aime`` file works as ``--data`` too.

    Raises:
        DataError: missing data, a row without problem/answer, a non-integer answer, or no row of
            that year.
    """
    info = INFO_2024 if year == 2024 else INFO_2025
    source = SOURCES[year]
    rows, where = load_rows(info.name, data=data, source=source, offline=offline)
    items: list[Item] = []
    kept: list[Row] = []
    for i, row in enumerate(rows, 1):
        row_year, exam = _year_and_exam(row)
        if row_year is not None and row_year != year:
            continue
        question = str(row.require("Problem", "problem", "question", schema=source.schema))
        answer = row.require("Answer", "answer", schema=source.schema)
        value = parse_integer(str(answer))
        if value is None:
            raise DataError(f"{row.where}: AIME answers are integers, got {answer!r}")
        raw_id = row.get("ID", "id")
        item_id = str(raw_id) if raw_id is not None and str(raw_id).strip() else f"{year}-{i}"
        stratum = exam or str(year)
        items.append(Item(item_id, question, str(value), stratum, {"year": year, "exam": exam or None}))
        kept.append(row)
    if not items:
        raise DataError(f"{where}: no AIME {year} rows (check the file's year/url/ID columns)")
    unique_ids([it.id for it in items], [r.where for r in kept])
    return AimeSuite(info.name, info.default_repeats, items, where)
