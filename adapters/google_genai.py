"""Google Gemini (Gemini Developer API, ``:streamGenerateContent?alt=sse``), always streamed, through the
official ``google-genai`` SDK.

Usage (PROTOCOLS.md §12, normalised once here): ``promptTokenCount`` *includes*
``cachedContentTokenCount``; ``toolUsePromptTokenCount`` is billed as input on top of it;
``thoughtsTokenCount`` is *apart from* ``candidatesTokenCount`` and billed at the output rate. So
``input_uncached = prompt - cached + tool_use_prompt``, ``output = candidates + thoughts`` and
``reasoning = thoughts``. Every chunk carries the running ``usageMetadata``; the last one is the bill.

Finish reasons: ``STOP`` ends an answer; ``MAX_TOKENS`` is ``length``; ``SAFETY``, ``RECITATION``,
``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII``, ``IMAGE_SAFETY`` and ``MODEL_ARMOR`` (and a prompt
blocked by ``promptFeedback.blockReason``) are ``refusal``; anything else is ``other``. A stream that
ends without a finish reason (or with ``CONTINUATION``, a checkpoint, not an end) is not an answer: it
raises a retryable :class:`~harness.errors.StreamInterrupted` that may be billed.

Errors: an HTTP error before any output is free (``error_for_status``); ``RESOURCE_EXHAUSTED`` (429)
waits the ``google.rpc.RetryInfo.retryDelay`` of the error's ``details`` (Gemini sends no
``retry-after`` header), except a per-day quota, which no wait within a run can lift; an error object
inside the 200 stream is retried by its code and may be billed; transport failures follow
:func:`adapters._common.billed_unless_proven_free`.

What the SDK must not do under a budget, and is told not to: retry (``HttpRetryOptions(attempts=1)``),
resume a stream by itself (``automatic_continuation=False``: each hop is another billed request) or
call functions by itself (``automatic_function_calling.disable``).

The SDK passes ``timeout=None`` to httpx2 for every request when ``HttpOptions.timeout`` is unset (and
setting it would also send ``X-Server-Timeout``, a server-side deadline for the whole generation), so
the adapter gives the SDK its own httpx2 client, whose per-request timeout stays the client's
:func:`~adapters._common.build_timeout`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from harness.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    DataError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
)
from harness.types import Completion, FinishReason, Message, ModelSpec, Request, RetryDecision, Usage

from ._base import AdapterBase, nonneg
from ._common import (
    HeaderLike,
    billed_unless_proven_free,
    build_timeout,
    classify_status,
    close_iteration_with_response,
    error_for_status,
    malformed_stream,
    note_error_status,
    one_line,
    parse_duration,
    redact,
    request_id_from_headers,
    transport_error,
    unread_error_body,
)

__all__ = [
    "GoogleGenAIAdapter",
    "check_gemini_extra_body",
    "gemini_finish_reason",
    "map_gemini_error",
    "retry_delay_from_details",
    "usage_from_gemini",
]

PROVIDER = "google"

#: The Gemini API version the adapter speaks (``/v1beta/models/...``).
API_VERSION = "v1beta"

_REFUSAL_FINISH = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "MODEL_ARMOR"}
)

#: ``thinking_level`` values by the ``reasoning_effort`` names tollbench uses.
_LEVELS = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}

#: ``extra_body`` keys refused for Gemini on top of :data:`harness.models.BILLING_EXTRA_BODY_KEYS`: a
#: ``generationConfig`` would override the output limit the reservation assumed (and the candidate
#: count), and ``cachedContent`` bills storage per token-hour outside any call.
_GEMINI_BILLING_KEYS = {
    "generationConfig": "set max_output_tokens / thinking_budget / reasoning_effort / temperature in the "
    "alias instead",
    "generation_config": "set max_output_tokens / thinking_budget / reasoning_effort / temperature in the "
    "alias instead",
    "cachedContent": "remove it (an explicit cache bills storage per hour, which the budget cannot bound)",
    "cached_content": "remove it (an explicit cache bills storage per hour, which the budget cannot bound)",
}
#: A Gemini tool is a mapping; only function declarations are run by the client. ``googleSearch``,
#: ``codeExecution``, ``urlContext``, ... are hosted tools with fees of their own.
_CLIENT_TOOL_KEYS = frozenset({"functionDeclarations", "function_declarations"})


def usage_from_gemini(meta: gt.GenerateContentResponseUsageMetadata) -> Usage:
    """Normalise Gemini ``usageMetadata`` (cached tokens inside the prompt, thoughts apart from the
    candidates, tool-use prompt tokens billed as input)."""
    prompt = nonneg(meta.prompt_token_count)
    cached = min(prompt, nonneg(meta.cached_content_token_count))
    tool_prompt = nonneg(meta.tool_use_prompt_token_count)
    thoughts = nonneg(meta.thoughts_token_count)
    return Usage(
        input_uncached=prompt - cached + tool_prompt,
        cache_read=cached,
        output=nonneg(meta.candidates_token_count) + thoughts,
        reasoning=thoughts,
    )


def gemini_finish_reason(raw: str | None) -> FinishReason:
    """Map a Gemini ``finishReason`` to :data:`harness.types.FinishReason`."""
    if raw == "STOP":
        return "stop"
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _REFUSAL_FINISH:
        return "refusal"
    return "other"


def _enum_str(value: object) -> str | None:
    if value is None:
        return None
    raw = getattr(value, "value", value)
    return str(raw)


def _error_object(details: object) -> Mapping[str, Any]:
    """The ``error`` object of a Gemini error body (``{"error": {code, message, status, details}}``)."""
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    if not isinstance(details, Mapping):
        return {}
    inner = details.get("error")
    return inner if isinstance(inner, Mapping) else details


def _detail_entries(error: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    entries = error.get("details")
    if not isinstance(entries, list):
        return []
    return [
        d
        for d in entries
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith(f"google.rpc.{kind}")
    ]


def retry_delay_from_details(error: Mapping[str, Any]) -> float | None:
    """Seconds from the ``google.rpc.RetryInfo`` entry of an error's ``details`` (``"13s"``,
    ``"0.250s"``), or None when there is none."""
    for entry in _detail_entries(error, "RetryInfo"):
        delay = entry.get("retryDelay")
        if isinstance(delay, str):
            seconds = parse_duration(delay)
            if seconds is not None:
                return seconds
        elif isinstance(delay, Mapping):  # the proto form {"seconds": 13, "nanos": 0}
            try:
                return max(0.0, float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9)
            except (TypeError, ValueError):
                continue
    return None


def _per_day_quota(error: Mapping[str, Any]) -> bool:
    """Whether a quota failure names a daily quota (``...PerDay...``): no wait within a run lifts it."""
    for entry in _detail_entries(error, "QuotaFailure"):
        for violation in entry.get("violations") or ():
            if isinstance(violation, Mapping) and "perday" in str(violation.get("quotaId", "")).lower():
                return True
    return False


def _error_reason(error: Mapping[str, Any]) -> str | None:
    for entry in _detail_entries(error, "ErrorInfo"):
        reason = entry.get("reason")
        if isinstance(reason, str):
            return reason
    return None


def _in_stream_error(
    exc: genai_errors.APIError,
    error: Mapping[str, Any],
    *,
    api_key: str,
    request_id: str | None,
    partial_text: str,
    partial_usage: Usage | None,
) -> ProviderError:
    """An error object received inside the 200 stream: classified by its code, and may be billed."""
    code = exc.code if isinstance(exc.code, int) else 500
    status = exc.status or None
    decision = classify_status(code, None, error_type=status)
    delay = retry_delay_from_details(error)
    if decision.retry and delay is not None:
        decision = RetryDecision(decision.retry, decision.kind, delay)
    cls: type[ProviderError]
    if code == 429:
        cls = RateLimited
    elif code in (401, 403):
        cls, decision = AuthError, RetryDecision.no()
    elif code >= 500 or code in (408, 409):
        cls = ProviderUnavailable
    else:
        cls = BadRequest
    text = f"{PROVIDER} stream error {code}" + (f" {status}" if status else "") + f": {exc.message or ''}"
    return cls(
        one_line(redact(text, (api_key,))),
        provider=PROVIDER,
        retry=decision,
        status_code=200,
        request_id=request_id,
        error_type=status or str(code),
        generation_started=True,
        partial_text=partial_text,
        partial_usage=partial_usage,
    )


def map_gemini_error(
    exc: BaseException,
    *,
    response_started: bool,
    api_key: str,
    headers: HeaderLike | None = None,
    request_id: str | None = None,
    partial_text: str = "",
    partial_usage: Usage | None = None,
) -> ProviderError | None:
    """Map a ``google.genai`` or raw ``httpx2`` exception to the harness hierarchy.

    Args:
        exc: what the SDK (or httpx2, while the stream is read) raised.
        response_started: the 200 response had arrived (its headers were received).
        api_key: removed from the message if the provider echoed it.
        headers: the 200 response's headers, when it had arrived.
        request_id: the ``responseId`` seen so far, if any.
        partial_text: text received before the failure.
        partial_usage: the last ``usageMetadata`` received, normalised.

    Returns:
        The harness error, or None when ``exc`` is not a provider/transport failure.
    """
    rid = request_id or request_id_from_headers(headers)
    if isinstance(exc, genai_errors.APIError):
        error = _error_object(exc.details)
        http_status = getattr(exc.response, "status_code", None)
        if response_started or http_status == 200 or not isinstance(http_status, int):
            return _in_stream_error(
                exc,
                error,
                api_key=api_key,
                request_id=rid,
                partial_text=partial_text,
                partial_usage=partial_usage,
            )
        status = exc.status or None
        reason = _error_reason(error)
        response_headers: HeaderLike | None = getattr(exc.response, "headers", None)
        mapped = error_for_status(
            http_status,
            provider=PROVIDER,
            message=exc.message or str(exc),
            headers=response_headers,
            error_type=status,
            error_code=reason,
            request_id=request_id_from_headers(response_headers),
            secrets=(api_key,),
        )
        if reason in ("API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED") or status in (
            "UNAUTHENTICATED",
            "PERMISSION_DENIED",
        ):
            mapped = AuthError(
                mapped.message,
                provider=PROVIDER,
                retry=RetryDecision.no(),
                status_code=http_status,
                request_id=mapped.request_id,
                error_type=mapped.error_type,
            )
        elif http_status == 429 and _per_day_quota(error):
            mapped.retry = RetryDecision.no()
        elif mapped.retry.retry and mapped.retry.retry_after_s is None:
            delay = retry_delay_from_details(error)
            if delay is not None:
                mapped.retry = RetryDecision(mapped.retry.retry, mapped.retry.kind, delay)
        return mapped
    unread = unread_error_body(exc, provider=PROVIDER, secrets=(api_key,))
    if unread is not None:
        return unread
    if isinstance(exc, httpx2.TransportError):
        return transport_error(
            exc,
            provider=PROVIDER,
            timeout=isinstance(exc, httpx2.TimeoutException),
            generation_started=billed_unless_proven_free(exc, response_started=response_started),
            response_started=response_started,
            request_id=rid,
            partial_text=partial_text,
            partial_usage=partial_usage,
        )
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return malformed_stream(
            exc, provider=PROVIDER, request_id=rid, partial_text=partial_text, partial_usage=partial_usage
        )
    return None


class _Seen:
    """What the httpx2 response hook saw for one call: the status line, the headers and the response
    itself (closed by the call when it ends, whatever the SDK left open)."""

    __slots__ = ("headers", "response", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: httpx2.Headers | None = None
        self.response: httpx2.Response | None = None


#: The current call's :class:`_Seen` (the hook runs in the task that iterates the stream).
_SEEN: contextvars.ContextVar[_Seen | None] = contextvars.ContextVar("tollbench_gemini_seen", default=None)


async def _on_response(response: httpx2.Response) -> None:
    seen = _SEEN.get()
    if seen is not None:
        seen.status = response.status_code
        seen.headers = response.headers
        seen.response = response
    await note_error_status(response)
    await close_iteration_with_response(response)


class _AsyncClient(httpx2.AsyncClient):
    """An httpx2 client whose timeout the SDK cannot switch off: ``timeout=None`` per request (what the
    SDK passes when ``HttpOptions.timeout`` is unset) means the client's own timeout here."""

    def build_request(self, method: str, url: Any, **kwargs: Any) -> httpx2.Request:
        if kwargs.get("timeout", httpx2.USE_CLIENT_DEFAULT) is None:
            kwargs["timeout"] = httpx2.USE_CLIENT_DEFAULT
        return super().build_request(method, url, **kwargs)


def gemini_parts(m: Message) -> list[dict[str, Any]]:
    """A message's Gemini ``parts``: its text, then an ``inline_data`` part (bytes) per image."""
    parts: list[dict[str, Any]] = [{"text": m.content}] if m.content or not m.images else []
    parts += [{"inline_data": {"mime_type": image.media_type, "data": image.data}} for image in m.images]
    return parts


def check_gemini_extra_body(extra: Mapping[str, Any], *, model: str) -> None:
    """Refuse the Gemini-specific ``extra_body`` content that changes what a call can be billed.

    Raises:
        harness.errors.DataError: ``generationConfig`` / ``cachedContent``, or a hosted tool (any tool
            entry other than ``functionDeclarations``); nothing is sent.
    """
    for key, fix in _GEMINI_BILLING_KEYS.items():
        if key in extra:
            raise DataError(
                f"models.{model!r}.extra_body.{key} changes what the call can be billed, so the budget "
                f"could not bound it; {fix}"
            )
    tools = extra.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            keys = set(tool) if isinstance(tool, Mapping) else {"?"}
            hosted = keys - _CLIENT_TOOL_KEYS
            if hosted:
                raise DataError(
                    f"models.{model!r}.extra_body.tools[{i}] is a provider-hosted tool "
                    f"({', '.join(sorted(hosted))}) billed per use, which the budget cannot bound; remove "
                    "it (only functionDeclarations are allowed)"
                )


class GoogleGenAIAdapter(AdapterBase):
    """Streams Gemini ``generateContent`` (with thinking) into a normalised :class:`Completion`."""

    PROVIDER = PROVIDER
    API = "gemini"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        api_key: str,
        base_url: str | None = None,
        stall_timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Build the SDK client: Gemini Developer API (never Vertex AI), SDK retries off, our httpx2
        clients with the stall timeout.

        Args:
            spec: the resolved model.
            api_key: passed explicitly (``x-goog-api-key``), so the SDK never reads the environment.
            base_url: host root without the API version (None: the SDK default).
            stall_timeout_s: longest silence allowed while streaming.
            connect_timeout_s: TCP/TLS connect timeout.
        """
        super().__init__(spec, api_key)
        timeout = build_timeout(connect_timeout_s=connect_timeout_s, stall_timeout_s=stall_timeout_s)
        self._http = _AsyncClient(timeout=timeout, event_hooks={"response": [_on_response]})
        # The SDK always builds a sync client too; given one, it does not build its own.
        self._sync_http = httpx2.Client(timeout=timeout)
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=gt.HttpOptions(
                base_url=base_url,
                api_version=API_VERSION,
                retry_options=gt.HttpRetryOptions(attempts=1),
                httpx_client=self._sync_http,
                httpx_async_client=self._http,
            ),
        )

    def extra_body(self, request: Request) -> dict[str, Any]:
        """The checked ``extra_body`` (see :meth:`AdapterBase.extra_body` and
        :func:`check_gemini_extra_body`)."""
        extra = super().extra_body(request)
        if extra:
            check_gemini_extra_body(extra, model=self._spec.name)
        return extra

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of ``aio.models.generate_content_stream`` (model, contents, config).

        Raises:
            harness.errors.ConfigError: both a thinking budget and a thinking level, an unknown level,
                or billing-relevant ``extra_body``; nothing is sent.
        """
        spec = self._spec
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": gemini_parts(m)}
            for m in request.messages
            if m.role != "system"
        ]
        config: dict[str, Any] = {
            "max_output_tokens": request.max_output_tokens,
            "candidate_count": 1,
            "automatic_function_calling": {"disable": True},
            "automatic_continuation": False,
        }
        system = [m.content for m in request.messages if m.role == "system"]
        if system:
            config["system_instruction"] = "\n\n".join(system)
        budget = request.thinking_budget if request.thinking_budget is not None else spec.thinking_budget
        effort = request.reasoning_effort or spec.reasoning_effort
        if budget is not None and effort:
            raise ConfigError(
                f"{spec.name}: set either thinking_budget (Gemini 2.5) or reasoning_effort (Gemini 3 "
                "thinking_level), not both"
            )
        if budget is not None:
            config["thinking_config"] = {"thinking_budget": budget}
        elif effort:
            level = _LEVELS.get(effort.strip().lower())
            if level is None:
                raise ConfigError(
                    f"{spec.name}: reasoning_effort {effort!r} is not a Gemini thinking level; use one of "
                    f"{', '.join(_LEVELS)}"
                )
            config["thinking_config"] = {"thinking_level": level}
        temperature = request.temperature if request.temperature is not None else spec.temperature
        if temperature is not None:
            config["temperature"] = temperature
        if request.seed is not None:
            config["seed"] = request.seed
        http: dict[str, Any] = {}
        extra = self.extra_body(request)
        if extra:
            http["extra_body"] = extra
        if request.extra_headers:
            http["headers"] = dict(request.extra_headers)
        if http:
            config["http_options"] = http
        return {"model": request.model or spec.model, "contents": contents, "config": config}

    async def complete(self, request: Request) -> Completion:
        """Stream one generation.

        Raises:
            harness.errors.ConfigError: bad thinking settings or ``extra_body`` (nothing was sent).
            harness.errors.ProviderError: HTTP errors, transport failures, stalls, error objects in the
                stream and streams that end without a finish reason, classified for retry, with
                ``generation_started`` set when the attempt may be billed.
        """
        params = self.request_params(request)
        config = gt.GenerateContentConfig(**params["config"])
        seen = _Seen()
        token = _SEEN.set(seen)
        started = time.perf_counter()
        parts: list[str] = []
        append = parts.append
        ttft: float | None = None
        meta: gt.GenerateContentResponseUsageMetadata | None = None
        raw_finish: str | None = None
        blocked: str | None = None
        response_id: str | None = None
        response_model: str | None = None
        stream: Any = None
        try:
            stream = await self._client.aio.models.generate_content_stream(
                model=params["model"], contents=params["contents"], config=config
            )
            async for chunk in stream:
                if response_id is None and chunk.response_id:
                    response_id = chunk.response_id
                if response_model is None and chunk.model_version:
                    response_model = chunk.model_version
                if chunk.usage_metadata is not None:
                    meta = chunk.usage_metadata
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason is not None:
                    blocked = _enum_str(feedback.block_reason)
                candidates = chunk.candidates
                if not candidates:
                    continue
                candidate = candidates[0]
                content = candidate.content
                if content is not None and content.parts:
                    for part in content.parts:
                        text = part.text
                        if not text:
                            continue
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        if not part.thought:
                            append(text)
                if candidate.finish_reason is not None:
                    raw_finish = _enum_str(candidate.finish_reason)
        except (genai_errors.APIError, httpx2.TransportError, genai_errors.UnknownApiResponseError) as exc:
            mapped = map_gemini_error(
                exc,
                response_started=seen.status == 200,
                api_key=self._api_key,
                headers=seen.headers if seen.status == 200 else None,
                request_id=response_id,
                partial_text="".join(parts),
                partial_usage=usage_from_gemini(meta) if meta is not None else None,
            )
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            _SEEN.reset(token)
            with anyio.CancelScope(shield=True):
                if stream is not None:
                    await stream.aclose()
                if seen.response is not None:
                    await seen.response.aclose()

        latency = time.perf_counter() - started
        headers = seen.headers
        request_id = response_id or request_id_from_headers(headers)
        usage = usage_from_gemini(meta) if meta is not None else None
        reason: FinishReason
        if raw_finish is None and blocked is not None:
            raw_finish, reason = f"PROMPT_{blocked}", "refusal"
        elif raw_finish is None or raw_finish == "CONTINUATION":
            what = "without a finish reason" if raw_finish is None else "at a CONTINUATION checkpoint"
            raise StreamInterrupted(
                one_line(f"{PROVIDER} stream ended {what} (not an answer; usage unknown)"),
                provider=PROVIDER,
                retry=RetryDecision.transient(),
                status_code=200,
                request_id=request_id,
                error_type="no_finish_reason",
                generation_started=True,
                partial_text="".join(parts),
                partial_usage=usage,
            )
        else:
            reason = gemini_finish_reason(raw_finish)
        return Completion(
            text="".join(parts),
            usage=usage if usage is not None else Usage(),
            usage_known=usage is not None,
            finish_reason=reason,
            raw_finish_reason=raw_finish,
            raw_usage=meta.model_dump(mode="json", exclude_none=True) if meta is not None else None,
            request_id=request_id,
            response_model=response_model,
            ttft_s=ttft,
            latency_s=latency,
        )

    async def aclose(self) -> None:
        """Close the SDK client and the httpx2 clients it was given."""
        try:
            await self._client.aio.aclose()
        finally:
            await self._http.aclose()
            self._sync_http.close()
