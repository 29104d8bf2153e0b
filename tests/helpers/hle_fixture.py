"""HLE rows of the tests' own making, in the ``cais/hle`` schema (no real item)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def row(i: int, *, image: str = "") -> dict[str, Any]:
    return {
        "id": f"fx{i}",
        "question": f"Fixture: what is {i} plus {i}?",
        "image": image,
        "image_preview": None,
        "answer": str(2 * i),
        "answer_type": "exactMatch" if i % 2 else "multipleChoice",
        "author_name": "fixture",
        "rationale": "",
        "rationale_image": None,
        "raw_subject": "Arithmetic",
        "category": "Math" if i % 3 else "Other",
        "canary": "<fixture canary>",
    }


def write(path: Path, n: int = 6, images: int = 1) -> Path:
    rows = [row(i) for i in range(n)]
    rows += [row(100 + i, image="data:image/png;base64,iVBORw0K") for i in range(images)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
