"""Seeded generation: prompt token counts, output lengths, cache hits, answers and filler text.

Token approximation (used for prompts *and* for the text the simulator writes):
``tokens(text) = ceil(utf8_bytes(text) / 4)``; a prompt costs
``PROMPT_BASE_TOKENS + sum(tokens(content) + PER_MESSAGE_TOKENS)`` over its messages (a system
prompt / ``instructions`` counts as one message). This is always <= tollbench's reservation bound
:func:`harness.types.input_tokens_upper_bound` for the same messages (a test checks it).

Visible text is plain ASCII "reasoning" filler followed by the answer; it is padded so that
``tokens(text)`` equals exactly the visible output tokens billed. Anthropic thinking text is built the
same way for the thinking tokens. OpenAI reasoning tokens are hidden, as on the real API.

Randomness: :func:`request_rng` seeds a ``random.Random`` from (server seed, sha256 of the request
body, how many times that exact body was seen before), so retries get fresh draws and results do not
depend on how concurrent requests interleave.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.answerkey import AnswerKey, KeyEntry
from harness.sim.profiles import ModelProfile
from harness.types import AnswerFormat

__all__ = [
    "PER_MESSAGE_TOKENS",
    "PROMPT_BASE_TOKENS",
    "CachePlan",
    "OutputPlan",
    "choose_answer",
    "draw_cache",
    "filler",
    "infer_format",
    "plan_output",
    "prompt_tokens",
    "request_rng",
    "text_tokens",
]

PROMPT_BASE_TOKENS = 3
PER_MESSAGE_TOKENS = 4

_SENTENCES = (
    "Let me restate the problem in my own words before doing anything else.",
    "First, identify exactly what is being asked.",
    "The key quantities are given, so I will write them down.",
    "Consider each option in turn and check it against the conditions.",
    "This step follows directly from the definition.",
    "Now simplify the expression carefully.",
    "I should double-check the arithmetic here.",
    "That rules out one of the possibilities.",
    "Substituting back confirms the intermediate result.",
    "There is a subtle point about the boundary case.",
    "By symmetry the remaining cases behave the same way.",
    "So the constraint reduces to a simpler one.",
    "Let me verify this with a small example.",
    "The units are consistent, which is reassuring.",
    "Combining the two observations gives the result.",
    "An alternative approach leads to the same conclusion.",
    "Therefore the candidate answer satisfies every condition.",
    "I will now compare this with the other choices.",
    "Recall the standard identity that applies here.",
    "Careful: the sign matters in this step.",
)


def _build_pool(size: int = 1 << 16) -> str:
    rng = random.Random(20240501)
    parts: list[str] = []
    n = 0
    while n < size:
        s = _SENTENCES[rng.randrange(len(_SENTENCES))] + " "
        parts.append(s)
        n += len(s)
    return "".join(parts)[:size]


_POOL = _build_pool()
_POOL2 = _POOL + _POOL


def text_tokens(text: str) -> int:
    """The simulator's token count of a text: ``ceil(utf8_bytes / 4)``."""
    return (len(text.encode("utf-8")) + 3) // 4


def prompt_tokens(contents: Sequence[str]) -> int:
    """Prompt tokens of a request whose messages (system included) have these texts."""
    return PROMPT_BASE_TOKENS + sum(text_tokens(c) + PER_MESSAGE_TOKENS for c in contents)


def request_rng(seed: int, body_sha256: bytes, occurrence: int) -> random.Random:
    """The RNG for one request: seeded by the server seed, the body hash and its repeat count."""
    material = hashlib.sha256(
        seed.to_bytes(16, "big", signed=True) + body_sha256 + occurrence.to_bytes(8, "big")
    ).digest()
    return random.Random(int.from_bytes(material[:16], "big"))


def filler(n_chars: int, rng: random.Random) -> str:
    """``n_chars`` ASCII characters of plausible "reasoning" prose, from a seeded offset."""
    if n_chars <= 0:
        return ""
    off = rng.randrange(len(_POOL))
    if n_chars <= len(_POOL):
        return _POOL2[off : off + n_chars]
    reps = n_chars // len(_POOL) + 2
    return (_POOL * reps)[off : off + n_chars]


_LETTER_HINT = re.compile(r"answer\s*:\s*\$?letter|answer\s*:\s*\$?\(?[A-J]\)?\b", re.IGNORECASE)
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[).:]\s+\S", re.MULTILINE)


def infer_format(text: str) -> tuple[AnswerFormat, tuple[str, ...]]:
    """Guess the answer format (and offered letters) a prompt asks for when no key entry exists."""
    if "\\boxed" in text:
        return "boxed", ()
    letters = tuple(dict.fromkeys(_OPTION_LINE.findall(text)))
    if len(letters) >= 2:
        return "letter", letters
    if _LETTER_HINT.search(text):
        return "letter", ("A", "B", "C", "D")
    return "text", ()


_NUM = re.compile(r"-?\d+")


def _wrong_value(target: str, rng: random.Random) -> str:
    t = target.strip()
    try:
        value = int(t)
    except ValueError:
        pass
    else:
        delta = rng.choice((-3, -2, -1, 1, 2, 3, 5, 10))
        return str(value + delta)
    matches = list(_NUM.finditer(t))
    if matches:
        m = matches[rng.randrange(len(matches))]
        new = str(int(m.group()) + rng.choice((1, 2, 3)))
        return t[: m.start()] + new + t[m.end() :]
    return t + "+1" if t else "0"


def choose_answer(
    entry: KeyEntry | None, user_text: str, profile: ModelProfile, rng: random.Random
) -> tuple[str, AnswerFormat, bool | None, float | None]:
    """Pick the model's answer: the key's target with the profile's accuracy, else a plausible miss.

    Returns:
        ``(answer, format, correct, difficulty)``; ``correct`` is None when there was no key entry.
    """
    u = rng.random()
    if entry is not None:
        fmt = entry.answer_format
        correct = u < profile.accuracy_at(entry.difficulty)
        if correct:
            return entry.target, fmt, True, entry.difficulty
        if fmt == "letter":
            choices = [c for c in (entry.choices or ("A", "B", "C", "D")) if c != entry.target]
            wrong = rng.choice(choices) if choices else entry.target + "?"
        else:
            wrong = _wrong_value(entry.target, rng)
        return wrong, fmt, False, entry.difficulty
    fmt, letters = infer_format(user_text)
    if fmt == "letter":
        return rng.choice(letters or ("A", "B", "C", "D")), fmt, None, None
    if fmt == "boxed":
        return str(rng.randrange(0, 1000)), fmt, None, None
    return str(rng.randrange(0, 100)), fmt, None, None


def _answer_suffix(answer: str, fmt: AnswerFormat) -> str:
    if fmt == "letter":
        return f"\n\nAnswer: {answer}"
    if fmt == "boxed":
        return f"\n\nTherefore, the final answer is $\\boxed{{{answer}}}$."
    return f"\n\n{answer}"


def _fit(text: str, tokens: int) -> str:
    """Cut or pad ``text`` to exactly ``4 * tokens`` UTF-8 bytes (so ``text_tokens`` == tokens)."""
    n = 4 * tokens
    raw = text.encode("utf-8")
    if len(raw) > n:
        raw = raw[:n]
    out = raw.decode("utf-8", errors="ignore")
    pad = n - len(out.encode("utf-8"))
    return out + " " * pad


@dataclass(frozen=True, slots=True)
class CachePlan:
    """How a prompt splits between uncached, cache-read and cache-write tokens."""

    prompt: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_ttl: Literal["5m", "1h"] = "5m"

    @property
    def uncached(self) -> int:
        return self.prompt - self.cache_read - self.cache_write


def draw_cache(
    profile: ModelProfile,
    rng: random.Random,
    prompt: int,
    *,
    cache_control: bool = False,
    ttl: Literal["5m", "1h"] = "5m",
) -> CachePlan:
    """Seeded cache outcome. OpenAI: hits only on prompts >= ``cache_min_tokens``, in 128-token
    steps. Anthropic: a hit reads a share of the prompt; a miss with ``cache_control`` writes it."""
    hit = rng.random() < profile.cache_hit_rate
    lo, hi = profile.cache_share
    share = rng.uniform(lo, hi)
    if prompt < profile.cache_min_tokens:
        return CachePlan(prompt)
    if profile.provider != "anthropic":  # OpenAI-style automatic prefix caching
        if not hit:
            return CachePlan(prompt)
        cached = max(profile.cache_min_tokens, int(prompt * share) // 128 * 128)
        return CachePlan(prompt, cache_read=min(cached, prompt))
    cached = max(1, int(prompt * share))
    if hit:
        return CachePlan(prompt, cache_read=cached)
    if cache_control:
        return CachePlan(prompt, cache_write=cached, cache_write_ttl=ttl)
    return CachePlan(prompt)


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """What the model "writes" for one request, already cut at the request's output limit."""

    reasoning: int
    """Reasoning/thinking tokens billed (inside ``output``)."""
    thinking_text: str
    """Anthropic thinking text (``text_tokens`` == ``reasoning``); empty for OpenAI."""
    text: str
    """Visible text (``text_tokens`` == ``visible``)."""
    visible: int
    finish: Literal["stop", "length"]
    answer: str
    answer_format: AnswerFormat
    correct: bool | None

    @property
    def output(self) -> int:
        return self.reasoning + self.visible


def _default_difficulty(fmt: AnswerFormat) -> float:
    return {"boxed": 0.7, "letter": 0.5, "text": 0.3}[fmt]


def plan_output(
    profile: ModelProfile,
    rng: random.Random,
    *,
    limit: int,
    user_text: str,
    answer_key: AnswerKey | None,
    reasoning_enabled: bool,
    reasoning_cap: int | None = None,
    effort: str | None = None,
    show_thinking: bool = False,
    structured: bool = False,
) -> OutputPlan:
    """Draw the answer and the lengths, then cut at ``limit`` the way the real APIs do.

    Args:
        limit: the request's output limit (reasoning included).
        reasoning_enabled: the model reasons on this request (OpenAI reasoning model, or Anthropic
            thinking enabled).
        reasoning_cap: Anthropic ``budget_tokens``.
        show_thinking: build ``thinking_text`` (Anthropic streams its thinking).
        structured: a json_schema response format: the visible text is exactly the JSON object of
            :func:`harness.sim.judge.structured_reply` (no prose around it).
    """
    if structured:
        return _structured_plan(profile, rng, limit, user_text, reasoning_enabled, reasoning_cap, effort)
    entry = answer_key.get(user_text) if answer_key is not None else None
    answer, fmt, correct, difficulty = choose_answer(entry, user_text, profile, rng)
    if difficulty is None:
        difficulty = _default_difficulty(fmt)
    suffix = _answer_suffix(answer, fmt)
    suffix_tokens = text_tokens(suffix) + 1
    visible_full = max(profile.output_tokens.draw(rng), suffix_tokens + 2)
    reasoning = 0
    if reasoning_enabled and profile.reasoning_tokens is not None:
        reasoning = profile.reasoning_tokens.draw(rng, difficulty, profile.effort_scale(effort))
        if reasoning_cap is not None:
            reasoning = min(reasoning, reasoning_cap)
    body = filler(4 * visible_full - len(suffix.encode("utf-8")), rng) + suffix
    full_text = _fit(body, visible_full)
    finish: Literal["stop", "length"] = "stop"
    if reasoning >= limit:
        reasoning, visible, finish = limit, 0, "length"
    elif reasoning + visible_full > limit:
        visible, finish = limit - reasoning, "length"
    else:
        visible = visible_full
    text = full_text if visible == visible_full else _fit(full_text, visible)
    if visible == 0:
        text = ""
    thinking_text = filler(4 * reasoning, rng) if show_thinking and reasoning else ""
    return OutputPlan(reasoning, thinking_text, text, visible, finish, answer, fmt, correct)


def _structured_plan(
    profile: ModelProfile,
    rng: random.Random,
    limit: int,
    user_text: str,
    reasoning_enabled: bool,
    reasoning_cap: int | None,
    effort: str | None,
) -> OutputPlan:
    from harness.sim.judge import structured_reply

    text = structured_reply(user_text)
    visible = text_tokens(text)
    reasoning = 0
    if reasoning_enabled and profile.reasoning_tokens is not None:
        reasoning = profile.reasoning_tokens.draw(rng, 0.3, profile.effort_scale(effort))
        if reasoning_cap is not None:
            reasoning = min(reasoning, reasoning_cap)
    text = _fit(text, visible)
    if reasoning + visible > limit:
        reasoning = min(reasoning, limit)
        visible = max(0, limit - reasoning)
        return OutputPlan(
            reasoning, "", _fit(text, visible) if visible else "", visible, "length", "", "text", None
        )
    return OutputPlan(reasoning, "", text, visible, "stop", "", "text", None)
