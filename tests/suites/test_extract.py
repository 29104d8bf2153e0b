"""Answer extraction on the hard cases (pure string functions, no sympy)."""

from __future__ import annotations

import pytest

from suites.extract import extract_letter, extract_math_answer, last_boxed, normalize_math, parse_integer

ABCD = "ABCD"
A_TO_J = "ABCDEFGHIJ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{5}, no wait: \\boxed{7}", "7"),  # multiple: the last wins
        ("\\boxed{\\boxed{5}}", "5"),  # nested: the innermost (last opened) wins
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{(1,2] \\cup \\{3\\}}", "(1,2] \\cup \\{3\\}"),  # escaped braces inside
        ("$\\boxed{30^\\circ}$", "30^\\circ"),
        ("\\fbox{42}", "42"),
        ("\\boxed 9", "9"),
        ("\\boxed{}", None),
        ("no box at all", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_math_answer_falls_back_to_answer_line() -> None:
    assert extract_math_answer("work...\nAnswer: $033$") == "033"
    assert extract_math_answer("The final answer is 12.") == "12"
    assert extract_math_answer("Answer: 1\n\\boxed{2}") == "2"  # a box beats an answer line
    assert extract_math_answer("I cannot tell.") is None
    assert extract_math_answer("**Final Answer:** $\\frac{3}{4}$") == "\\frac{3}{4}"
    # Reasoning that only mentions "the answer" (a truncated solution, say) has no answer.
    assert extract_math_answer("To find the answer we first compute the sum of") is None


def test_normalize_and_integers() -> None:
    assert normalize_math("$\\dfrac{1}{2}$") == normalize_math("\\frac{1}{2}")
    assert normalize_math("\\left( 1, 2 \\right)") == "(1,2)"
    assert normalize_math("90^{\\circ}") == "90"
    assert normalize_math("\\text{Evelyn}") == "Evelyn"
    assert parse_integer("007") == 7
    assert parse_integer("0") == 0
    assert parse_integer("1{,}000") == 1000
    assert parse_integer("10,000") == 10000
    assert parse_integer("1,2") is None  # a list, not a number
    assert parse_integer("\\frac{14}{2}") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: C", "C"),
        ("**Answer:** C", "C"),
        ("**Answer: C**", "C"),
        ("ANSWER: c", "C"),
        ("answer : b.", "B"),
        ("Answer: (D)", "D"),
        ("Answer: $\\boxed{B}$", "B"),
        ("Final Answer: C) Neon", "C"),
        ("Answer: A\nOn reflection...\nAnswer: D", "D"),  # the last answer line wins
        ("The answer: a good start is to recall...\nAnswer: B", "B"),  # lower-case prose is not A
        ("Answer: I think it is B.\nAnswer: B", "B"),
        ("Answer: E", "E"),  # not offered: recorded, scored wrong
        ("B is tempting. The answer is (D).", "D"),
        ("After all that, C is the correct answer.", "C"),
        ("so \\boxed{A}", "A"),
        ("Long reasoning.\n\n**C**", "C"),
        ("Long reasoning.\nA", "A"),
        ("I am not sure which one.", None),
        ("", None),
    ],
)
def test_extract_letter_abcd(text: str, expected: str | None) -> None:
    assert extract_letter(text, ABCD) == expected


def test_letters_beyond_d() -> None:
    assert extract_letter("Answer: J", A_TO_J) == "J"
    assert extract_letter("Answer: H", A_TO_J) == "H"
    assert extract_letter("the answer is (G)", A_TO_J) == "G"
    # Fallbacks only accept offered letters: with four options, a bare "(G)" is no answer.
    assert extract_letter("the answer is (G)", ABCD) is None


def test_fewer_options() -> None:
    six = "ABCDEF"
    assert extract_letter("Answer: F", six) == "F"
    assert extract_letter("Answer: G", six) == "G"  # out of range: kept so it scores wrong
    assert extract_letter("Answer: B\nAnswer: G", six) == "B"  # an offered letter beats an invalid one
