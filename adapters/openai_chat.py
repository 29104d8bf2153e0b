"""OpenAI Chat Completions (``POST /v1/chat/completions``), always streamed, through the ``openai`` SDK.

Also the adapter for OpenAI-compatible servers (vLLM, llama.cpp, OpenRouter) reached through a base
URL: the final usage chunk may carry ``"choices": null`` (PROTOCOLS.md §2.5) and usage may carry an
OpenRouter-style ``cost`` (§8).

Usage normalisation (PROTOCOLS.md §8.1): ``cached_tokens`` and ``cache_write_tokens`` are *inside*
``prompt_tokens`` and ``reasoning_tokens`` is inside ``completion_tokens``, so
``input_uncached = prompt_tokens - cached_tokens - cache_write_tokens``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

import anyio
import openai
from openai.types import CompletionUsage

from harness.errors import ProviderError
from harness.types import Completion, ModelSpec, Request, Usage

from ._base import AdapterBase, nonneg
from ._common import (
    HeaderLike,
    billed_unless_proven_free,
    body_error_fields,
    build_timeout,
    decimal_str,
    error_for_status,
    finish_reason,
    malformed_stream,
    rate_limits_from_headers,
    request_id_from_headers,
    stream_error,
    transport_error,
)

__all__ = ["OpenAIChatAdapter", "map_openai_error", "merged_extra_body", "usage_from_openai_chat"]


def usage_from_openai_chat(usage: CompletionUsage) -> Usage:
    """Normalise a Chat Completions usage object (cached and reasoning tokens are subsets)."""
    prompt = nonneg(usage.prompt_tokens)
    details = usage.prompt_tokens_details
    cached = nonneg(details.cached_tokens) if details is not None else 0
    cache_write = nonneg(getattr(details, "cache_write_tokens", None)) if details is not None else 0
    out_details = usage.completion_tokens_details
    reasoning = nonneg(out_details.reasoning_tokens) if out_details is not None else 0
    return Usage(
        input_uncached=max(0, prompt - cached - cache_write),
        cache_read=cached,
        cache_write_5m=cache_write,
        output=nonneg(usage.completion_tokens),
        reasoning=reasoning,
    )


def merged_extra_body(spec: ModelSpec, request: Request) -> dict[str, Any] | None:
    """The model's ``extra_body`` overlaid with the request's, or None when both are empty."""
    if not spec.extra_body and not request.extra_body:
        return None
    return {**spec.extra_body, **request.extra_body}


def map_openai_error(
    exc: openai.APIError,
    *,
    generation_started: bool,
    api_key: str,
    headers: HeaderLike | None = None,
    partial_text: str = "",
) -> ProviderError:
    """Map an ``openai`` exception to the harness hierarchy with its retry classification.

    Args:
        exc: what the SDK raised.
        generation_started: True when the 200 response had begun streaming. For a transport failure
            before that, the error's ``generation_started`` (may be billed) is decided by
            :func:`adapters._common.billed_unless_proven_free`.
        api_key: removed from the message if the provider echoed it.
        headers: the streaming response's headers (for the request id of mid-stream failures).
        partial_text: text received before the failure.
    """
    secrets = (api_key,)
    if isinstance(exc, openai.APIStatusError):
        etype, code, message = body_error_fields(exc.body)
        return error_for_status(
            exc.status_code,
            provider="openai",
            message=message or exc.message,
            headers=exc.response.headers,
            error_type=etype,
            error_code=code,
            request_id=exc.request_id,
            secrets=secrets,
        )
    request_id = request_id_from_headers(headers)
    if isinstance(exc, openai.APIConnectionError):
        # ``__cause__`` is the httpx2 error (or anyio.EndOfStream / ssl.SSLError the SDK also wraps).
        return transport_error(
            exc,
            provider="openai",
            timeout=isinstance(exc, openai.APITimeoutError),
            generation_started=billed_unless_proven_free(exc, response_started=generation_started),
            response_started=generation_started,
            request_id=request_id,
            partial_text=partial_text,
        )
    # A plain APIError is an error object inside the 200 stream ({"error": {...}}).
    etype, code, message = body_error_fields(exc.body)
    return stream_error(
        provider="openai",
        message=message or exc.message,
        error_type=etype or exc.type,
        error_code=code or exc.code,
        request_id=request_id,
        secrets=secrets,
        partial_text=partial_text,
        partial_usage=None,
    )


class OpenAIChatAdapter(AdapterBase):
    """Streams Chat Completions with ``include_usage`` and returns a normalised :class:`Completion`."""

    PROVIDER = "openai"
    API = "chat"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        api_key: str,
        base_url: str | None = None,
        stall_timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Build the SDK client (SDK retries off; the harness owns retries).

        Args:
            spec: the resolved model.
            api_key: passed explicitly, never read from files.
            base_url: an OpenAI-compatible endpoint including ``/v1`` (None: the SDK default or
                ``OPENAI_BASE_URL``).
            stall_timeout_s: longest silence allowed while streaming.
            connect_timeout_s: TCP/TLS connect timeout.
        """
        super().__init__(spec, api_key)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=build_timeout(connect_timeout_s=connect_timeout_s, stall_timeout_s=stall_timeout_s),
        )

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments passed to ``chat.completions.create`` (the JSON body's fields)."""
        spec = self._spec
        params: dict[str, Any] = {
            "model": request.model or spec.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_completion_tokens": request.max_output_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        effort = request.reasoning_effort or spec.reasoning_effort
        if effort:
            params["reasoning_effort"] = effort
        temperature = request.temperature if request.temperature is not None else spec.temperature
        if temperature is not None:
            params["temperature"] = temperature
        if request.seed is not None:
            params["seed"] = request.seed
        extra = self.extra_body(request)
        if extra:
            params["extra_body"] = extra
        if request.extra_headers:
            params["extra_headers"] = dict(request.extra_headers)
        return params

    async def complete(self, request: Request) -> Completion:
        """Stream one chat completion.

        Raises:
            harness.errors.ProviderError: HTTP errors, transport failures, stalls and error events,
                classified for retry, with ``generation_started`` set for failures mid-stream.
        """
        params = self.request_params(request)
        started = time.perf_counter()
        try:
            stream = await self._client.chat.completions.create(**params)
        except openai.APIError as exc:
            raise map_openai_error(exc, generation_started=False, api_key=self._api_key) from exc

        headers = stream.response.headers
        parts: list[str] = []
        append = parts.append
        ttft: float | None = None
        usage: CompletionUsage | None = None
        raw_finish: str | None = None
        response_model: str | None = None
        tier: str | None = None
        refused = False
        try:
            async for chunk in stream:
                if response_model is None:
                    response_model = chunk.model
                if chunk.service_tier is not None:
                    tier = chunk.service_tier
                if chunk.usage is not None:
                    usage = chunk.usage
                # OpenAI-compatible servers may send "choices": null on the usage chunk.
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None:
                        content = delta.content
                        if content:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            append(content)
                        elif ttft is None and _has_reasoning(delta):
                            ttft = time.perf_counter() - started
                        if delta.refusal:
                            refused = True
                    if choice.finish_reason is not None:
                        raw_finish = choice.finish_reason
        except openai.APIError as exc:
            raise map_openai_error(
                exc,
                generation_started=True,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(parts),
            ) from exc
        except json.JSONDecodeError as exc:
            raise malformed_stream(
                exc,
                provider="openai",
                request_id=request_id_from_headers(headers),
                partial_text="".join(parts),
            ) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()

        latency = time.perf_counter() - started
        reason = finish_reason(raw_finish)
        if refused and reason == "stop":
            reason = "refusal"
        return Completion(
            text="".join(parts),
            usage=usage_from_openai_chat(usage) if usage is not None else Usage(),
            usage_known=usage is not None,
            finish_reason=reason,
            raw_finish_reason=raw_finish,
            raw_usage=usage.model_dump() if usage is not None else None,
            request_id=request_id_from_headers(headers),
            response_model=response_model,
            service_tier=tier,
            ttft_s=ttft,
            latency_s=latency,
            rate_limits=rate_limits_from_headers(headers),
            provider_cost_usd=decimal_str(getattr(usage, "cost", None)) if usage is not None else None,
        )


def _has_reasoning(delta: object) -> bool:
    # vLLM / DeepSeek / OpenRouter stream reasoning as an extra delta field; OpenAI itself sends none.
    extra = cast(Mapping[str, Any] | None, getattr(delta, "model_extra", None))
    if not extra:
        return False
    return bool(extra.get("reasoning_content") or extra.get("reasoning"))
