"""A small suite of the tests' own making, so runner tests do not depend on any benchmark module."""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.suite import Item, Score
from harness.types import Message, Prompt

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


class TinySuite:
    """``n`` arithmetic questions answered as ``\\boxed{N}``; exact-integer scoring."""

    def __init__(self, n: int = 12, name: str = "tiny", repeats: int = 1) -> None:
        self._name = name
        self._repeats = repeats
        self._items = [
            Item(
                id=f"q{i}",
                question=f"What is {i} + {i * 7 % 11}?",
                answer=str(i + i * 7 % 11),
                stratum="even" if i % 2 == 0 else "odd",
            )
            for i in range(n)
        ]

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_repeats(self) -> int:
        return self._repeats

    @property
    def items(self) -> Sequence[Item]:
        return self._items

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        text = f"{item.question}\nPut your final answer within \\boxed{{}}."
        return Prompt(messages=(Message("user", text),), target=item.answer, answer_format="boxed")

    async def score(self, prompt: Prompt, text: str) -> Score:
        if not text.strip():
            return Score("unusable", None, None, "empty")
        found = _BOXED.findall(text)
        if not found:
            return Score("scored", False, None)
        got = found[-1].strip()
        return Score("scored", got == prompt.target, got)
