"""The simulator's answers to structured-output requests (an OpenAI ``response_format`` json_schema).

A request in the CAIS judge's form (Humanity's Last Exam: ``[question]: ... [response]: ...
[correct_answer]: ...``) is judged the way a careful judge would on plain answers: the response's
last ``Exact Answer:``/``Answer:`` line (else its last non-empty line) against the correct answer,
compared case- and space-insensitively; its ``Confidence: N%`` (else 100). The reply is exactly the
JSON object of the CAIS schema, nothing around it. Other structured requests get an empty object.
"""

from __future__ import annotations

import json
import re

__all__ = ["is_judge_prompt", "structured_reply"]

_JUDGE = re.compile(
    r"\[question\]: (?P<question>.*?)\n\n\[response\]: (?P<response>.*?)\n\nYour judgement must be"
    r".*?\[correct_answer\]: (?P<correct>.*?)\n\nreasoning:",
    re.DOTALL,
)
_ANSWER = re.compile(r"^\s*(?:Exact Answer|Answer)\s*:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_CONFIDENCE = re.compile(r"Confidence\s*:\s*(\d{1,3})", re.IGNORECASE)


def is_judge_prompt(text: str) -> bool:
    return _JUDGE.search(text) is not None


def _norm(text: str) -> str:
    return " ".join(text.strip().strip("*").rstrip(".").split()).casefold()


def structured_reply(user_text: str) -> str:
    """The JSON text a structured request is answered with."""
    m = _JUDGE.search(user_text)
    if m is None:
        return "{}"
    response, correct = m.group("response"), m.group("correct")
    answers = _ANSWER.findall(response)
    lines = [line for line in response.splitlines() if line.strip()]
    extracted = answers[-1] if answers else (lines[-1].strip() if lines else "None")
    conf = _CONFIDENCE.findall(response)
    confidence = min(100, int(conf[-1])) if conf else 100
    right = _norm(extracted) == _norm(correct)
    verdict = {
        "extracted_final_answer": extracted,
        "reasoning": "The extracted answer matches." if right else "The extracted answer differs.",
        "correct": "yes" if right else "no",
        "confidence": confidence,
        "strict": True,
    }
    return json.dumps(verdict)
