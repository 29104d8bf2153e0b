"""``hle``: Humanity's Last Exam (``cais/hle``), scored by an LLM judge whose calls are metered.

Data: ``cais/hle`` at a pinned revision (gated: accept its terms, then ``hf auth login``), one parquet
file, or ``--data`` in the same schema (parquet or JSONL: ``id``, ``question``, ``image``,
``answer``, ``answer_type``, ``category``, ...). Text-only by default (``image == ""``); the option
``images=true`` keeps the image items too (``image`` is a ``data:image/...;base64,`` URL or bare
base64 of a PNG, JPEG, GIF or WebP file). Image items need a model that takes images
(:data:`harness.models.IMAGE_RULES`, or ``image_tokens`` in its alias): a run with a text-only
model is refused before anything is sent (exit 2), never silently run without its images.

Prompt: the one official system prompt (CAIS, since upstream commit 67b3251, for every item), then the
question as the user turn, with its image after the text (as CAIS sends it: an ``image_url`` part on
Chat Completions; each adapter uses its provider's image part).

Scoring: the CAIS judge prompt verbatim, answered in CAIS's structured format
(``extracted_final_answer``, ``reasoning``, ``correct`` yes/no, ``confidence``, ``strict``) through
a ``json_schema`` response format. The judge is a model of its own (``--judge PROVIDER/MODEL``,
default ``openai/gpt-4o-2024-08-06`` at temperature 0, as Artificial Analysis and lighteval; the
CAIS repository's own default is ``o3-mini-2025-01-31``). Its calls are calls of role ``judge``:
reserved under the run's budget before they are sent, metered, cached and resumed like the model's
own. A judge that fails (after its retries) leaves the item ``unscored``: counted as wrong in the
accuracy (CAIS's denominator is every selected item) and reported beside it. The judge's
extracted confidence feeds the RMS calibration error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError
from harness.suite import Item, JudgeRequest, Score
from harness.types import Image, Message, Prompt

from .base import BaseSuite, SuiteInfo
from .loaders import HubSource, load_rows, unique_ids

__all__ = [
    "DEFAULT_JUDGE",
    "INFO",
    "JUDGE_PROMPT",
    "JUDGE_RESPONSE_FORMAT",
    "OPTIONS",
    "SOURCE",
    "SYSTEM_PROMPT",
    "HleSuite",
    "load",
]

SOURCE = HubSource(
    repo_id="cais/hle",
    filename="data/test-00000-of-00001.parquet",
    revision="5a81a4c7271a2a2a312b9a690f0c2fde837e4c29",  # as Inspect Evals pins it
    schema="cais/hle (id, question, image, answer, answer_type, category)",
    gated=True,
)

#: The judge of the cost study (AA v2, NVIDIA's config, lighteval); CAIS's own is o3-mini-2025-01-31.
DEFAULT_JUDGE = "openai/gpt-4o-2024-08-06"
CAIS_JUDGE = "openai/o3-mini-2025-01-31"

OPTIONS = ("images",)

INFO = SuiteInfo(
    name="hle",
    items=2158,
    source=f"{SOURCE.repo_id} (test split, text-only; images=true adds the image items)",
    license="MIT; do not redistribute (gated)",
    access="gated: accept the terms on huggingface.co/datasets/cais/hle, then `hf auth login` or HF_TOKEN",
    default_repeats=1,
    description="expert questions, LLM judge (--judge, metered), accuracy and calibration error",
)

#: The official system prompt (CAIS hle_eval; the multiple-choice form, used for every item).
SYSTEM_PROMPT = (
    "Your response should be in the following format:\n"
    "Explanation: {your explanation for your answer choice}\n"
    "Answer: {your chosen answer}\n"
    "Confidence: {your confidence score between 0% and 100% for your answer}"
)

#: The CAIS judge prompt, verbatim (centerforaisafety/hle ``hle_eval/run_judge_results.py``, as
#: quoted by Inspect Evals ``hle/prompts.py``), its typos included.
JUDGE_PROMPT = """Judge whether the following [response] to [question] is correct or not based on the precise and unambiguous [correct_answer] below.

[question]: {question}

[response]: {response}

Your judgement must be in the format and criteria specified below:

extracted_final_answer: The final exact answer extracted from the [response]. Put the extracted answer as 'None' if there is no exact, final answer to extract from the response.

[correct_answer]: {correct_answer}

reasoning: Explain why the extracted_final_answer is correct or incorrect based on [correct_answer], focusing only on if there are meaningful differences between [correct_answer] and the extracted_final_answer. Do not comment on any background to the problem, do not attempt to solve the problem, do not argue for any answer different than [correct_answer], focus only on whether the answers match.

correct: Answer 'yes' if extracted_final_answer matches the [correct_answer] given above, or is within a small margin of error for numerical problems. Answer 'no' otherwise, i.e. if there if there is any inconsistency, ambiguity, non-equivalency, or if the extracted answer is incorrect.


confidence: The extracted confidence score between 0|\\%| and 100|\\%| from [response]. Put 100 if there is no confidence score available."""  # noqa: E501

#: CAIS's ``ExtractedAnswer`` as a strict JSON schema (what ``beta.chat.completions.parse`` sends).
JUDGE_RESPONSE_FORMAT: Mapping[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "ExtractedAnswer",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "extracted_final_answer": {"type": "string"},
                "reasoning": {"type": "string"},
                "correct": {"type": "string", "enum": ["yes", "no"]},
                "confidence": {"type": "integer"},
                "strict": {"type": "boolean", "enum": [True]},
            },
            "required": ["extracted_final_answer", "reasoning", "correct", "confidence", "strict"],
            "additionalProperties": False,
        },
    },
}

#: The judge's output limit (CAIS: 4,096 completion tokens).
JUDGE_MAX_OUTPUT_TOKENS = 4096


class HleSuite(BaseSuite):
    """HLE items; scored by the run's judge (``harness.suite.JudgedSuite``)."""

    def target(self, item: Item) -> str:
        """The prompt's recorded target: the correct answer (tests script other answers here for the
        simulator to give; the judge always compares with ``item.answer``)."""
        return item.answer

    @property
    def image_item_ids(self) -> frozenset[str]:
        """The items sent with an image (only with ``images=true``): a run refuses a model that
        takes no images for them (``harness.run.plan``)."""
        return frozenset(i.id for i in self.items if isinstance(i.data.get("image"), Image))

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        image = item.data.get("image")
        images = (image,) if isinstance(image, Image) else ()
        return Prompt(
            messages=(Message("system", SYSTEM_PROMPT), Message("user", item.question, images)),
            target=self.target(item),
            answer_format="text",
            meta={
                "item_id": item.id,
                "answer_type": item.data.get("answer_type"),
                "category": item.data.get("category"),
            },
        )

    def judge_request(self, prompt: Prompt, text: str) -> JudgeRequest:
        """The CAIS judge prompt for this answer, as one user message (as CAIS sends it)."""
        item = self.item(str(prompt.meta["item_id"]))
        content = JUDGE_PROMPT.format(question=item.question, response=text, correct_answer=item.answer)
        return JudgeRequest((Message("user", content),), JUDGE_RESPONSE_FORMAT, JUDGE_MAX_OUTPUT_TOKENS)

    def judged_score(self, prompt: Prompt, text: str, judge_text: str | None) -> Score:
        """``correct`` from the judge's JSON; a missing or malformed judgment is ``unscored``
        (counted as wrong, reported apart). The extracted answer is ``extracted``; the confidence
        (0-100, clamped) goes to the result's meta for the calibration error."""
        verdict = parse_judgment(judge_text) if judge_text is not None else None
        if verdict is None:
            return Score("scored", False, None, "unscored")
        extracted, correct, confidence = verdict
        return Score("scored", correct, extracted, None, {"confidence": confidence})

    async def score(self, prompt: Prompt, text: str) -> Score:
        """Without its judge (the runner always sends one) an answer cannot be scored: ``unscored``."""
        return Score("scored", False, None, "unscored")


def parse_judgment(text: str) -> tuple[str, bool, int] | None:
    """``(extracted_final_answer, correct, confidence)`` from the judge's structured reply, or None."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        return None
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("correct") not in ("yes", "no"):
        return None
    try:
        confidence = int(value.get("confidence", 100))
    except (TypeError, ValueError):
        confidence = 100
    extracted = str(value.get("extracted_final_answer", ""))
    return extracted, value["correct"] == "yes", max(0, min(100, confidence))


def load(
    *, data: Path | None = None, offline: bool | None = None, options: Mapping[str, str] | None = None
) -> HleSuite:
    """Load HLE: the text-only items (``image == ""``), or every item with ``images=true``.

    Raises:
        ConfigError: unknown options, or an ``images`` value that is not true/false.
        DataError: missing data or access, a row without its fields, an image that is not base64
            of a PNG, JPEG, GIF or WebP file.
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"hle: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    flag = opts.get("images", "false").strip().lower()
    if flag not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"hle: images={opts['images']!r} must be true or false")
    images = flag in ("1", "true", "yes", "on")
    rows, source = load_rows(INFO.name, data=data, source=SOURCE, offline=offline)
    items: list[Item] = []
    wheres: list[str] = []
    for row in rows:
        item_id = str(row.require("id", schema=SOURCE.schema))
        question = str(row.require("question", schema=SOURCE.schema))
        answer = str(row.require("answer", schema=SOURCE.schema))
        image = row.get("image") or ""
        if not isinstance(image, str):
            raise DataError(f"{row.where}: image must be a data URI string or empty")
        part: Image | None = None
        if image:
            if not images:
                continue
            try:
                part = Image.from_data_url(image)
            except ValueError as exc:
                why = f"{row.where}: field 'image': {exc}"
                raise DataError(f"{why}; fix the row or drop images=true") from None
        answer_type = str(row.get("answer_type") or "")
        category = str(row.get("category") or "")
        data_: dict[str, Any] = {"answer_type": answer_type, "category": category, "image": part}
        items.append(Item(item_id, question, answer, category, data_))
        wheres.append(row.where)
    if not items:
        raise DataError(f"hle: no {'' if images else 'text-only '}item in {source}")
    unique_ids([i.id for i in items], wheres)
    return HleSuite(INFO.name, INFO.default_repeats, items, source)
