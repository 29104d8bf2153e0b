"""Building blocks the suites share: suite metadata, prompt templates, seeds, and two base classes.

A suite module only has to turn its dataset's rows into :class:`~harness.suite.Item` objects;
:class:`MathSuite` and :class:`ChoiceSuite` supply ``render`` and ``score`` with the Artificial
Analysis v2 prompts and extraction (BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.suite import Item, Score
from harness.types import Message, Prompt

from .extract import LETTERS
from .scoring import score_letter, score_math

__all__ = [
    "BOXED_TEMPLATE",
    "MC_INSTRUCTION_AA",
    "MC_INSTRUCTION_SIMPLE_EVALS",
    "BaseSuite",
    "ChoiceSuite",
    "MathSuite",
    "SuiteInfo",
    "derive_seed",
    "mc_question",
]

#: AA v2 math prompt (NVIDIA ``aa_boxed.template``), for MATH-500 and AIME.
BOXED_TEMPLATE = (
    "Solve the following math problem step by step. Put your answer inside \\boxed{{}}.\n\n"
    "{question}\n\nRemember to put your answer inside \\boxed{{}}."
)

#: AA v2 multiple-choice instruction (MMLU-Pro); ``{letters}`` is ``A/B/C/D/...`` for the options
#: the row has.
MC_INSTRUCTION_AA = (
    "Answer the following multiple choice question. The last line of your response should be in the "
    "following format: 'Answer: {letters}' (e.g. 'Answer: A')."
)

#: simple-evals' GPQA instruction; ``{letters}`` is ``ABCD``.
MC_INSTRUCTION_SIMPLE_EVALS = (
    "Answer the following multiple choice question. The last line of your response should be of the "
    "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of {letters}. "
    "Think step by step before answering."
)


@dataclass(frozen=True, slots=True)
class SuiteInfo:
    """What ``tollbench suites`` lists about a suite."""

    name: str
    items: int
    """Item count as published (the full dataset; ``--limit`` samples from it)."""
    source: str
    """Hugging Face dataset id (with the pinned revision's file), or where the items come from."""
    license: str
    access: str
    """How the data is obtained: open, gated (and how to get access), built in, your own file."""
    default_repeats: int
    description: str = ""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from labels (stable across processes and Python versions, unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def mc_question(instruction: str, question: str, options: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """A multiple-choice prompt: instruction, blank line, question, blank line, ``A) ...`` lines.

    ``{letters}`` in the instruction is replaced by ``A/B/C/D`` (AA style, ``'Answer: {letters}'``)
    or ``ABCD`` (simple-evals style), for exactly as many options as there are.

    Returns:
        The prompt text and the letters offered.
    """
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2..{len(LETTERS)} options, got {len(options)}")
    letters = tuple(LETTERS[: len(options)])
    spelled = "/".join(letters) if "'Answer: {letters}'" in instruction else "".join(letters)
    body = "\n".join(f"{letter}) {option}" for letter, option in zip(letters, options, strict=True))
    return f"{instruction.format(letters=spelled)}\n\n{question}\n\n{body}", letters


class BaseSuite:
    """Common state of a loaded suite: its name, default repeats and items."""

    def __init__(self, name: str, default_repeats: int, items: Sequence[Item], source: str) -> None:
        self._name = name
        self._default_repeats = default_repeats
        self._items = tuple(items)
        self.source = source
        """Where the items were loaded from (a path or ``hf://repo@revision/file``)."""
        self._by_id = {item.id: item for item in self._items}

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_repeats(self) -> int:
        return self._default_repeats

    @property
    def items(self) -> Sequence[Item]:
        return self._items

    def item(self, item_id: str) -> Item:
        """The item with that id (``KeyError`` if none)."""
        return self._by_id[item_id]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}: {len(self._items)} items from {self.source}>"


class MathSuite(BaseSuite):
    """A suite answered as ``\\boxed{...}`` and scored by math equivalence (math-verify)."""

    def target(self, item: Item) -> str:
        """The reference answer as the prompt expects it (AIME overrides to strip leading zeros)."""
        return item.answer.strip()

    def meta(self, item: Item) -> dict[str, Any]:
        """Fields recorded with the item result."""
        return {}

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """The AA boxed prompt; the same for every repeat (no randomness to vary)."""
        text = BOXED_TEMPLATE.format(question=item.question.strip())
        return Prompt(
            messages=(Message("user", text),),
            target=self.target(item),
            answer_format="boxed",
            meta={"item_id": item.id, **self.meta(item)},
        )

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Last ``\\boxed{}`` against the target: fast exact path, else math-verify in a process."""
        return await score_math(prompt, text)


class ChoiceSuite(BaseSuite):
    """A multiple-choice suite answered as ``Answer: X`` and scored by letter."""

    instruction = MC_INSTRUCTION_AA

    def options(self, item: Item, repeat: int, seed: int) -> tuple[list[str], int, dict[str, Any]]:
        """The options in the order to show, the index of the correct one, and meta to record.

        The default keeps the dataset's order (``item.data["options"]`` and the gold letter in
        ``item.answer``); GPQA overrides this to shuffle.
        """
        options = [str(o) for o in item.data["options"]]
        return options, LETTERS.index(item.answer), {}

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """The multiple-choice prompt with options ``A)`` .. and the gold letter as target."""
        options, gold, meta = self.options(item, repeat, seed)
        text, letters = mc_question(self.instruction, item.question.strip(), options)
        return Prompt(
            messages=(Message("user", text),),
            target=letters[gold],
            answer_format="letter",
            choices=letters,
            meta={"item_id": item.id, **meta},
        )

    async def score(self, prompt: Prompt, text: str) -> Score:
        """The extracted letter against the target letter."""
        return score_letter(prompt, text)
