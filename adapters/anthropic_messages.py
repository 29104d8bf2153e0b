"""Anthropic Messages (``POST /v1/messages``), always streamed, through the ``anthropic`` SDK.

We drive the raw event stream (``messages.create(..., stream=True)``) and dispatch on ``event.type``,
never ``isinstance``: the 2.x SDK builds unknown events as ``RawMessageStartEvent`` (PROTOCOLS.md §4.5).

Usage (§4.4): the ``message_start`` usage, overwritten by each non-null field of each
``message_delta.usage`` (the SDK accumulator's rule). ``input_tokens`` *excludes* cache reads and
writes; ``output_tokens`` *includes* thinking. ``usage_known`` is True once a ``message_delta``
arrived. Mid-stream transport failures surface as raw ``httpx2`` exceptions, and a mid-stream
``event: error`` as ``APIStatusError`` with ``status_code == 200``; both are mapped here.

The 2.x SDK has no ``temperature`` argument: a temperature goes in ``extra_body``.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from typing import Any

import anthropic
import anyio
import httpx2
from anthropic.types import MessageDeltaUsage
from anthropic.types import Usage as AnthropicUsage

from harness.errors import ConfigError, ProviderError
from harness.types import Completion, Message, ModelSpec, Request, Usage

from ._base import AdapterBase, nonneg
from ._common import (
    ClientPool,
    HeaderLike,
    billed_unless_proven_free,
    body_error_fields,
    build_timeout,
    error_for_status,
    finish_reason,
    hooked_http_client,
    malformed_stream,
    no_finish_reason,
    rate_limits_from_headers,
    request_id_from_headers,
    stream_error,
    transport_error,
    unread_error_body,
)
from ._sse import MessagesAccumulator, SSESplitter, StreamErrorEvent, body_chunks

__all__ = ["AnthropicMessagesAdapter", "map_anthropic_error", "usage_from_anthropic"]


def usage_from_anthropic(raw: Mapping[str, Any]) -> Usage:
    """Normalise a merged Anthropic usage dict (cache reads and writes are *on top of* input).

    Cache writes split by ``cache_creation.ephemeral_1h_input_tokens``; the rest (or all of them when
    the breakdown is absent) are 5 minute writes.
    """
    creation = nonneg(raw.get("cache_creation_input_tokens"))
    breakdown = raw.get("cache_creation")
    long_write = 0
    if isinstance(breakdown, Mapping):
        long_write = min(creation, nonneg(breakdown.get("ephemeral_1h_input_tokens")))
    details = raw.get("output_tokens_details")
    thinking = nonneg(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0
    return Usage(
        input_uncached=nonneg(raw.get("input_tokens")),
        cache_read=nonneg(raw.get("cache_read_input_tokens")),
        cache_write_5m=creation - long_write,
        cache_write_1h=long_write,
        output=nonneg(raw.get("output_tokens")),
        reasoning=thinking,
    )


def messages_content(m: Message) -> str | list[dict[str, Any]]:
    """A message's Messages ``content``: its text, or a text block and ``image`` blocks (base64)."""
    if not m.images:
        return m.content
    blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
    blocks += [
        {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.b64}}
        for image in m.images
    ]
    return blocks


def map_anthropic_error(
    exc: BaseException,
    *,
    generation_started: bool,
    api_key: str,
    headers: HeaderLike | None = None,
    partial_text: str = "",
    partial_usage: Usage | None = None,
) -> ProviderError | None:
    """Map an ``anthropic`` or raw ``httpx2`` exception to the harness hierarchy.

    ``generation_started`` says the 200 response had begun streaming; for a transport failure the
    error's own ``generation_started`` (may be billed) is decided by
    :func:`adapters._common.billed_unless_proven_free`.

    Returns:
        The harness error, or None when ``exc`` is not a provider/transport failure.
    """
    request_id = request_id_from_headers(headers)
    if isinstance(exc, anthropic.APIStatusError):
        etype, code, message = body_error_fields(exc.body)
        if exc.status_code == 200 or generation_started:
            # An `event: error` inside the 200 stream.
            return stream_error(
                provider="anthropic",
                message=message or exc.message,
                error_type=etype,
                error_code=code,
                request_id=exc.request_id or request_id,
                secrets=(api_key,),
                partial_text=partial_text,
                partial_usage=partial_usage,
            )
        return error_for_status(
            exc.status_code,
            provider="anthropic",
            message=message or exc.message,
            headers=exc.response.headers,
            error_type=etype,
            error_code=code,
            request_id=exc.request_id,
            secrets=(api_key,),
        )
    unread = unread_error_body(exc, provider="anthropic", secrets=(api_key,))
    if unread is not None:
        return unread
    transport = anthropic.APIConnectionError | httpx2.TransportError | ssl.SSLError | anyio.EndOfStream
    if isinstance(exc, transport):
        timeout = isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException)
        return transport_error(
            exc,
            provider="anthropic",
            timeout=timeout,
            generation_started=billed_unless_proven_free(exc, response_started=generation_started),
            response_started=generation_started,
            request_id=request_id,
            partial_text=partial_text,
            partial_usage=partial_usage,
        )
    return None


class AnthropicMessagesAdapter(AdapterBase):
    """Streams Anthropic Messages (with optional extended thinking) into a normalised :class:`Completion`."""

    PROVIDER = "anthropic"
    API = "messages"
    POOLED = True

    def __init__(
        self,
        spec: ModelSpec,
        *,
        api_key: str,
        base_url: str | None = None,
        stall_timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        max_connections: int | None = None,
        fast_stream: bool = True,
    ) -> None:
        """Build the SDK client (SDK retries and OpenTelemetry spans off).

        Args:
            spec: the resolved model.
            api_key: passed explicitly, so the SDK never goes looking for profile files.
            base_url: host root without ``/v1`` (None: the SDK default or ``ANTHROPIC_BASE_URL``).
            stall_timeout_s: longest silence allowed while streaming.
            connect_timeout_s: TCP/TLS connect timeout.
            max_connections: the most calls in flight at once (a
                :class:`~adapters._common.ClientPool`; None: one client with the SDK's pool).
            fast_stream: read streams with :mod:`adapters._sse`; False: the SDK's event models.
        """
        super().__init__(spec, api_key)
        self.fast_stream = fast_stream
        timeout = build_timeout(connect_timeout_s=connect_timeout_s, stall_timeout_s=stall_timeout_s)
        if max_connections is None:
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=timeout,
                http_client=hooked_http_client(anthropic.DefaultAsyncHttpxClient, timeout=timeout),
                open_telemetry=False,
            )
        else:
            self._pool = ClientPool(
                lambda http, t: anthropic.AsyncAnthropic(
                    api_key=api_key,
                    base_url=base_url,
                    max_retries=0,
                    timeout=t,
                    open_telemetry=False,
                    http_client=http,
                ),
                http_client=anthropic.DefaultAsyncHttpxClient,
                max_connections=max_connections,
                timeout=timeout,
                base_url=base_url,
            )
            self._client = self._pool.clients[0]

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments passed to ``messages.create`` (the JSON body's fields).

        Raises:
            harness.errors.ConfigError: the thinking budget does not fit below the output limit, or
                ``extra_body`` holds a billing-relevant key.
        """
        spec = self._spec
        params: dict[str, Any] = {
            "model": request.model or spec.model,
            "max_tokens": request.max_output_tokens,
            "messages": [
                {"role": m.role, "content": messages_content(m)}
                for m in request.messages
                if m.role != "system"
            ],
            "stream": True,
        }
        system = [m.content for m in request.messages if m.role == "system"]
        if system:
            params["system"] = "\n\n".join(system)
        budget = request.thinking_budget if request.thinking_budget is not None else spec.thinking_budget
        if budget is not None:
            if budget >= request.max_output_tokens:
                raise ConfigError(
                    f"{spec.name}: thinking budget {budget} must be below the output limit "
                    f"{request.max_output_tokens} (max_tokens includes thinking); raise "
                    "--max-output-tokens or lower thinking_budget"
                )
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
        effort = request.reasoning_effort or spec.reasoning_effort
        if effort:
            params["output_config"] = {"effort": effort}
        extra = self.extra_body(request)
        temperature = request.temperature if request.temperature is not None else spec.temperature
        if temperature is not None:
            extra.setdefault("temperature", temperature)
        if extra:
            params["extra_body"] = extra
        if request.extra_headers:
            params["extra_headers"] = dict(request.extra_headers)
        return params

    async def complete(self, request: Request) -> Completion:
        """Stream one message.

        Raises:
            harness.errors.ConfigError: the thinking budget does not fit (nothing was sent).
            harness.errors.ProviderError: HTTP errors, transport failures, stalls and ``event: error``,
                classified for retry, with ``generation_started`` set for failures mid-stream.
        """
        params = self.request_params(request)
        with self._lease() as client:
            if self.fast_stream:
                return await self._complete_fast(client, params)
            return await self._complete_sdk(client, params)

    async def _complete_fast(self, client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Completion:
        """The stream read from the SDK's raw response with :mod:`adapters._sse`."""
        started = time.perf_counter()
        acc = MessagesAccumulator(started=started, start_usage=_start_usage, delta_usage=_delta_usage)
        headers: HeaderLike | None = None
        try:
            async with client.messages.with_streaming_response.create(**params) as raw:
                http = raw.http_response
                headers = http.headers
                try:
                    splitter = SSESplitter()
                    feed = acc.feed
                    async for chunk in body_chunks(http):
                        for name, data in splitter.feed(chunk):
                            feed(name, data)
                except StreamErrorEvent as event:
                    # What the SDK raises for `event: error`: a status error with the 200 response.
                    raise client._make_status_error(event.message, body=event.body, response=http) from None
                except (ValueError, TypeError, AttributeError, LookupError) as exc:
                    raise malformed_stream(
                        exc if isinstance(exc, ValueError) else ValueError(str(exc)),
                        provider="anthropic",
                        request_id=request_id_from_headers(headers),
                        partial_text="".join(acc.parts),
                        partial_usage=usage_from_anthropic(acc.usage) if acc.usage else None,
                    ) from exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await http.aclose()
        except (anthropic.APIError, httpx2.TransportError, ssl.SSLError, anyio.EndOfStream) as exc:
            mapped = map_anthropic_error(
                exc,
                generation_started=headers is not None,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(acc.parts),
                partial_usage=usage_from_anthropic(acc.usage) if acc.usage else None,
            )
            if mapped is None:
                raise
            raise mapped from exc
        assert headers is not None
        return self._result(
            text="".join(acc.parts),
            usage=acc.usage,
            delta_seen=acc.delta_seen,
            raw_finish=acc.raw_finish,
            response_model=acc.response_model,
            headers=headers,
            ttft=acc.ttft,
            started=started,
        )

    async def _complete_sdk(self, client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Completion:
        """The reference path: the SDK's stream of event models."""
        started = time.perf_counter()
        try:
            stream = await client.messages.create(**params)
        except (anthropic.APIError, httpx2.TransportError) as exc:
            mapped = map_anthropic_error(exc, generation_started=False, api_key=self._api_key)
            if mapped is None:
                raise
            raise mapped from exc

        headers = stream.response.headers
        parts: list[str] = []
        append = parts.append
        ttft: float | None = None
        usage: dict[str, Any] | None = None
        delta_seen = False
        raw_finish: str | None = None
        response_model: str | None = None
        try:
            async for event in stream:
                etype = event.type
                if etype == "content_block_delta":
                    delta: Any = event.delta
                    dtype = delta.type
                    if dtype == "text_delta":
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        append(delta.text)
                    elif dtype == "thinking_delta" and ttft is None:
                        ttft = time.perf_counter() - started
                elif etype == "message_start":
                    message: Any = event.message
                    response_model = message.model
                    usage = message.usage.model_dump() if message.usage is not None else {}
                elif etype == "message_delta":
                    d: Any = event
                    if d.delta is not None and d.delta.stop_reason is not None:
                        raw_finish = d.delta.stop_reason
                    if d.usage is not None:
                        merged = usage if usage is not None else {}
                        for key, value in d.usage.model_dump().items():
                            if value is not None:
                                merged[key] = value
                        usage = merged
                        delta_seen = True
        except (anthropic.APIError, httpx2.TransportError) as exc:
            mapped = map_anthropic_error(
                exc,
                generation_started=True,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(parts),
                partial_usage=usage_from_anthropic(usage) if usage else None,
            )
            if mapped is None:
                raise
            raise mapped from exc
        except json.JSONDecodeError as exc:
            raise malformed_stream(
                exc,
                provider="anthropic",
                request_id=request_id_from_headers(headers),
                partial_text="".join(parts),
                partial_usage=usage_from_anthropic(usage) if usage else None,
            ) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()

        return self._result(
            text="".join(parts),
            usage=usage,
            delta_seen=delta_seen,
            raw_finish=raw_finish,
            response_model=response_model,
            headers=headers,
            ttft=ttft,
            started=started,
        )

    def _result(
        self,
        *,
        text: str,
        usage: dict[str, Any] | None,
        delta_seen: bool,
        raw_finish: str | None,
        response_model: str | None,
        headers: HeaderLike,
        ttft: float | None,
        started: float,
    ) -> Completion:
        """A finished stream's completion; the same rules on both paths."""
        if raw_finish is None:  # no message_delta with a stop reason: the answer may be cut short
            raise no_finish_reason(
                provider="anthropic",
                request_id=request_id_from_headers(headers),
                partial_text=text,
                partial_usage=usage_from_anthropic(usage) if usage else None,
            )
        latency = time.perf_counter() - started
        tier = usage.get("service_tier") if usage else None
        return Completion(
            text=text,
            usage=usage_from_anthropic(usage) if delta_seen and usage is not None else Usage(),
            usage_known=delta_seen,
            finish_reason=finish_reason(raw_finish),
            raw_finish_reason=raw_finish,
            raw_usage=usage,
            request_id=request_id_from_headers(headers),
            response_model=response_model,
            service_tier=tier if isinstance(tier, str) else None,
            ttft_s=ttft,
            latency_s=latency,
            rate_limits=rate_limits_from_headers(headers),
        )


def _start_usage(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``message_start`` usage as the SDK path stores it (its model, dumped)."""
    dumped: dict[str, Any] = AnthropicUsage.construct(**raw).model_dump()
    return dumped


def _delta_usage(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``message_delta`` usage as the SDK path merges it (its model, dumped)."""
    dumped: dict[str, Any] = MessageDeltaUsage.construct(**raw).model_dump()
    return dumped
