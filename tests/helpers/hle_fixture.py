"""HLE rows of the tests' own making, in the ``cais/hle`` schema (no real item)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any


def png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    """A real PNG of ``width`` x ``height`` grey pixels, made here (no image library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([(seed + x + y) % 256 for x in range(width)]) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


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
    rows += [row(100 + i, image=data_url(png(2 + i, 3, seed=i))) for i in range(images)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
