"""Scorers shared by the suites: math equivalence (math-verify in a process pool) and MC letters.

math-verify guards its sympy work with ``signal.alarm``, which only works on a process's main
thread: calling it from a worker thread raises, and calling it on the event-loop thread would block
every other task while sympy runs. So equivalence checks run in worker processes through
:func:`anyio.to_process.run_sync` with a module-level function, bounded by a
:class:`anyio.CapacityLimiter` and an overall timeout (a cancelled call kills its worker, and
anyio starts a fresh one for the next call).

Most answers never reach the pool: :func:`math_fast_path` decides plain cases exactly (equal normal
forms; two integers, which settles AIME and the demo suite's arithmetic) and the pool only sees the
answers whose equivalence needs algebra.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio
import anyio.to_process
from anyio.lowlevel import RunVar

from harness.suite import Score
from harness.types import Prompt

from .extract import extract_letter, extract_math_answer, normalize_math, parse_integer

__all__ = [
    "MATH_VERIFY_TIMEOUT_S",
    "empty_score",
    "math_equal",
    "math_fast_path",
    "score_letter",
    "score_math",
    "verify_in_process",
]

#: Overall limit for one equivalence check in the pool (math-verify's own alarms are 5 s each for
#: parsing and verifying); a check that runs past it is scored as not equivalent.
MATH_VERIFY_TIMEOUT_S = 20.0

#: One limiter per event loop (a limiter must not outlive the loop it was used in).
_limiter: RunVar[anyio.CapacityLimiter] = RunVar("tollbench_math_verify_limiter")


def _pool_limiter() -> anyio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(max(1, min(4, os.cpu_count() or 1)))
        _limiter.set(limiter)
        return limiter


def empty_score(text: str) -> Score | None:
    """The ``unusable``/``empty`` score for blank text, or None when there is text to score."""
    if not text or not text.strip():
        return Score(status="unusable", correct=None, extracted=None, reason="empty")
    return None


def math_fast_path(gold: str, pred: str) -> bool | None:
    """Decide equivalence without sympy when the answer is plain.

    Returns:
        True when the normal forms are equal; True/False when both sides are integers (``007`` is
        7); None when it takes math-verify to decide.
    """
    if normalize_math(gold) == normalize_math(pred):
        return True
    g, p = parse_integer(gold), parse_integer(pred)
    if g is not None and p is not None:
        return g == p
    return None


def _wrap(expr: str) -> str:
    return expr if "\\boxed" in expr else "\\boxed{" + expr + "}"


def verify_in_process(gold: str, pred: str) -> bool:
    """math-verify's ``verify(parse(gold), parse(pred))``; runs in a worker process's main thread.

    Both sides are wrapped in ``\\boxed{}`` so that bare LaTeX (``\\frac{1}{2}``) and plain numbers
    parse alike. Module-level so that the worker can import it by name.
    """
    from math_verify import parse, verify

    gold_parsed = parse(_wrap(gold))
    pred_parsed = parse(_wrap(pred))
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed))


async def math_equal(gold: str, pred: str, *, timeout_s: float = MATH_VERIFY_TIMEOUT_S) -> bool:
    """Whether ``pred`` is mathematically equivalent to ``gold`` (gold first, as math-verify expects).

    The fast path answers plain cases in-process; the rest go to the process pool.
    """
    fast = math_fast_path(gold, pred)
    if fast is not None:
        return fast
    with anyio.move_on_after(timeout_s):
        return await anyio.to_process.run_sync(
            verify_in_process, gold, pred, cancellable=True, limiter=_pool_limiter()
        )
    return False


async def score_math(prompt: Prompt, text: str) -> Score:
    """Score a math answer: the last ``\\boxed{}`` against ``prompt.target`` by math equivalence."""
    empty = empty_score(text)
    if empty is not None:
        return empty
    pred = extract_math_answer(text)
    if pred is None:
        return Score(status="scored", correct=False, extracted=None)
    return Score(status="scored", correct=await math_equal(prompt.target, pred), extracted=pred)


def score_letter(prompt: Prompt, text: str, letters: Sequence[str] | None = None) -> Score:
    """Score a multiple-choice answer: the extracted letter against ``prompt.target``."""
    empty = empty_score(text)
    if empty is not None:
        return empty
    offered = tuple(letters) if letters is not None else prompt.choices
    letter = extract_letter(text, offered)
    if letter is None:
        return Score(status="scored", correct=False, extracted=None)
    return Score(status="scored", correct=letter == prompt.target.strip().upper(), extracted=letter)
