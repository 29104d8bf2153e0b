"""Answer extraction: the final ``\\boxed{}`` of a math answer, the letter of a multiple-choice answer.

These are pure string functions (no sympy), cheap enough for the event-loop thread.

Math (MATH-500, AIME; Artificial Analysis v2): the content of the **last** ``\\boxed{`` in the text,
which is what AA's regex ``(?s)(?i)\\\\boxed{((?!.*\\\\boxed{).*)}`` selects, but with the braces
matched properly so that ``\\boxed{\\frac{1}{2}} and more}`` yields ``\\frac{1}{2}``. When the text
has no ``\\boxed{}``, the value on the last ``Answer:`` line is used (simple-evals' older math
template asks for that form).

Multiple choice (MMLU-Pro, GPQA; AA v2): AA's pattern
``(?i)[*_]{0,2}Answer[*_]{0,2}\\s*:[\\s*_]{0,2}\\s*([A-Z])(?![a-zA-Z0-9])``, widened to accept
``Answer: (C)`` and ``Answer: $\\boxed{C}$``, with the **last** match among the offered letters winning
(the prompts ask for the answer on the last line, so a model that corrects itself is scored on its
final answer; AA takes the first match, which is the same whenever the model writes one answer line).
A lower-case letter counts only when it ends its line (``Answer: c``), so prose such as
``answer: a good start`` does not read as ``A``. Without an ``Answer:`` line, a short cascade of the
fallbacks AA v3 added is tried: ``\\boxed{C}``, ``the answer is (C)``, ``C is the correct answer``,
and a last line that is only a letter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "LETTERS",
    "extract_answer_line",
    "extract_letter",
    "extract_math_answer",
    "last_boxed",
    "normalize_math",
    "parse_integer",
]

#: Option letters in order; MMLU-Pro uses up to ten (A-J).
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s{$]+)")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched.

    A nested ``\\boxed{\\boxed{5}}`` gives ``5`` (the last opening wins). An unclosed last box takes
    the rest of the text. ``\\boxed 5`` (no braces) is accepted when it is the last box.

    Returns:
        The stripped content, or None when there is no box or it is empty.
    """
    matches = list(_BOXED.finditer(text))
    bare = list(_BOXED_BARE.finditer(text))
    if bare and (not matches or bare[-1].start() > matches[-1].start()):
        content = bare[-1].group(1).strip()
        return content or None
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2  # skip escaped characters such as \{ and \}
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    content = text[start:i].strip()
    return content or None


_ANSWER_LINES = (
    re.compile(r"(?im)^[\s*_#>-]*(?:final\s+)?answer\s*[*_]{0,2}\s*:\s*[*_]{0,2}[ \t]*([^\n]+)$"),
    re.compile(r"(?i)\bthe\s+final\s+answer\s+is\s*:?[ \t]*([^\n]+)"),
)


def extract_answer_line(text: str) -> str | None:
    """The value of the last ``Answer: X`` line (or ``The final answer is X``), without ``$``/``**``.

    Only a line that *starts* with ``Answer:`` / ``Final answer:`` counts, so reasoning that merely
    mentions "the answer" yields nothing (and a truncated answer stays without an extracted answer).
    """
    found: tuple[int, str] | None = None
    for pattern in _ANSWER_LINES:
        for m in pattern.finditer(text):
            value = m.group(1).strip().strip("*_").strip().strip("$").strip()
            value = re.sub(r"\.$", "", value).strip()
            if value and (found is None or m.start() >= found[0]):
                found = (m.start(), value)
    return found[1] if found else None


def extract_math_answer(text: str) -> str | None:
    """The final answer of a math solution: the last ``\\boxed{}``, else the last ``Answer:`` value."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    return extract_answer_line(text)


_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def normalize_math(s: str) -> str:
    """A conservative normal form for the fast equality path (equal forms are surely equal answers).

    Removes ``$``, spacing macros, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac`` spelling, degree
    marks, a trailing period, surrounding ``\\text{}``, all whitespace, and leading zeros of a plain
    integer. Answers that differ after this go to math-verify, so the normal form never needs to be
    complete, only sound.
    """
    t = s.strip()
    t = t.strip("$")
    t = re.sub(r"\\[,;:! ]", "", t)
    t = t.replace("\\left", "").replace("\\right", "")
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    t = re.sub(r"\^\s*\{?\\circ\}?", "", t)
    t = t.replace("°", "")
    t = _TEXT_WRAPPERS.sub(r"\1", t)
    t = re.sub(r"\s+", "", t)
    t = t.rstrip(".")
    if re.fullmatch(r"[+-]?\d+", t):
        t = str(int(t))
    return t


def parse_integer(s: str) -> int | None:
    """The integer a normalised answer spells (``007`` -> 7, ``1{,}000`` -> 1000), else None."""
    t = normalize_math(s).replace("{,}", "")
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", t):
        return int(t.replace(",", ""))
    return None


def _answer_pattern() -> re.Pattern[str]:
    return re.compile(
        r"(?i:answer)[*_]{0,2}\s*:[\s*_]{0,2}\s*"
        r"(?:\$?\\boxed\{\s*)?(?:\\text\{\s*)?\(?\s*"
        r"([A-Za-z])(?![a-zA-Z0-9])([)\].*_}$\s]*$)?",
        re.MULTILINE,
    )


_ANSWER_LETTER = _answer_pattern()
_FALLBACKS = (
    re.compile(r"\\boxed\{\s*(?:\\text\{\s*)?\(?([A-Z])\)?\s*\}?\s*\}"),
    re.compile(r"(?i:answer is)\s*:?\s*[*_]{0,2}\s*\(?([A-Z])\)?(?![a-zA-Z0-9])"),
    re.compile(r"\(?\b([A-Z])\)?\s+is\s+the\s+(?i:correct\s+answer)"),
)
_LETTER_LINE = re.compile(r"^[\s*_(]*(?:option\s+)?([A-Z])[\s*_).:]*$", re.IGNORECASE)


def extract_letter(text: str, letters: Sequence[str]) -> str | None:
    """The option letter a multiple-choice answer chose.

    Args:
        text: The model's visible answer.
        letters: The letters the prompt offered (``A``-``D`` for GPQA, up to ``A``-``J`` for
            MMLU-Pro).

    Returns:
        The upper-case letter. When the ``Answer:`` line names a letter that was not offered, that
        letter is returned (and is scored wrong). None when no answer can be found.
    """
    valid = {x.upper() for x in letters}
    offered: str | None = None
    other: str | None = None
    for m in _ANSWER_LETTER.finditer(text):
        raw = m.group(1)
        if raw.islower() and m.group(2) is None:
            continue  # "answer: a good idea" is prose, not option A
        letter = raw.upper()
        if letter in valid:
            offered = letter
        else:
            other = letter
    if offered is not None:
        return offered
    if other is not None:
        return other
    for pattern in _FALLBACKS:
        hits = [h.group(1) for h in pattern.finditer(text) if h.group(1) in valid]
        if hits:
            return hits[-1]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines:
        last = _LETTER_LINE.match(lines[-1])
        if (
            last
            and last.group(1).upper() in valid
            and (last.group(1).isupper() or len(lines[-1].strip()) <= 3)
        ):
            return last.group(1).upper()
    return None
