"""Request validation for the simulator: what each provider accepts, and the 4xx it answers otherwise.

Each ``parse_*`` function takes the resolved profile and the JSON body and returns the values the
generation needs (``prompt`` tokens, output ``limit``, last user text, reasoning settings, ...), or
raises :class:`Refuse`, which the app turns into the provider's error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.models import image_rule_for
from harness.sim.faults import FaultKind
from harness.sim.generate import prompt_tokens
from harness.sim.profiles import ModelProfile
from harness.types import Image, image_tokens_upper_bound

__all__ = [
    "Refuse",
    "anthropic_texts",
    "auth_error",
    "content_text",
    "fault_error",
    "image_tokens",
    "request_images",
    "not_found",
    "parse_chat",
    "parse_messages",
    "parse_responses",
]


class Refuse(Exception):
    """A request refused before generation (turned into the provider's error response)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.retry_after_s = retry_after_s


def content_text(content: Any) -> str:
    """The text of a message content (a string, or the ``text`` of each part, newline-joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def _image(value: Any, declared: Any = None, *, strict_type: bool = False) -> Image:
    """One image of a request from a data URL or bare base64, or the 400 an API answers."""
    if not isinstance(value, str):
        raise Refuse(400, "Invalid image: expected a base64 string or data URL.", "invalid_request_error")
    if not value.startswith("data:") and value.startswith(("http://", "https://")):
        raise Refuse(
            400,
            "The simulator does not fetch image URLs; send the image as a base64 data URL.",
            "invalid_request_error",
        )
    try:
        image = Image.from_data_url(value)
    except ValueError as exc:
        raise Refuse(400, f"Invalid image: {exc}.", "invalid_request_error") from None
    if strict_type and declared != image.media_type:
        raise Refuse(
            400,
            f"Image does not match the provided media type {declared}",
            "invalid_request_error",
        )
    return image


def request_images(wire: str, body: Mapping[str, Any]) -> list[Image]:
    """Every image part of a request body in its wire format: ``chat`` (``image_url`` parts),
    ``responses`` (``input_image``), ``messages`` (``image`` blocks, base64 source) or ``gemini``
    (``inline_data`` / ``inlineData`` parts).

    Raises:
        Refuse: an image that is not valid base64 of a PNG, JPEG, GIF or WebP file, a URL (not
            fetched), or an Anthropic image whose declared media type is not its bytes'.
    """
    key = {"gemini": "contents", "responses": "input"}.get(wire, "messages")
    items = body.get(key)
    out: list[Image] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, Mapping):
            continue
        parts = item.get("parts") if wire == "gemini" else item.get("content")
        if not isinstance(parts, list):
            continue
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            if wire == "chat" and part.get("type") == "image_url":
                url = part.get("image_url")
                out.append(_image(url.get("url") if isinstance(url, Mapping) else url))
            elif wire == "responses" and part.get("type") == "input_image":
                out.append(_image(part.get("image_url")))
            elif wire == "messages" and part.get("type") == "image":
                src = part.get("source")
                src = src if isinstance(src, Mapping) else {}
                if src.get("type") != "base64":
                    raise Refuse(
                        400,
                        "The simulator takes base64 image sources only.",
                        "invalid_request_error",
                    )
                out.append(_image(src.get("data"), src.get("media_type"), strict_type=True))
            elif wire == "gemini":
                blob = part.get("inlineData", part.get("inline_data"))
                if isinstance(blob, Mapping):
                    data = blob.get("data")
                    if isinstance(data, str):  # proto3 JSON bytes: standard or URL-safe base64
                        data = data.replace("-", "+").replace("_", "/")
                    out.append(_image(data))
    return out


def image_tokens(profile: ModelProfile, model: str, images: list[Image]) -> int:
    """The input tokens the images are billed: each by the model's image rule
    (:func:`harness.models.image_rule_for`), as tollbench bounds them.

    Raises:
        Refuse: the model takes no images (what the real APIs answer for a text-only model).
    """
    if not images:
        return 0
    rule = image_rule_for(profile.provider, model) or image_rule_for(profile.provider, profile.id)
    if rule is None:
        raise Refuse(
            400,
            f"Invalid content type. Image input is not supported by the model {model}.",
            "invalid_request_error",
            param="messages",
        )
    return sum(image_tokens_upper_bound(rule, image) for image in images)


def _model(profile: ModelProfile, body: Mapping[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else profile.id


def _messages(items: Any) -> list[tuple[str, str]]:
    out = []
    if isinstance(items, list):
        for m in items:
            if isinstance(m, dict):
                out.append((str(m.get("role", "user")), content_text(m.get("content"))))
    return out


def _last_user(msgs: list[tuple[str, str]]) -> str:
    for role, text in reversed(msgs):
        if role == "user":
            return text
    return msgs[-1][1] if msgs else ""


def _int_param(body: Mapping[str, Any], key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Refuse(400, f"Invalid '{key}': expected an integer >= 1.", "invalid_request_error", param=key)
    return v


def auth_error(provider: str) -> Refuse:
    """The 401 a provider answers when the request carries no API key."""
    if provider == "anthropic":
        return Refuse(401, "x-api-key header is required", "authentication_error")
    return Refuse(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
    )


def not_found(provider: str, model: str) -> Refuse:
    """The 404 for an unknown model, in the provider's wording."""
    if provider == "anthropic":
        return Refuse(404, f"model: {model}", "not_found_error")
    return Refuse(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        code="model_not_found",
    )


def fault_error(provider: str, profile: ModelProfile, kind: FaultKind | None, retry_after_s: float) -> Refuse:
    """The pre-generation error response of an injected fault (429/500/503/529)."""
    ra = retry_after_s
    if kind == "rate_limit_429":
        if provider == "anthropic":
            return Refuse(
                429,
                "This request would exceed your organization's rate limit. Please try again later.",
                "rate_limit_error",
                retry_after_s=ra,
            )
        return Refuse(
            429,
            f"Rate limit reached for {profile.id} in organization org-sim on requests per min (RPM): "
            f"Limit {profile.rpm}, Used {profile.rpm}, Requested 1. Please try again in {ra:g}s.",
            "requests",
            code="rate_limit_exceeded",
            retry_after_s=ra,
        )
    if kind == "error_500":
        if provider == "anthropic":
            return Refuse(500, "Internal server error", "api_error")
        return Refuse(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    if kind == "error_503":
        if provider == "anthropic":
            return Refuse(503, "Service unavailable", "api_error", retry_after_s=ra)
        return Refuse(503, "The server is overloaded or not ready yet.", "server_error", retry_after_s=ra)
    if provider == "anthropic":
        return Refuse(529, "Overloaded", "overloaded_error", retry_after_s=ra)
    return Refuse(
        529,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        retry_after_s=ra,
    )


def _oa_limit(profile: ModelProfile, body: dict[str, Any], keys: tuple[str, ...]) -> int:
    limit: int | None = None
    for key in keys:
        v = _int_param(body, key)
        if v is not None:
            limit = v
            break
    if limit is None:
        return profile.max_output_tokens
    if limit > profile.max_output_tokens:
        raise Refuse(
            400,
            f"{keys[0]} is too large: {limit}. This model supports at most {profile.max_output_tokens} "
            f"completion tokens, whereas you provided {limit}.",
            "invalid_request_error",
            param=keys[0],
            code="invalid_value",
        )
    return limit


def parse_chat(profile: ModelProfile, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a Chat Completions body.

    Raises:
        Refuse: the 400 the real API answers (e.g. ``max_tokens`` on a reasoning model).
    """
    msgs = _messages(body.get("messages"))
    if not msgs:
        raise Refuse(400, "[] is too short - 'messages'", "invalid_request_error", param="messages")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Refuse(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "invalid_request_error",
            param="stream_options",
        )
    if profile.provider == "openai" and profile.reasoning and body.get("max_tokens") is not None:
        raise Refuse(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "invalid_request_error",
            param="max_tokens",
            code="unsupported_parameter",
        )
    opts = body.get("stream_options")
    opts = opts if isinstance(opts, dict) else {}
    return {
        "prompt": prompt_tokens([t for _, t in msgs])
        + image_tokens(profile, _model(profile, body), request_images("chat", body)),
        "limit": _oa_limit(profile, body, ("max_completion_tokens", "max_tokens")),
        "user_text": _last_user(msgs),
        "reasoning": profile.reasoning,
        "effort": body.get("reasoning_effort"),
        "include_usage": bool(opts.get("include_usage")),
        "include_obfuscation": opts.get("include_obfuscation", True) is not False,
        "stream": bool(body.get("stream")),
        # A json_schema response format: answered with exactly one JSON object (harness.sim.judge).
        "structured": isinstance(rf := body.get("response_format"), dict) and rf.get("type") == "json_schema",
    }


def parse_responses(profile: ModelProfile, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a Responses body.

    Raises:
        Refuse: a missing ``input`` or a bad ``max_output_tokens``.
    """
    inp = body.get("input")
    msgs = [("user", inp)] if isinstance(inp, str) else _messages(inp)
    if not msgs:
        raise Refuse(400, "Missing required parameter: 'input'.", "invalid_request_error", param="input")
    instructions = body.get("instructions")
    texts = [t for _, t in msgs]
    if isinstance(instructions, str):
        texts.insert(0, instructions)
    reasoning = body.get("reasoning") or {}
    opts = body.get("stream_options")
    opts = opts if isinstance(opts, dict) else {}
    return {
        "prompt": prompt_tokens(texts)
        + image_tokens(profile, _model(profile, body), request_images("responses", body)),
        "limit": _oa_limit(profile, body, ("max_output_tokens",)),
        "max_output_tokens": body.get("max_output_tokens"),
        "user_text": _last_user(msgs),
        "reasoning": profile.reasoning,
        "effort": reasoning.get("effort") if isinstance(reasoning, dict) else None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "store": body.get("store", True) is not False,
        "temperature": float(body.get("temperature") or 1.0),
        "top_p": float(body.get("top_p") or 1.0),
        "metadata": body.get("metadata") or {},
        "include_obfuscation": opts.get("include_obfuscation", True) is not False,
        "stream": bool(body.get("stream")),
    }


def anthropic_texts(body: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """``(messages as (role, text), all prompt texts with the system prompt first)``."""
    msgs = _messages(body.get("messages"))
    texts = [t for _, t in msgs]
    system = body.get("system")
    if system:
        texts.insert(0, content_text(system))
    return msgs, texts


def _cache_control(body: dict[str, Any]) -> tuple[bool, str]:
    marks: list[Any] = []
    if isinstance(body.get("cache_control"), dict):
        marks.append(body["cache_control"])
    blocks: list[Any] = []
    if isinstance(body.get("system"), list):
        blocks.extend(body["system"])
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), list):
            blocks.extend(m["content"])
    marks.extend(
        b["cache_control"] for b in blocks if isinstance(b, dict) and isinstance(b.get("cache_control"), dict)
    )
    if not marks:
        return False, "5m"
    return True, "1h" if any(m.get("ttl") == "1h" for m in marks) else "5m"


def parse_messages(profile: ModelProfile, body: dict[str, Any]) -> dict[str, Any]:
    """Validate an Anthropic Messages body (``max_tokens`` required, thinking rules).

    Raises:
        Refuse: the 400 the real API answers.
    """
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise Refuse(400, "max_tokens: Field required", "invalid_request_error")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise Refuse(400, "max_tokens: Input should be greater than or equal to 1", "invalid_request_error")
    if max_tokens > profile.max_output_tokens:
        raise Refuse(
            400,
            f"max_tokens: {max_tokens} > {profile.max_output_tokens}, which is the maximum allowed "
            f"number of output tokens for {profile.response_model}",
            "invalid_request_error",
        )
    msgs, texts = anthropic_texts(body)
    if not msgs:
        raise Refuse(400, "messages: Field required", "invalid_request_error")
    thinking = body.get("thinking") or {}
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    enabled = kind in ("enabled", "adaptive")
    cap: int | None = None
    if enabled:
        if not profile.thinking:
            raise Refuse(400, f"'{body['model']}' does not support thinking.", "invalid_request_error")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise Refuse(
                    400,
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                    "invalid_request_error",
                )
            if max_tokens <= budget:
                raise Refuse(
                    400,
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                    "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                    "#max-tokens-and-context-window-size",
                    "invalid_request_error",
                )
            cap = budget
        else:
            cap = max_tokens - 1
    cc, ttl = _cache_control(body)
    oc = body.get("output_config")
    return {
        "prompt": prompt_tokens(texts)
        + image_tokens(profile, _model(profile, body), request_images("messages", body)),
        "limit": max_tokens,
        "user_text": _last_user(msgs),
        "reasoning": enabled,
        "reasoning_cap": cap,
        "effort": oc.get("effort") if isinstance(oc, dict) else None,
        "cache_control": cc,
        "cache_ttl": ttl,
        "stream": bool(body.get("stream")),
    }
