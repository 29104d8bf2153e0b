"""Scoring: math equivalence through the math-verify process pool, letters, unusable answers."""

from __future__ import annotations

import threading

import anyio
import pytest

import suites.scoring as scoring
from harness.types import Message, Prompt
from suites.scoring import math_equal, math_fast_path, score_letter, score_math, verify_in_process


def _math(target: str) -> Prompt:
    return Prompt((Message("user", "q"),), target, "boxed")


def _mc(target: str, letters: str = "ABCD") -> Prompt:
    return Prompt((Message("user", "q"),), target, "letter", tuple(letters))


HARD_CASES = [
    ("\\frac{1}{2}", "0.5", True),  # fraction vs decimal
    ("0.5", "\\frac12", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\{1,2\\}", "\\{2,1\\}", True),  # sets
    ("[2,5)", "[2,5)", True),  # intervals
    ("[2,5)", "(2,5]", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True),
    ("3\\sqrt{13}", "\\sqrt{117}", True),
    ("30", "30^\\circ", True),  # degrees
    ("10", "10\\text{ cm}", True),  # units
    ("0.1", "10\\%", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("\\pi", "3.14159", False),
    ("3", "2", False),
]


@pytest.mark.anyio
async def test_math_equivalence_in_pool() -> None:
    """The hard cases, checked concurrently through the process pool (one event loop, shared workers)."""
    results: dict[int, bool] = {}

    async def one(i: int, gold: str, pred: str) -> None:
        results[i] = await math_equal(gold, pred)

    async with anyio.create_task_group() as tg:
        for i, (gold, pred, _) in enumerate(HARD_CASES):
            tg.start_soon(one, i, gold, pred)
    wrong = [(g, p, results[i]) for i, (g, p, want) in enumerate(HARD_CASES) if results[i] is not want]
    assert wrong == []


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        ("7", "007", True),  # AIME leading zeros
        ("33", "033", True),
        ("0", "000", True),
        ("33", "34", False),
        ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
        ("(1,2)", "\\left( 1, 2 \\right)", True),
        ("90^\\circ", "90", True),
        ("\\frac{1}{2}", "0.5", None),  # needs sympy
    ],
)
def test_fast_path(gold: str, pred: str, expected: bool | None) -> None:
    assert math_fast_path(gold, pred) is expected


@pytest.mark.anyio
async def test_fast_path_skips_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*args: object, **kwargs: object) -> bool:
        raise AssertionError("the process pool was used for a plain answer")

    monkeypatch.setattr(scoring.anyio.to_process, "run_sync", boom)
    assert (await score_math(_math("7"), "so \\boxed{007}")).correct is True
    assert (await score_math(_math("33"), "\\boxed{34}")).correct is False


def test_math_verify_refuses_threads_so_we_use_processes() -> None:
    """The reason for the process pool: math-verify's signal alarms fail off the main thread."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            verify_in_process("\\frac{1}{2}", "0.5")
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors and isinstance(errors[0], ValueError)


@pytest.mark.anyio
async def test_score_math_cases() -> None:
    s = await score_math(_math("\\frac{1}{2}"), "We get 0.5, so \\boxed{0.5}.")
    assert (s.status, s.correct, s.extracted) == ("scored", True, "0.5")
    s = await score_math(_math("7"), "First \\boxed{5}. Correction: \\boxed{7}")
    assert s.correct is True and s.extracted == "7"
    s = await score_math(_math("7"), "I could not solve it.")
    assert (s.status, s.correct, s.extracted) == ("scored", False, None)


@pytest.mark.parametrize("text", ["", "   \n\t"])
@pytest.mark.anyio
async def test_empty_is_unusable(text: str) -> None:
    s = await score_math(_math("1"), text)
    assert (s.status, s.correct, s.reason) == ("unusable", None, "empty")
    s = score_letter(_mc("A"), text)
    assert (s.status, s.correct, s.reason) == ("unusable", None, "empty")


def test_score_letter() -> None:
    assert score_letter(_mc("C"), "reasoning\nAnswer: C").correct is True
    s = score_letter(_mc("C"), "reasoning\nAnswer: B")
    assert (s.correct, s.extracted) == (False, "B")
    s = score_letter(_mc("C"), "no letter here")
    assert (s.status, s.correct, s.extracted) == ("scored", False, None)
    assert score_letter(_mc("J", "ABCDEFGHIJ"), "Answer: J").correct is True


@pytest.mark.anyio
async def test_timeout_scores_false(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(*args: object, **kwargs: object) -> bool:
        await scoring.anyio.sleep(10)
        return True

    monkeypatch.setattr(scoring.anyio.to_process, "run_sync", slow)
    assert await math_equal("\\frac{1}{2}", "0.5", timeout_s=0.05) is False
