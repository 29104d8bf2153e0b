"""OpenAI Responses API (``POST /v1/responses``), always streamed, through the ``openai`` SDK.

System messages become ``instructions``; the rest go in ``input``. Usage arrives only in the
terminal event (``response.completed`` or ``response.incomplete``; PROTOCOLS.md §3). Failures come in
three shapes (§3.4), all handled: the SDK raising ``APIError`` on the nested ``{"error": {...}}``
event, a flat ``type == "error"`` event, and ``response.failed``.

Usage normalisation (§8.1): ``cached_tokens`` and ``cache_write_tokens`` are inside ``input_tokens``;
``reasoning_tokens`` is inside ``output_tokens``. Cache writes with the 12 hour TTL go to
``cache_write_1h`` (the long-lived slot), all others to ``cache_write_5m``.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import anyio
import httpx2
import openai
from openai.types.responses import Response, ResponseUsage

from harness.errors import ProviderError
from harness.types import Completion, Message, ModelSpec, Request, Usage

from ._base import AdapterBase, nonneg
from ._common import (
    ClientPool,
    HeaderLike,
    build_timeout,
    decimal_str,
    finish_reason,
    hooked_http_client,
    malformed_stream,
    no_finish_reason,
    rate_limits_from_headers,
    request_id_from_headers,
    stream_error,
)
from ._sse import ResponsesAccumulator, SSESplitter, StreamErrorEvent, body_chunks
from .openai_chat import OPENAI_FAILURES, map_openai_error

__all__ = ["OpenAIResponsesAdapter", "usage_from_openai_responses"]


def usage_from_openai_responses(usage: ResponseUsage) -> Usage:
    """Normalise a Responses usage object (cached and reasoning tokens are subsets)."""
    total_in = nonneg(usage.input_tokens)
    details = usage.input_tokens_details
    cached = cache_write = long_write = 0
    if details is not None:
        cached = nonneg(details.cached_tokens)
        cache_write = nonneg(details.cache_write_tokens)
        ttl = details.cache_write_tokens_details
        if ttl is not None:
            long_write = min(cache_write, nonneg(ttl.ttl_12h_tokens))
    out_details = usage.output_tokens_details
    return Usage(
        input_uncached=max(0, total_in - cached - cache_write),
        cache_read=cached,
        cache_write_5m=cache_write - long_write,
        cache_write_1h=long_write,
        output=nonneg(usage.output_tokens),
        reasoning=nonneg(out_details.reasoning_tokens) if out_details is not None else 0,
    )


def responses_content(m: Message) -> str | list[dict[str, Any]]:
    """A message's Responses ``content``: its text, or ``input_text`` and ``input_image`` parts."""
    if not m.images:
        return m.content
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": m.content}] if m.content else []
    parts += [{"type": "input_image", "image_url": image.data_url, "detail": "auto"} for image in m.images]
    return parts


class OpenAIResponsesAdapter(AdapterBase):
    """Streams the Responses API (``store=False``) and returns a normalised :class:`Completion`."""

    PROVIDER = "openai"
    API = "responses"
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
        """Build the SDK client (SDK retries off; the harness owns retries).

        Args:
            spec: the resolved model.
            api_key: passed explicitly.
            base_url: endpoint including ``/v1`` (None: the SDK default or ``OPENAI_BASE_URL``).
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
            self._client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=timeout,
                http_client=hooked_http_client(openai.DefaultAsyncHttpxClient, timeout=timeout),
            )
        else:
            self._pool = ClientPool(
                lambda http, t: openai.AsyncOpenAI(
                    api_key=api_key, base_url=base_url, max_retries=0, timeout=t, http_client=http
                ),
                http_client=openai.DefaultAsyncHttpxClient,
                max_connections=max_connections,
                timeout=timeout,
                base_url=base_url,
            )
            self._client = self._pool.clients[0]

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments passed to ``responses.create`` (the JSON body's fields)."""
        spec = self._spec
        system = [m.content for m in request.messages if m.role == "system"]
        params: dict[str, Any] = {
            "model": request.model or spec.model,
            "input": [
                {"role": m.role, "content": responses_content(m)}
                for m in request.messages
                if m.role != "system"
            ],
            "max_output_tokens": request.max_output_tokens,
            "store": False,
            "stream": True,
        }
        if system:
            params["instructions"] = "\n\n".join(system)
        effort = request.reasoning_effort or spec.reasoning_effort
        if effort:
            params["reasoning"] = {"effort": effort}
        temperature = request.temperature if request.temperature is not None else spec.temperature
        if temperature is not None:
            params["temperature"] = temperature
        extra = self.extra_body(request)
        if extra:
            params["extra_body"] = extra
        if request.extra_headers:
            params["extra_headers"] = dict(request.extra_headers)
        return params

    async def complete(self, request: Request) -> Completion:
        """Stream one response.

        Raises:
            harness.errors.ProviderError: HTTP errors, transport failures, stalls, error events and
                ``response.failed``, classified for retry.
        """
        with self._lease() as client:
            if self.fast_stream:
                return await self._complete_fast(client, request)
            return await self._complete_sdk(client, request)

    async def _complete_fast(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        """The stream read from the SDK's raw response with :mod:`adapters._sse`."""
        params = self.request_params(request)
        started = time.perf_counter()
        acc = ResponsesAccumulator(started=started)
        headers: HeaderLike | None = None
        try:
            async with client.responses.with_streaming_response.create(**params) as raw:
                http = raw.http_response
                headers = http.headers
                try:
                    splitter = SSESplitter()
                    feed = acc.feed
                    body = body_chunks(http)
                    stop = False
                    async for chunk in body:
                        for _, data in splitter.feed(chunk):
                            if feed(data):
                                stop = True
                                break
                        if stop:
                            break
                except StreamErrorEvent as event:
                    raise openai.APIError(event.message, http.request, body=event.body) from None
                except httpx2.TimeoutException as exc:
                    raise openai.APITimeoutError(request=http.request) from exc
                except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
                    raise openai.APIConnectionError(request=http.request) from exc
                except (ValueError, TypeError, AttributeError, LookupError) as exc:
                    raise malformed_stream(
                        exc if isinstance(exc, ValueError) else ValueError(str(exc)),
                        provider="openai",
                        request_id=request_id_from_headers(headers),
                        partial_text="".join(acc.parts),
                    ) from exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await http.aclose()
        except OPENAI_FAILURES as exc:
            raise map_openai_error(
                exc,
                generation_started=headers is not None,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(acc.parts),
            ) from exc
        assert headers is not None
        request_id = request_id_from_headers(headers)
        final = acc.final if isinstance(acc.final, dict) else None
        raw_usage = final.get("usage") if final is not None else None
        usage = ResponseUsage.construct(**raw_usage) if isinstance(raw_usage, dict) else None
        if acc.terminal == "response.failed" or acc.flat_error is not None:
            error = final.get("error") if final is not None else None
            raise self._failed_error(
                error.get("code") if isinstance(error, dict) else None,
                error.get("message") if isinstance(error, dict) else None,
                usage,
                acc.flat_error,
                request_id,
                "".join(acc.parts),
            )
        if final is None:  # the stream ended without response.completed / .incomplete: no answer
            raise no_finish_reason(
                provider=self.provider, request_id=request_id, partial_text="".join(acc.parts)
            )
        if acc.terminal == "response.incomplete":
            details = final.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            raw_finish = reason or "incomplete"
        else:
            raw_finish = final.get("status") or "completed"
        return self._result(
            text="".join(acc.parts),
            usage=usage,
            raw_finish=raw_finish,
            refused=acc.refused,
            request_id=request_id,
            response_model=final.get("model") or acc.response_model,
            tier=final.get("service_tier"),
            ttft=acc.ttft,
            started=started,
            headers=headers,
        )

    def _result(
        self,
        *,
        text: str,
        usage: ResponseUsage | None,
        raw_finish: str,
        refused: bool,
        request_id: str | None,
        response_model: str | None,
        tier: str | None,
        ttft: float | None,
        started: float,
        headers: HeaderLike,
    ) -> Completion:
        latency = time.perf_counter() - started
        reason = finish_reason(raw_finish)
        if refused and reason == "stop":
            reason = "refusal"
        return Completion(
            text=text,
            usage=usage_from_openai_responses(usage) if usage is not None else Usage(),
            usage_known=usage is not None,
            finish_reason=reason,
            raw_finish_reason=raw_finish,
            raw_usage=usage.model_dump() if usage is not None else None,
            request_id=request_id,
            response_model=response_model,
            service_tier=tier,
            ttft_s=ttft,
            latency_s=latency,
            rate_limits=rate_limits_from_headers(headers),
            provider_cost_usd=decimal_str(getattr(usage, "cost", None)) if usage is not None else None,
        )

    async def _complete_sdk(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        """The reference path: the SDK's stream of event models."""
        params = self.request_params(request)
        started = time.perf_counter()
        try:
            stream = await client.responses.create(**params)
        except OPENAI_FAILURES as exc:
            raise map_openai_error(exc, generation_started=False, api_key=self._api_key) from exc

        headers = stream.response.headers
        parts: list[str] = []
        append = parts.append
        ttft: float | None = None
        final: Response | None = None
        terminal: str | None = None
        flat_error: tuple[str | None, str] | None = None
        refused = False
        response_model: str | None = None
        try:
            async for event in stream:
                etype = event.type
                if etype == "response.output_text.delta":
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    append(event.delta)
                elif etype in ("response.completed", "response.incomplete", "response.failed"):
                    final = event.response
                    terminal = etype
                elif etype == "response.created":
                    response_model = event.response.model
                elif etype == "error":
                    flat_error = (event.code, event.message)
                elif ttft is None and etype in (
                    "response.reasoning_text.delta",
                    "response.reasoning_summary_text.delta",
                ):
                    ttft = time.perf_counter() - started
                elif etype == "response.refusal.delta":
                    refused = True
                    if ttft is None:
                        ttft = time.perf_counter() - started
        except OPENAI_FAILURES as exc:
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

        request_id = request_id_from_headers(headers)
        if terminal == "response.failed" or flat_error is not None:
            raise self._failed(final, flat_error, request_id, "".join(parts))
        if final is None:  # the stream ended without response.completed / .incomplete: no answer
            raise no_finish_reason(provider=self.provider, request_id=request_id, partial_text="".join(parts))

        usage = final.usage if final is not None else None
        raw_finish: str | None = None
        if terminal == "response.incomplete":
            details = final.incomplete_details
            raw_finish = (details.reason if details is not None else None) or "incomplete"
        else:
            raw_finish = final.status or "completed"
        return self._result(
            text="".join(parts),
            usage=usage,
            raw_finish=raw_finish,
            refused=refused,
            request_id=request_id,
            response_model=final.model or response_model,
            tier=final.service_tier,
            ttft=ttft,
            started=started,
            headers=headers,
        )

    def _failed(
        self,
        final: Response | None,
        flat_error: tuple[str | None, str] | None,
        request_id: str | None,
        partial_text: str,
    ) -> ProviderError:
        error = final.error if final is not None else None
        return self._failed_error(
            error.code if error is not None else None,
            error.message if error is not None else None,
            final.usage if final is not None else None,
            flat_error,
            request_id,
            partial_text,
        )

    def _failed_error(
        self,
        error_code: str | None,
        error_message: str | None,
        usage: ResponseUsage | None,
        flat_error: tuple[str | None, str] | None,
        request_id: str | None,
        partial_text: str,
    ) -> ProviderError:
        code = error_code
        message = error_message or "response failed"
        if flat_error is not None:
            # The flat error event is the more specific of the two (PROTOCOLS.md §3.4).
            code = flat_error[0] or code
            message = flat_error[1] or message
        return stream_error(
            provider="openai",
            message=message,
            error_type=None,
            error_code=code,
            request_id=request_id,
            secrets=(self._api_key,),
            partial_text=partial_text,
            partial_usage=usage_from_openai_responses(usage) if usage is not None else None,
        )
