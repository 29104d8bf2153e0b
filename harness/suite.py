"""The suite interface: what the runner needs from a benchmark.

A suite is a named, loaded benchmark: a sequence of :class:`Item` plus how to render an item for one
repeat (:meth:`Suite.render`) and how to score a model's text against the rendered prompt
(:meth:`Suite.score`). Suites live in ``suites/`` and are found by name with
``suites.get_suite(name, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from harness.types import Message, Prompt

__all__ = [
    "BATCH_SUITES",
    "Item",
    "JudgeRequest",
    "JudgedSuite",
    "Score",
    "STEP_SEPARATOR",
    "ScoreStatus",
    "StepAnswer",
    "SteppedSuite",
    "Suite",
    "batchable",
    "score_answer",
]

#: Suites whose units are single-turn and independent, so ``run --batch`` may send them through a
#: batch API (docs/batch.md); user JSONL suites (``jsonl:*``) are single-turn too.
BATCH_SUITES = frozenset(
    {"mmlu-pro", "gpqa-diamond", "aime2024", "aime2025", "math500", "hle", "livecodebench", "demo"}
)


def batchable(suite: object) -> bool:
    """Whether a suite's units can go through a batch API: a ``batchable`` attribute of the suite
    says so itself, else its name (:data:`BATCH_SUITES`, ``jsonl:*``)."""
    if isinstance(suite, SteppedSuite):
        return False  # a chain of calls, each depending on the last
    flag = getattr(suite, "batchable", None)
    if flag is not None:
        return bool(flag)
    name = str(getattr(suite, "name", ""))
    return name in BATCH_SUITES or name.startswith("jsonl:")


#: ``scored``: an answer was judged (``correct`` True or False). ``unusable``: paid for but cannot
#: be scored (empty, cut at the output limit, refused); never counted as wrong.
ScoreStatus = Literal["scored", "unusable"]


@dataclass(frozen=True, slots=True)
class Item:
    """One benchmark question."""

    id: str
    """Stable id within the suite (the dataset's own id where it has one)."""
    question: str
    answer: str
    """The reference answer as the dataset gives it."""
    stratum: str = ""
    """Category used for stratified sampling (subject, level, year ...); empty if none."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Suite-specific fields (options, solution, ...)."""


@dataclass(frozen=True, slots=True)
class Score:
    status: ScoreStatus
    correct: bool | None
    """True/False when scored, None when unusable."""
    extracted: str | None = None
    """The answer extracted from the model's text, if any."""
    reason: str | None = None
    """For unusable answers: ``empty``, ``truncated`` or ``refused``; ``unscored`` when a judge
    could not judge (counted as wrong, reported apart)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """What the scorer adds to the item result's meta (a judge's extracted confidence, ...)."""


@runtime_checkable
class Suite(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def default_repeats(self) -> int: ...

    @property
    def items(self) -> Sequence[Item]: ...

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """The prompt for ``item`` on repeat ``repeat`` (0-based) of a run seeded with ``seed``.

        Must be deterministic in its arguments: resuming a run re-renders the same prompt.
        """
        ...

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Score a model's visible text against the rendered prompt. CPU-heavy scorers (math-verify)
        run in a process pool, never in a thread."""
        ...


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """What a judged suite asks its LLM judge about one answer (docs/suites.md, ``hle``)."""

    messages: tuple[Message, ...]
    response_format: Mapping[str, Any]
    """The OpenAI ``response_format`` (a ``json_schema``) the judge answers in."""
    max_output_tokens: int = 4096


@runtime_checkable
class JudgedSuite(Suite, Protocol):
    """A suite scored by an LLM judge. The runner sends :meth:`judge_request` as a call of role
    ``judge``: reserved under the run's budget before it is sent, metered, cached and resumed like
    the model's own calls; then :meth:`judged_score` turns the judge's text into the score."""

    def judge_request(self, prompt: Prompt, text: str) -> JudgeRequest:
        """The judge's request for the model's answer ``text`` to ``prompt``."""
        ...

    def judged_score(self, prompt: Prompt, text: str, judge_text: str | None) -> Score:
        """The score from the judge's reply; ``judge_text`` None: the judge failed (no answer after
        its retries), which is ``unscored``."""
        ...


#: Between two steps' answers in a stepped unit's recorded answer text (``rescore`` splits it again).
STEP_SEPARATOR = "\n\n------ next step ------\n\n"


@dataclass(frozen=True, slots=True)
class StepAnswer:
    """The model's answer to one step of a stepped suite's unit."""

    text: str
    finish_reason: str
    """Normalised (``stop``, ``length``, ``refusal``, ``other``)."""


@runtime_checkable
class SteppedSuite(Suite, Protocol):
    """A suite whose unit is a chain of calls (``scicode``: a problem's sub-steps, each prompt holding
    the model's own answers to the earlier ones). The runner (:mod:`harness.run.steps`) sends the
    steps in order, each a call of role ``step``: reserved under the run's budget before it is sent,
    metered, cached and resumed like any call (a step this run already bought is never bought
    again); then :meth:`stepped_score` scores the whole chain. :meth:`Suite.render` is the first
    step's prompt, with the unit's meta. The unit's recorded answer is the steps' texts joined by
    :data:`STEP_SEPARATOR`, which :meth:`Suite.score` must accept (``rescore``)."""

    def step_count(self, prompt: Prompt) -> int:
        """How many calls the unit of ``prompt`` (as :meth:`Suite.render` made it) makes."""
        ...

    def step_prompt(self, prompt: Prompt, step: int, answers: Sequence[str]) -> Prompt:
        """The prompt of call ``step`` (0-based), given the texts of the earlier calls' answers.

        Must be deterministic in its arguments: resuming re-renders the same prompts.
        """
        ...

    def key_prompts(self, prompt: Prompt) -> Sequence[Prompt]:
        """The step prompts the simulator's answer key is built from (before the answers exist)."""
        ...

    async def stepped_score(self, prompt: Prompt, answers: Sequence[StepAnswer]) -> Score:
        """Score the unit from every step's answer (in order)."""
        ...


async def score_answer(suite: Suite, prompt: Prompt, text: str, finish_reason: str) -> Score:
    """Score one answer the way the runner does, for a fresh answer, a cached one or a stored one.

    A refusal is ``unusable``/``refused``; blank text is ``unusable``/``empty`` (``truncated`` when it
    was cut at the output limit); otherwise the suite scores it, and an answer cut at the output
    limit from which nothing could be extracted is ``unusable``/``truncated`` rather than wrong.

    Args:
        suite: The suite the prompt was rendered by.
        prompt: The rendered prompt (target, answer format, choices).
        text: The model's visible text.
        finish_reason: The normalised finish reason (``stop``, ``length``, ``refusal``, ``other``).
    """
    if finish_reason == "refusal":
        return Score("unusable", None, None, "refused")
    if not text.strip():
        reason = "truncated" if finish_reason == "length" else "empty"
        return Score("unusable", None, None, reason)
    score = await suite.score(prompt, text)
    if finish_reason == "length" and score.extracted is None:
        return Score("unusable", None, None, "truncated")
    return score
