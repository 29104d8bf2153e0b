"""``gpqa-diamond``: GPQA Diamond (Idavidrein/gpqa, ``gpqa_diamond.csv``), 198 four-option questions.

The dataset is gated (accept its terms on the hub; it asks that examples are never revealed online,
so only synthetic fixtures live in this repository). The correct answer is always the column
``Correct Answer``, so the options **must** be shuffled: as simple-evals does, each rendering draws
a permutation of the four answers, here from a seed derived from ``(run seed, item id, repeat)``.
The permutation and that shuffle seed are recorded in ``Prompt.meta``, and ``Prompt.target`` is the
letter where the correct answer landed, so the simulator's answer key and the scorer follow it.

Prompt: simple-evals' GPQA instruction (``'Answer: $LETTER' ... one of ABCD. Think step by step``).
Extraction: the AA ``Answer: X`` pattern with fallbacks; exact letter scoring. Default repeats: 5
(NVIDIA's AA-v2 config). Strata: high-level domain (Physics, Chemistry, Biology).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from harness.suite import Item

from .base import MC_INSTRUCTION_SIMPLE_EVALS, ChoiceSuite, SuiteInfo, derive_seed
from .loaders import HubSource, load_rows, unique_ids

__all__ = ["INFO", "SOURCE", "GpqaSuite", "load", "shuffle_for"]

SOURCE = HubSource(
    repo_id="Idavidrein/gpqa",
    filename="gpqa_diamond.csv",
    revision="83022cefff930aea54f654c0b282e74b9eeda5c6",
    schema="Idavidrein/gpqa gpqa_diamond.csv (Question, Correct Answer, Incorrect Answer 1-3, Record ID)",
    gated=True,
    # The same bytes as simple-evals' ungated copy, which Inspect pins by this hash (BENCHMARKS.md 13).
    sha256="41d1213cd7a4998605a26c2798500652572007161b3a92817ba46b35befcd305",
    size=1_373_492,
)

INFO = SuiteInfo(
    name="gpqa-diamond",
    items=198,
    source=f"{SOURCE.repo_id} (gpqa_diamond, train split, {SOURCE.filename})",
    license="CC-BY-4.0; do not reveal examples online",
    access=(
        "gated: accept the terms on huggingface.co/datasets/Idavidrein/gpqa, then `hf auth login` or HF_TOKEN"
    ),
    default_repeats=5,
    description="graduate-level science, four options shuffled per repeat",
)

_COLUMNS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def shuffle_for(seed: int, item_id: str, repeat: int) -> tuple[int, list[int]]:
    """The shuffle seed and permutation for one rendering.

    ``permutation[k]`` is the index (0 = correct, 1-3 = incorrect 1-3) of the answer shown as the
    ``k``-th option, as simple-evals' ``rng.sample(range(4), 4)``.
    """
    shuffle_seed = derive_seed("gpqa-diamond", seed, item_id, repeat)
    return shuffle_seed, random.Random(shuffle_seed).sample(range(4), 4)


class GpqaSuite(ChoiceSuite):
    """GPQA Diamond with per-(seed, item, repeat) option shuffling."""

    instruction = MC_INSTRUCTION_SIMPLE_EVALS

    def options(self, item: Item, repeat: int, seed: int) -> tuple[list[str], int, dict[str, Any]]:
        answers: list[str] = list(item.data["answers"])
        shuffle_seed, permutation = shuffle_for(seed, item.id, repeat)
        shown = [answers[k] for k in permutation]
        return shown, permutation.index(0), {"shuffle_seed": shuffle_seed, "permutation": permutation}


def load(*, data: Path | None = None, offline: bool | None = None) -> GpqaSuite:
    """Load GPQA Diamond from ``data`` (the CSV, or JSONL/parquet with the same columns) or the hub.

    Raises:
        DataError: missing data; no access to the gated dataset (the message says how to get it);
            a row without the question or one of the four answers.
    """
    rows, where = load_rows(INFO.name, data=data, source=SOURCE, offline=offline)
    items: list[Item] = []
    for i, row in enumerate(rows, 1):
        question = str(row.require("Question", schema=SOURCE.schema)).strip()
        answers = [str(row.require(col, schema=SOURCE.schema)).strip() for col in _COLUMNS]
        raw_id = row.get("Record ID")
        item_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else f"row-{i}"
        domain = str(row.get("High-level domain") or "").strip()
        items.append(
            Item(
                item_id,
                question,
                answers[0],
                domain,
                {"answers": answers, "domain": domain, "subdomain": row.get("Subdomain")},
            )
        )
    unique_ids([it.id for it in items], [r.where for r in rows])
    return GpqaSuite(INFO.name, INFO.default_repeats, items, where)
