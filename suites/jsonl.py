"""``jsonl``: a suite from the user's own JSONL file (one JSON object per line).

Options (``--suite-option KEY=VALUE`` or however the CLI passes them):

=================  ==========================================================================
``prompt_field``   field with the prompt text (default ``prompt``); sent verbatim as the user turn
``answer_field``   field with the reference answer (default ``answer``)
``scorer``         ``exact`` (default), ``mc``, ``math`` or ``regex``
``pattern``        for ``regex``: the regular expression that finds the answer in the response
                   (its last match; group 1 if the pattern has a group, else the whole match)
``id_field``       field with a unique item id (default ``id`` when present, else ``line-N``)
``choices_field``  for ``mc``: a list of options; the prompt then gets the AA multiple-choice
                   instruction and ``A) ...`` lines, and the answer may be a letter, a 0-based
                   index or the option's text
``stratum_field``  field used for stratified ``--limit`` sampling (optional)
``repeats``        default repeats (default 1)
=================  ==========================================================================

Scorers: ``exact`` compares (case-insensitive, whitespace collapsed, surrounding quotes and ``*``
and a final period removed) the value after the last ``Answer:`` or, without one, the last non-empty
line (or the whole response) with the answer; ``mc`` extracts the option letter like MMLU-Pro;
``math`` takes the last ``\\boxed{}`` and checks equivalence with math-verify; ``regex`` compares
the pattern's capture with the answer like ``exact``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError, DataError
from harness.suite import Item, Score
from harness.types import Message, Prompt

from .base import MC_INSTRUCTION_AA, BaseSuite, SuiteInfo, mc_question
from .extract import LETTERS, extract_answer_line
from .loaders import column_list, read_rows, unique_ids
from .scoring import empty_score, score_letter, score_math

__all__ = ["INFO", "OPTIONS", "JsonlSuite", "load", "normalize_text"]

ScorerName = Literal["exact", "mc", "math", "regex"]

INFO = SuiteInfo(
    name="jsonl",
    items=0,
    source="your own JSONL file (--data FILE)",
    license="yours",
    access="local file",
    default_repeats=1,
    description="prompt/answer fields with an exact, mc, math or regex scorer",
)

OPTIONS = (
    "prompt_field",
    "answer_field",
    "scorer",
    "pattern",
    "id_field",
    "choices_field",
    "stratum_field",
    "repeats",
)
_SCORERS: tuple[ScorerName, ...] = ("exact", "mc", "math", "regex")


def normalize_text(s: str) -> str:
    """Case-folded, whitespace-collapsed text without surrounding quotes, ``*``, ``$`` or final period."""
    t = re.sub(r"\s+", " ", s).strip()
    t = t.strip("*_`\"' $").strip()
    t = re.sub(r"\.$", "", t).strip()
    return t.casefold()


class JsonlSuite(BaseSuite):
    """A user's JSONL suite with one of four scorers."""

    def __init__(
        self,
        items: list[Item],
        source: str,
        *,
        scorer: ScorerName,
        pattern: re.Pattern[str] | None,
        repeats: int,
        name: str = "jsonl",
    ) -> None:
        super().__init__(name, repeats, items, source)
        self.scorer: ScorerName = scorer
        self.pattern = pattern

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        """The prompt verbatim (with options appended for ``mc`` with a choices field)."""
        meta: dict[str, Any] = {"item_id": item.id, "scorer": self.scorer}
        if self.scorer == "mc":
            options = item.data.get("options")
            if options:
                text, letters = mc_question(MC_INSTRUCTION_AA, item.question, list(options))
            else:
                text = item.question
                n = max(4, LETTERS.index(item.answer) + 1)
                letters = tuple(LETTERS[:n])
            return Prompt((Message("user", text),), item.answer, "letter", letters, meta)
        if self.scorer == "math":
            return Prompt((Message("user", item.question),), item.answer, "boxed", (), meta)
        return Prompt((Message("user", item.question),), item.answer, "text", (), meta)

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Score with the configured scorer (empty text is ``unusable``/``empty``)."""
        if self.scorer == "mc":
            return score_letter(prompt, text)
        if self.scorer == "math":
            return await score_math(prompt, text)
        empty = empty_score(text)
        if empty is not None:
            return empty
        gold = normalize_text(prompt.target)
        if self.scorer == "regex":
            assert self.pattern is not None
            matches = list(self.pattern.finditer(text))
            if not matches:
                return Score(status="scored", correct=False, extracted=None)
            last = matches[-1]
            extracted = (last.group(1) if self.pattern.groups else last.group(0)) or ""
            return Score(status="scored", correct=normalize_text(extracted) == gold, extracted=extracted)
        candidate = extract_answer_line(text)
        if candidate is None:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            candidate = lines[-1].strip() if lines else text.strip()
        correct = normalize_text(candidate) == gold or normalize_text(text) == gold
        return Score(status="scored", correct=correct, extracted=candidate)


def _mc_answer(value: Any, options: list[str] | None, where: str) -> str:
    """The gold letter from a letter, a 0-based index or (with options) the option's text."""
    n = len(options) if options else len(LETTERS)
    if isinstance(value, bool):
        raise DataError(f"{where}: the answer must be a letter, an index or an option, got {value!r}")
    if isinstance(value, int):
        if 0 <= value < n:
            return LETTERS[value]
        raise DataError(f"{where}: answer index {value} is out of range (0-{n - 1})")
    text = str(value).strip()
    if len(text) == 1 and text.upper() in LETTERS[:n]:
        return text.upper()
    if options:
        matches = [i for i, o in enumerate(options) if normalize_text(o) == normalize_text(text)]
        if len(matches) == 1:
            return LETTERS[matches[0]]
    raise DataError(f"{where}: answer {text!r} is not an option letter (A-{LETTERS[n - 1]}) or an option")


def load(path: Path, options: Mapping[str, str] | None = None, *, name: str = "jsonl") -> JsonlSuite:
    """Load a user's JSONL suite.

    Args:
        path: The JSONL file.
        options: See the module docstring; unknown keys are an error.
        name: The suite's name in reports.

    Raises:
        ConfigError: an unknown option or scorer, a missing or invalid ``pattern``.
        DataError: a bad line, a missing field, a duplicate id (each with the line number).
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown jsonl suite option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    scorer = opts.get("scorer", "exact").strip().lower()
    if scorer not in _SCORERS:
        raise ConfigError(f"unknown scorer {scorer!r} for the jsonl suite; use one of {', '.join(_SCORERS)}")
    pattern: re.Pattern[str] | None = None
    if scorer == "regex":
        if not opts.get("pattern"):
            raise ConfigError("the regex scorer needs pattern=REGEX (its group 1 or match is the answer)")
        try:
            pattern = re.compile(opts["pattern"], re.MULTILINE)
        except re.error as exc:
            raise ConfigError(f"invalid pattern {opts['pattern']!r}: {exc}") from None
    try:
        repeats = int(opts.get("repeats", "1"))
    except ValueError:
        raise ConfigError(f"repeats must be an integer, got {opts['repeats']!r}") from None
    if repeats < 1:
        raise ConfigError("repeats must be at least 1")
    prompt_field = opts.get("prompt_field", "prompt")
    answer_field = opts.get("answer_field", "answer")
    id_field = opts.get("id_field")
    choices_field = opts.get("choices_field")
    stratum_field = opts.get("stratum_field")

    path = Path(path).expanduser()
    rows = read_rows(path)
    schema = f"jsonl suite ({prompt_field}, {answer_field})"
    items: list[Item] = []
    for row in rows:
        line = row.where.rsplit("line ", 1)[-1]
        prompt = row.require(prompt_field, schema=schema)
        if not isinstance(prompt, str):
            raise DataError(f"{row.where}: field {prompt_field!r} must be a string")
        answer = row.get(answer_field)
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise DataError(f"{row.where}: missing field {answer_field!r} (expected the {schema} schema)")
        data: dict[str, Any] = {}
        if scorer == "mc":
            choices: list[str] | None = None
            if choices_field:
                raw = column_list(row.require(choices_field, schema=schema))
                if raw is None or len(raw) < 2 or len(raw) > len(LETTERS):
                    raise DataError(
                        f"{row.where}: field {choices_field!r} must be a list of 2 or more options"
                    )
                choices = [str(c) for c in raw]
                data["options"] = choices
            answer_text = _mc_answer(answer, choices, row.where)
        else:
            answer_text = str(answer)
        if id_field:
            raw_id = row.require(id_field, schema=schema)
            item_id = str(raw_id)
        else:
            raw_id = row.get("id")
            item_id = str(raw_id) if raw_id is not None and str(raw_id).strip() else f"line-{line}"
        stratum = str(row.get(stratum_field) or "") if stratum_field else ""
        items.append(Item(item_id, prompt, answer_text, stratum, data))
    unique_ids([it.id for it in items], [r.where for r in rows])
    return JsonlSuite(items, str(path), scorer=scorer, pattern=pattern, repeats=repeats, name=name)
