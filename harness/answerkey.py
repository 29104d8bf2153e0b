"""Answer keys handed to the simulator so its models answer benchmark prompts realistically.

A key maps the fingerprint of a prompt's last user message to the answer expected for that exact
prompt. It is built from rendered :class:`~harness.types.Prompt` objects (so GPQA's per-repeat option
shuffles are keyed correctly), passed in-process or saved as JSONL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.types import AnswerFormat, Prompt

__all__ = ["STEP_MARKER", "AnswerKey", "KeyEntry", "fingerprint"]


#: A SciCode step prompt is keyed from its next step's part on: the part before it holds the model's
#: own code for the earlier steps, which no key made before the run can know (suites/scicode.py).
STEP_MARKER = "NEXT STEP - PROBLEM STEP AND FUNCTION HEADER:"


def fingerprint(text: str) -> str:
    """Key of a prompt: sha256 of its last user message's text (UTF-8), hex; for a step prompt of a
    stepped suite (:data:`STEP_MARKER`), of the text from the marker on."""
    at = text.find(STEP_MARKER)
    if at > 0:
        text = text[at:]
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    target: str
    answer_format: AnswerFormat
    choices: tuple[str, ...] = ()
    difficulty: float | None = None
    """Optional 0..1 hint (1 = hardest); profiles may lower accuracy and raise output length with it."""


class AnswerKey:
    """A mutable, thread-safe-enough (append-only dict) mapping from fingerprint to :class:`KeyEntry`."""

    def __init__(self, entries: dict[str, KeyEntry] | None = None) -> None:
        self._entries: dict[str, KeyEntry] = dict(entries or {})

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def get(self, last_user_text: str) -> KeyEntry | None:
        return self._entries.get(fingerprint(last_user_text))

    def add(self, last_user_text: str, entry: KeyEntry) -> None:
        self._entries[fingerprint(last_user_text)] = entry

    def add_prompt(self, prompt: Prompt, difficulty: float | None = None) -> None:
        users = [m for m in prompt.messages if m.role == "user"]
        if not users:
            raise ValueError("a prompt needs a user message to be keyed")
        self.add(users[-1].content, KeyEntry(prompt.target, prompt.answer_format, prompt.choices, difficulty))

    def add_prompts(self, prompts: Iterable[Prompt]) -> None:
        for p in prompts:
            self.add_prompt(p)

    def update(self, other: AnswerKey) -> None:
        self._entries.update(other._entries)

    def save(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as f:
            for fp, e in self._entries.items():
                f.write(
                    json.dumps(
                        {
                            "fingerprint": fp,
                            "target": e.target,
                            "format": e.answer_format,
                            "choices": list(e.choices),
                            "difficulty": e.difficulty,
                        }
                    )
                    + "\n"
                )

    @classmethod
    def load(cls, path: Path) -> AnswerKey:
        entries: dict[str, KeyEntry] = {}
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    entries[d["fingerprint"]] = KeyEntry(
                        str(d["target"]), d["format"], tuple(d.get("choices") or ()), d.get("difficulty")
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{lineno}: bad answer-key line ({exc})") from None
        return cls(entries)
