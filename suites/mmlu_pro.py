"""``mmlu-pro``: MMLU-Pro (TIGER-Lab/MMLU-Pro), 12,032 ten-option multiple-choice questions.

Prompt: AA v2 zero-shot (instruction, question, ``A) ...`` one option per line). Rows with fewer
than ten options show only the options they have, and the instruction lists only those letters
(NVIDIA's reproduction prints ``None`` for missing options; BENCHMARKS.md calls that a pitfall).
Extraction: the AA ``Answer: X`` pattern (letters up to J) with a short fallback cascade; scoring by
exact letter. Default repeats: 1 (AA v2). Strata: the 14 categories.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DataError
from harness.suite import Item

from .base import ChoiceSuite, SuiteInfo
from .extract import LETTERS
from .loaders import HubSource, column_list, load_rows, unique_ids

__all__ = ["INFO", "SOURCE", "MmluProSuite", "load"]

SOURCE = HubSource(
    repo_id="TIGER-Lab/MMLU-Pro",
    filename="data/test-00000-of-00001.parquet",
    revision="527feea0afed1de15a8c115abf7be4c912123315",
    schema="TIGER-Lab/MMLU-Pro (question_id, question, options, answer, answer_index, category)",
)

INFO = SuiteInfo(
    name="mmlu-pro",
    items=12032,
    source=f"{SOURCE.repo_id} (test split, {SOURCE.filename})",
    license="MIT",
    access="open",
    default_repeats=1,
    description="14 subjects, up to ten options (A-J), letter scoring",
)

_MAX_OPTIONS = 10


class MmluProSuite(ChoiceSuite):
    """MMLU-Pro: options in the dataset's order, the gold letter from ``answer``."""


def load(*, data: Path | None = None, offline: bool | None = None) -> MmluProSuite:
    """Load MMLU-Pro from ``data`` (parquet, JSONL or CSV with ``options`` as a list or JSON array)
    or from the hub at the pinned revision.

    Raises:
        DataError: missing data, a row without question/options/answer, fewer than two or more than
            ten options, or a gold letter that is not among the row's options.
    """
    rows, where = load_rows(INFO.name, data=data, source=SOURCE, offline=offline)
    items: list[Item] = []
    for i, row in enumerate(rows, 1):
        question = str(row.require("question", schema=SOURCE.schema))
        raw_options = column_list(row.require("options", schema=SOURCE.schema))
        if raw_options is None:
            raise DataError(f"{row.where}: options must be a list (or a JSON array in CSV)")
        # Padding at the end (None or empty) is dropped; the gold letter indexes the rest unchanged.
        while raw_options and (raw_options[-1] is None or not str(raw_options[-1]).strip()):
            raw_options.pop()
        options = ["" if o is None else str(o) for o in raw_options]
        if not 2 <= len(options) <= _MAX_OPTIONS:
            raise DataError(f"{row.where}: expected 2 to {_MAX_OPTIONS} options, got {len(options)}")
        answer = row.get("answer")
        letter = str(answer).strip().upper() if answer is not None else ""
        if not letter:
            index = row.get("answer_index")
            if index is None or not str(index).strip().lstrip("-").isdigit():
                raise DataError(f"{row.where}: missing field 'answer' (expected the {SOURCE.schema} schema)")
            idx = int(str(index).strip())
            letter = LETTERS[idx] if 0 <= idx < len(LETTERS) else "?"
        if letter not in LETTERS[: len(options)]:
            raise DataError(
                f"{row.where}: answer {letter!r} is not one of the row's {len(options)} options "
                f"(A-{LETTERS[len(options) - 1]})"
            )
        category = str(row.get("category") or "")
        raw_id = row.get("question_id")
        item_id = str(raw_id) if raw_id is not None and str(raw_id).strip() else f"row-{i}"
        items.append(Item(item_id, question, letter, category, {"options": options, "category": category}))
    unique_ids([it.id for it in items], [r.where for r in rows])
    return MmluProSuite(INFO.name, INFO.default_repeats, items, where)
