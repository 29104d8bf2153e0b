"""Gemini wire shapes (Gemini Developer API ``v1beta``): request validation, ``generateContent`` bodies,
``streamGenerateContent?alt=sse`` streams, ``countTokens`` and ``google.rpc`` error bodies.

Requests (what google-genai sends): ``contents`` (``role`` user/model, ``parts[].text``),
``systemInstruction``, ``generationConfig`` with ``maxOutputTokens``, ``temperature``, ``seed`` and
``thinkingConfig`` (``thinkingBudget`` for Gemini 2.5, ``thinkingLevel`` for Gemini 3, not both;
``includeThoughts`` streams thought summaries as parts with ``"thought": true``). The API key comes in
``x-goog-api-key`` (or ``?key=``). ``maxOutputTokens`` includes the thinking tokens.

Responses: every stream chunk is ``data: {GenerateContentResponse}`` framed with CRLF, carrying the
running ``usageMetadata``; the last one also carries ``finishReason`` (``STOP`` / ``MAX_TOKENS``) and the
full usage: ``promptTokenCount`` *includes* ``cachedContentTokenCount`` (implicit caching), and
``thoughtsTokenCount`` is *apart from* ``candidatesTokenCount``. Errors are ``{"error": {"code",
"message", "status", "details"}}``; a 429 ``RESOURCE_EXHAUSTED`` carries a ``google.rpc.RetryInfo``
``retryDelay`` in ``details`` and no ``retry-after`` header, as the real API does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.sim.faults import FaultKind
from harness.sim.generate import CachePlan, OutputPlan, prompt_tokens
from harness.sim.parse import Refuse, content_text, image_tokens, request_images
from harness.sim.profiles import ModelProfile
from harness.sim.streaming import Rendered
from harness.types import Usage

__all__ = [
    "GeminiParams",
    "gemini_auth_error",
    "gemini_body",
    "gemini_count_tokens",
    "gemini_error_body",
    "gemini_fault_error",
    "gemini_not_found",
    "gemini_rate_limited",
    "gemini_stream",
    "gemini_texts",
    "gemini_usage",
    "parse_gemini",
    "usage_from_gemini",
]

#: HTTP status -> ``google.rpc.Code`` name, as the Gemini API pairs them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

#: Thinking budget rules by model: (lowest budget, highest budget, thinking can be turned off with 0).
#: Models not listed accept 0 (when they can think) up to their output limit.
_BUDGETS: dict[str, tuple[int, int, bool]] = {
    "gemini-2.5-pro": (128, 32768, False),
    "gemini-2.5-flash": (1, 24576, True),
    "gemini-2.5-flash-lite": (512, 24576, True),
}

_RPC = "type.googleapis.com/google.rpc."
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_paid_tier_requests"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _invalid(message: str) -> Refuse:
    return Refuse(400, message, "INVALID_ARGUMENT")


def _duration(seconds: float) -> str:
    """A ``google.protobuf.Duration`` in its JSON form (``"13s"``, ``"0.250s"``)."""
    if seconds == math.floor(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


# ---------------------------------------------------------------------------------------------- errors


def gemini_error_body(err: Refuse) -> dict[str, Any]:
    """The ``{"error": {...}}`` body of a refusal; a 429 gets QuotaFailure, Help and RetryInfo details."""
    status = err.kind if err.kind.isupper() else STATUS_NAMES.get(err.status, "UNKNOWN")
    error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    details: list[dict[str, Any]] = []
    if err.code == "API_KEY_INVALID":
        details.append(
            {
                "@type": _RPC + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if err.status == 429:
        details.append(
            {
                "@type": _RPC + "QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _QUOTA_METRIC,
                        "quotaId": err.param or "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaDimensions": {"location": "global", "model": err.code or ""},
                    }
                ],
            }
        )
        details.append(
            {
                "@type": _RPC + "Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            }
        )
    if err.retry_after_s is not None:
        details.append({"@type": _RPC + "RetryInfo", "retryDelay": _duration(err.retry_after_s)})
    if details:
        error["details"] = details
    return {"error": error}


def gemini_auth_error() -> Refuse:
    """The 403 for a request without an API key."""
    return Refuse(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API "
        "Key or other form of API consumer identity to call this API.",
        "PERMISSION_DENIED",
    )


def gemini_not_found(model: str) -> Refuse:
    """The 404 for an unknown model."""
    return Refuse(
        404,
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
        "NOT_FOUND",
    )


def gemini_rate_limited(profile: ModelProfile, which: str, retry_after_s: float | None) -> Refuse:
    """A 429 ``RESOURCE_EXHAUSTED`` for a per-minute quota (``which`` is ``requests`` or ``tokens``)."""
    quota = (
        "GenerateRequestsPerMinutePerProjectPerModel"
        if which == "requests"
        else "GenerateContentInputTokensPerModelPerMinute"
    )
    return Refuse(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
        f"Please retry in {retry_after_s or 1:g}s.",
        "RESOURCE_EXHAUSTED",
        code=profile.id,
        param=quota,
        retry_after_s=retry_after_s if retry_after_s is not None else 1.0,
    )


def gemini_fault_error(profile: ModelProfile, kind: FaultKind | None, retry_after_s: float) -> Refuse:
    """The pre-generation error of an injected fault (429 with RetryInfo, 500, 503)."""
    if kind == "rate_limit_429":
        return gemini_rate_limited(profile, "requests", retry_after_s)
    if kind == "error_500":
        return Refuse(
            500,
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
            "INTERNAL",
        )
    # 503 and the Anthropic-style 529: Gemini says UNAVAILABLE.
    return Refuse(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")


# ---------------------------------------------------------------------------------------------- requests


def gemini_texts(body: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """``(contents as (role, text), every prompt text with the system instruction first)``."""
    msgs: list[tuple[str, str]] = []
    contents = body.get("contents")
    if isinstance(contents, list):
        for c in contents:
            if isinstance(c, Mapping):
                msgs.append((str(c.get("role") or "user"), content_text(c.get("parts"))))
    texts = [t for _, t in msgs]
    system = _field(body, "systemInstruction")
    if isinstance(system, Mapping):
        texts.insert(0, content_text(system.get("parts")))
    elif isinstance(system, str):
        texts.insert(0, system)
    return msgs, texts


def _field(obj: Mapping[str, Any], camel: str) -> Any:
    """A request field by its JSON name or its proto name: the API accepts both (google-genai sends
    ``thinkingConfig`` with snake_case keys, the model dump of ``ThinkingConfig``)."""
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake)


def _last_user(msgs: list[tuple[str, str]]) -> str:
    for role, text in reversed(msgs):
        if role == "user":
            return text
    return msgs[-1][1] if msgs else ""


def parse_gemini(profile: ModelProfile, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``generateContent`` body (output limit, thinking budget or level).

    Raises:
        Refuse: the 400 ``INVALID_ARGUMENT`` the real API answers.
    """
    msgs, texts = gemini_texts(body)
    if not msgs:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified")
    try:
        images = image_tokens(profile, profile.id, request_images("gemini", body))
    except Refuse as exc:  # Gemini words every bad request INVALID_ARGUMENT
        raise _invalid(exc.message) from None
    config = _field(body, "generationConfig") or {}
    if not isinstance(config, dict):
        raise _invalid('Invalid JSON payload received. Unknown name "generationConfig": not an object.')
    limit = profile.max_output_tokens
    max_out = _field(config, "maxOutputTokens")
    if max_out is not None:
        if (
            not isinstance(max_out, int)
            or isinstance(max_out, bool)
            or not 1 <= max_out <= profile.max_output_tokens
        ):
            raise _invalid(
                f"Unable to submit request because it has a maxOutputTokens value of {max_out} but the "
                f"supported range is from 1 (inclusive) to {profile.max_output_tokens + 1} (exclusive). "
                "Update the value and try again."
            )
        limit = max_out
    thinking = _field(config, "thinkingConfig") or {}
    if not isinstance(thinking, dict):
        raise _invalid("generationConfig.thinkingConfig must be an object.")
    budget = _field(thinking, "thinkingBudget")
    level = _field(thinking, "thinkingLevel")
    can_think = profile.reasoning or profile.thinking
    if budget is not None and level is not None:
        raise _invalid("You can only set only one of thinking budget and thinking level.")
    enabled = profile.reasoning
    cap: int | None = None
    effort: str | None = None
    if level is not None:
        levels = set(profile.effort)
        if not levels:
            raise _invalid("Thinking level is not supported for this model.")
        effort = str(level).lower()
        if effort not in levels:
            raise _invalid(
                f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level!r}); use one "
                f"of {', '.join(sorted(x.upper() for x in levels))}."
            )
        enabled = can_think
    elif budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise _invalid("generationConfig.thinkingConfig.thinkingBudget must be an integer.")
        lo, hi, can_disable = _BUDGETS.get(profile.id, (1, profile.max_output_tokens, True))
        if not can_think and budget != 0:
            raise _invalid("Thinking is not supported for this model.")
        if budget == 0:
            if profile.reasoning and not can_disable:
                raise _invalid("Budget 0 is invalid. This model only works in thinking mode.")
            enabled = False
        elif budget == -1:
            enabled = True  # dynamic: the model decides
        elif not lo <= budget <= hi:
            raise _invalid(
                f"The thinking budget {budget} is invalid. Please choose a value between {lo} and {hi}."
            )
        else:
            enabled, cap = True, budget
    temperature = _field(config, "temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise _invalid("generationConfig.temperature must be a number from 0 to 2.")
    return {
        "prompt": prompt_tokens(texts) + images,
        "limit": limit,
        "user_text": _last_user(msgs),
        "reasoning": enabled and profile.reasoning_tokens is not None,
        "reasoning_cap": cap,
        "effort": effort,
        "show_thinking": bool(_field(thinking, "includeThoughts")) and enabled,
    }


def gemini_count_tokens(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``countTokens`` answer (``contents``, or a whole ``generateContentRequest``).

    Raises:
        Refuse: no contents.
    """
    inner = _field(body, "generateContentRequest")
    msgs, texts = gemini_texts(inner if isinstance(inner, Mapping) else body)
    if not msgs:
        raise _invalid("* CountTokensRequest.contents: contents is not specified")
    n = prompt_tokens(texts)
    return {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}


# ---------------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class GeminiParams:
    """Per-request values the renderers need."""

    response_id: str
    request_id: str


def _finish(plan: OutputPlan) -> str:
    return "MAX_TOKENS" if plan.finish == "length" else "STOP"


def gemini_usage(
    plan: OutputPlan, cache: CachePlan, *, candidates: int | None = None, final: bool = True
) -> dict[str, Any]:
    """``usageMetadata``: the prompt includes cache hits; thoughts are apart from the candidates."""
    visible = plan.visible if candidates is None else candidates
    usage: dict[str, Any] = {"promptTokenCount": cache.prompt}
    if final or visible:
        usage["candidatesTokenCount"] = visible
    usage["totalTokenCount"] = cache.prompt + visible + plan.reasoning
    if cache.cache_read:
        usage["cachedContentTokenCount"] = cache.cache_read
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": cache.prompt}]
    if cache.cache_read:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cache.cache_read}]
    if plan.reasoning:
        usage["thoughtsTokenCount"] = plan.reasoning
    return usage


def usage_from_gemini(raw: Mapping[str, Any]) -> Usage:
    """Normalise a ``usageMetadata`` exactly as tollbench's adapter does (PROTOCOLS.md §12)."""

    def n(key: str) -> int:
        v = raw.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    prompt = n("promptTokenCount")
    cached = min(prompt, n("cachedContentTokenCount"))
    thoughts = n("thoughtsTokenCount")
    return Usage(
        input_uncached=prompt - cached + n("toolUsePromptTokenCount"),
        cache_read=cached,
        output=n("candidatesTokenCount") + thoughts,
        reasoning=thoughts,
    )


def _candidate(parts: list[dict[str, Any]] | None, finish: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"role": "model"}
    if parts:
        content = {"parts": parts, "role": "model"}
    cand: dict[str, Any] = {"content": content}
    if finish is not None:
        cand["finishReason"] = finish
    cand["index"] = 0
    return cand


def gemini_body(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: GeminiParams) -> dict[str, Any]:
    """A non-streaming ``GenerateContentResponse``."""
    parts: list[dict[str, Any]] = []
    if plan.thinking_text:
        parts.append({"text": plan.thinking_text, "thought": True})
    if plan.text:
        parts.append({"text": plan.text})
    return {
        "candidates": [_candidate(parts, _finish(plan))],
        "usageMetadata": gemini_usage(plan, cache),
        "modelVersion": profile.response_model,
        "responseId": p.response_id,
    }


def _event(obj: Mapping[str, Any]) -> bytes:
    return f"data: {_dumps(obj)}\r\n\r\n".encode()


def _pieces(text: str, chunk_chars: int) -> list[str]:
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def gemini_stream(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: GeminiParams) -> Rendered:
    """Thought summaries (when asked for), then text chunks, the last one with ``finishReason`` and the
    full usage; every chunk carries the running ``usageMetadata``."""
    events: list[bytes] = []
    tokens: list[int] = []
    head = {"modelVersion": profile.response_model, "responseId": p.response_id}

    def chunk(parts: list[dict[str, Any]] | None, visible: int, finish: str | None) -> dict[str, Any]:
        return {
            "candidates": [_candidate(parts, finish)],
            "usageMetadata": gemini_usage(plan, cache, candidates=visible, final=finish is not None),
            **head,
        }

    if plan.thinking_text:
        nbytes = 0
        for piece in _pieces(plan.thinking_text, 4 * profile.thinking_chunk_tokens):
            nbytes += len(piece)
            events.append(_event(chunk([{"text": piece, "thought": True}], 0, None)))
            tokens.append(min(plan.reasoning, (nbytes + 3) // 4))
    pieces = _pieces(plan.text, 4 * profile.chunk_tokens) if plan.text else []
    nbytes = 0
    for piece in pieces[:-1]:
        nbytes += len(piece.encode("utf-8"))
        visible = min(plan.visible, (nbytes + 3) // 4)
        events.append(_event(chunk([{"text": piece}], visible, None)))
        tokens.append(plan.reasoning + visible)
    final_index = len(events)
    last = [{"text": pieces[-1]}] if pieces else None
    events.append(_event(chunk(last, plan.visible, _finish(plan))))
    tokens.append(plan.output)
    full = gemini_usage(plan, cache)

    def error_event(_n: int) -> bytes:
        err = {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        }
        return _event(err)

    def malformed(_n: int) -> bytes:
        return b'data: {"candidates":[{"content":{"parts":[{"text":"tru\r\n\r\n'

    return Rendered(
        events,
        tokens,
        final_index,
        full,
        usage_from_gemini(full),
        "incomplete" if plan.finish == "length" else "completed",
        plan.reasoning,
        error_event,
        malformed,
    )
