"""``math500``: MATH-500 (HuggingFaceH4/MATH-500), the 500-problem test subset of MATH from PRM800K.

Prompt and extraction: Artificial Analysis v2 (the boxed template; the last ``\\boxed{}`` is the
answer). Scoring: math equivalence with math-verify (fractions vs decimals, sets, intervals, degrees
and units), after an exact fast path. Default repeats: 3 (AA v2). Strata: the seven MATH subjects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.suite import Item

from .base import MathSuite, SuiteInfo
from .loaders import HubSource, load_rows, unique_ids

__all__ = ["INFO", "SOURCE", "Math500Suite", "load"]

SOURCE = HubSource(
    repo_id="HuggingFaceH4/MATH-500",
    filename="test.jsonl",
    revision="6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be",
    schema="HuggingFaceH4/MATH-500",
    sha256="35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
    size=446_564,
)

INFO = SuiteInfo(
    name="math500",
    items=500,
    source=f"{SOURCE.repo_id} (test split, {SOURCE.filename})",
    license="MIT (PRM800K); the card declares none",
    access="open",
    default_repeats=3,
    description="competition math, LaTeX answers, math-verify equivalence",
)


class Math500Suite(MathSuite):
    """MATH-500 items; ``meta`` records subject and level."""

    def meta(self, item: Item) -> dict[str, Any]:
        return {"subject": item.data.get("subject"), "level": item.data.get("level")}


def load(*, data: Path | None = None, offline: bool | None = None) -> Math500Suite:
    """Load MATH-500 from ``data`` (``problem``, ``answer``, ``subject``, ``level``, ``unique_id``)
    or from the hub at the pinned revision.

    Raises:
        DataError: missing data, or a row without ``problem``/``answer`` (with its line).
    """
    rows, source = load_rows(INFO.name, data=data, source=SOURCE, offline=offline)
    items: list[Item] = []
    for i, row in enumerate(rows, 1):
        question = str(row.require("problem", schema=SOURCE.schema))
        answer = row.require("answer", schema=SOURCE.schema)
        subject = str(row.get("subject") or "")
        level = row.get("level")
        if level is not None and not isinstance(level, int):
            try:
                level = int(str(level).removeprefix("Level ").strip())
            except ValueError:
                raise DataError(f"{row.where}: level must be an integer 1-5, got {level!r}") from None
        item_id = str(row.get("unique_id") or f"row-{i}")
        items.append(Item(item_id, question, str(answer), subject, {"subject": subject, "level": level}))
    unique_ids([it.id for it in items], [r.where for r in rows])
    return Math500Suite(INFO.name, INFO.default_repeats, items, source)
