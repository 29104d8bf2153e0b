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
import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import anyio
import httpx2
import openai
from openai._base_client import make_request_options
from openai._constants import RAW_RESPONSE_HEADER
from openai._response import AsyncAPIResponse, AsyncResponseContextManager
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from harness.errors import ProviderError
from harness.types import Completion, Message, ModelSpec, Request, Usage

from ._base import AdapterBase
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
from ._sse import ChatAccumulator, SSESplitter, StreamErrorEvent, body_chunks
from .openai_compat import provider_cost, usage_for_dialect

__all__ = ["OpenAIChatAdapter", "map_openai_error", "merged_extra_body", "usage_from_openai_chat"]


def usage_from_openai_chat(usage: CompletionUsage, dialect: str = "openai") -> Usage:
    """Normalise a Chat Completions usage object of ``dialect`` (see :mod:`adapters.openai_compat`)."""
    return usage_for_dialect(dialect, usage.model_dump())


def merged_extra_body(spec: ModelSpec, request: Request) -> dict[str, Any] | None:
    """The model's ``extra_body`` overlaid with the request's, or None when both are empty."""
    if not spec.extra_body and not request.extra_body:
        return None
    return {**spec.extra_body, **request.extra_body}


def chat_content(m: Message) -> str | list[dict[str, Any]]:
    """A message's Chat Completions ``content``: its text, or text and ``image_url`` parts (data URLs)."""
    if not m.images:
        return m.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
    parts += [{"type": "image_url", "image_url": {"url": image.data_url}} for image in m.images]
    return parts


#: What the OpenAI SDK lets through unwrapped: a transport failure while it reads an error response's
#: body (``err.response.aread()`` after the status line) and anything raised while a stream is read.
RAW_TRANSPORT_ERRORS = (httpx2.TransportError, ssl.SSLError, anyio.EndOfStream)

#: Everything :func:`map_openai_error` maps.
OPENAI_FAILURES = (openai.APIError, *RAW_TRANSPORT_ERRORS)


def map_openai_error(
    exc: openai.APIError | httpx2.TransportError | ssl.SSLError | anyio.EndOfStream,
    *,
    generation_started: bool,
    api_key: str,
    headers: HeaderLike | None = None,
    partial_text: str = "",
    provider: str = "openai",
    output_bound: int = 0,
) -> ProviderError:
    """Map an ``openai`` exception to the harness hierarchy with its retry classification.

    Args:
        exc: what the SDK raised, or a raw transport failure it let through (:data:`RAW_TRANSPORT_ERRORS`).
        generation_started: True when the 200 response had begun streaming. For a transport failure
            before that, the error's ``generation_started`` (may be billed) is decided by
            :func:`adapters._common.billed_unless_proven_free`.
        api_key: removed from the message if the provider echoed it.
        headers: the streaming response's headers (for the request id of mid-stream failures).
        partial_text: text received before the failure.
        provider: the model id's provider, for messages (``openai``, ``deepseek`` ...).
        output_bound: an upper bound of the output tokens received before the failure.
    """
    secrets = (api_key,)
    if isinstance(exc, openai.APIStatusError):
        etype, code, message = body_error_fields(exc.body)
        return error_for_status(
            exc.status_code,
            provider=provider,
            message=message or exc.message,
            headers=exc.response.headers,
            error_type=etype,
            error_code=code,
            request_id=exc.request_id,
            secrets=secrets,
        )
    unread = unread_error_body(exc, provider=provider, secrets=secrets)
    if unread is not None:
        return unread
    request_id = request_id_from_headers(headers)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | ssl.SSLError | anyio.EndOfStream):
        # ``__cause__`` is the httpx2 error (or anyio.EndOfStream / ssl.SSLError the SDK also wraps).
        err = transport_error(
            exc,
            provider=provider,
            timeout=isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException),
            generation_started=billed_unless_proven_free(exc, response_started=generation_started),
            response_started=generation_started,
            request_id=request_id,
            partial_text=partial_text,
        )
        err.output_bound = max(err.output_bound, output_bound)
        return err
    # A plain APIError is an error object inside the 200 stream ({"error": {...}}).
    etype, code, message = body_error_fields(exc.body)
    err = stream_error(
        provider=provider,
        message=message or exc.message,
        error_type=etype or exc.type,
        error_code=code or exc.code,
        request_id=request_id,
        secrets=secrets,
        partial_text=partial_text,
        partial_usage=None,
    )
    err.output_bound = max(err.output_bound, output_bound)
    return err


#: The body fields :meth:`OpenAIChatAdapter.request_params` may set, in the order the SDK's
#: ``chat.completions.create`` lists them (so the JSON it sends is the same, byte for byte), with the
#: plain JSON types their values have. A body with only these, and messages of plain text, is sent
#: as built (:func:`_direct_body`); tests/adapters/test_direct_body.py proves the SDK's parameter
#: transform would give exactly the same body and request.
_DIRECT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "stream": bool,
    "messages": list,
    "max_completion_tokens": int,
    "max_tokens": int,
    "reasoning_effort": str,
    "seed": int,
    "stream_options": dict,
    "temperature": (int, float),
}
_CREATE_OPTIONS = ("extra_body", "extra_headers")
"""Keys of the params that are ``create()`` options, not body fields."""


def _direct_body(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The streamed request's JSON body as ``chat.completions.create`` would send it, without its
    request-parameter transform (a recursive walk over the TypedDict annotations, about half a
    millisecond to a millisecond per call); None when ``params`` has anything the transform might
    change (a field not in :data:`_DIRECT_FIELDS`, a message that is not plain text, a stream
    option other than ``include_usage``)."""
    body: dict[str, Any] = {}
    for key, kind in _DIRECT_FIELDS.items():
        if key in params:
            value = params[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                return None
            body[key] = value
    if len(body) + sum(k in params for k in _CREATE_OPTIONS) != len(params) or body.get("stream") is not True:
        return None
    if body.get("stream_options", {"include_usage": True}) != {"include_usage": True}:
        return None
    for m in body["messages"]:
        if not (isinstance(m, dict) and m.keys() == {"role", "content"} and isinstance(m["content"], str)):
            return None
        if not isinstance(m["role"], str):
            return None
    return body


class OpenAIChatAdapter(AdapterBase):
    """Chat Completions, streamed with ``include_usage``, normalised to a :class:`Completion`.

    The same adapter serves every OpenAI-compatible provider; ``spec.dialect`` says how it reports
    usage (:mod:`adapters.openai_compat`) and where the output limit goes: OpenAI's own API reads
    ``max_completion_tokens`` (and refuses ``max_tokens`` on reasoning models); every other server is
    sent both, since many read only one of them (llama.cpp's reads ``max_tokens``).

    The limit is also enforced here: a server that streams more content chunks than the limit (each
    chunk carries at least one token) is cut off, and the answer ends ``length``. A stream that ends
    without a finish reason is a transient error, never an answer. An endpoint seen to end a stream
    without usage is remembered (:attr:`no_stream_usage`), and with ``streaming = "auto"`` its next
    calls are made without streaming, so that their usage is known.
    """

    PROVIDER = "openai"
    API = "chat"
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
        direct_body: bool = True,
    ) -> None:
        """Build the SDK client (SDK retries off; the harness owns retries).

        Args:
            spec: the resolved model.
            api_key: passed explicitly, never read from files.
            base_url: an OpenAI-compatible endpoint including ``/v1`` (None: the SDK default or
                ``OPENAI_BASE_URL``).
            stall_timeout_s: longest silence allowed while streaming.
            connect_timeout_s: TCP/TLS connect timeout.
            max_connections: the most calls in flight at once; given, the calls share a
                :class:`~adapters._common.ClientPool` sized to it (None: one client, the SDK's pool).
            fast_stream: read streams with :mod:`adapters._sse` (orjson, no model per chunk); False
                iterates the SDK's stream of chunk models (the reference path).
            direct_body: on the fast path, send a plain-text body as built through the SDK's own
                ``post`` (which still builds, authenticates and sends the request and types its
                errors) instead of ``create``, skipping its request-parameter transform
                (:func:`_direct_body`); False always goes through ``create``.
        """
        super().__init__(spec, api_key)
        self._dialect = spec.dialect or "openai"
        self.fast_stream = fast_stream
        self.direct_body = direct_body
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
        # A non-streaming answer arrives only once it is complete: no stall timeout while it is made
        # (the runner's attempt timeout still bounds the whole attempt).
        self._whole_answer_timeout = build_timeout(
            connect_timeout_s=connect_timeout_s, stall_timeout_s=max(stall_timeout_s, 3600.0)
        )

    @property
    def dialect(self) -> str:
        """How this endpoint reports usage and reads the output limit."""
        return self._dialect

    def streams(self) -> bool:
        """Whether the next call is streamed (``spec.streaming`` and what the endpoint was seen to do)."""
        mode = self._spec.streaming
        if mode == "never":
            return False
        return mode == "always" or not (self.no_stream_usage or self.cuts_streams)

    def request_params(self, request: Request, *, stream: bool = True) -> dict[str, Any]:
        """The keyword arguments passed to ``chat.completions.create`` (the JSON body's fields)."""
        spec = self._spec
        params: dict[str, Any] = {
            "model": request.model or spec.model,
            "messages": [{"role": m.role, "content": chat_content(m)} for m in request.messages],
            "max_completion_tokens": request.max_output_tokens,
        }
        if self._dialect != "openai":
            params["max_tokens"] = request.max_output_tokens
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
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

    def _completion(
        self,
        *,
        text: str,
        usage: CompletionUsage | None,
        raw_finish: str | None,
        refused: bool,
        headers: HeaderLike,
        response_model: str | None,
        tier: str | None,
        ttft: float | None,
        started: float,
        output_bound: int,
        streamed: bool,
    ) -> Completion:
        reason = finish_reason(raw_finish)
        if refused and reason == "stop":
            reason = "refusal"
        raw = usage.model_dump() if usage is not None else None
        return Completion(
            text=text,
            usage=usage_for_dialect(self._dialect, raw) if raw is not None else Usage(),
            usage_known=raw is not None,
            finish_reason=reason,
            raw_finish_reason=raw_finish,
            raw_usage=raw,
            request_id=request_id_from_headers(headers),
            response_model=response_model,
            service_tier=tier,
            ttft_s=ttft,
            latency_s=time.perf_counter() - started,
            rate_limits=rate_limits_from_headers(headers),
            provider_cost_usd=provider_cost(self._dialect, raw) if raw is not None else None,
            output_bound=output_bound,
            streamed=streamed,
        )

    async def complete(self, request: Request) -> Completion:
        """One chat completion, streamed unless the endpoint is known to stream without usage.

        Raises:
            harness.errors.ProviderError: HTTP errors, transport failures, stalls, error events and
                streams cut without a finish reason, classified for retry, with
                ``generation_started`` set for failures once the request may have been billed.
        """
        if not self.streams():
            return await self._complete_whole(request)
        with self._lease() as client:
            if self.fast_stream:
                return await self._complete_fast(client, request)
            return await self._complete_sdk(client, request)

    async def _complete_fast(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        """The stream read from the SDK's raw response with :mod:`adapters._sse`."""
        params = self.request_params(request)
        provider = self.provider
        started = time.perf_counter()
        acc = ChatAccumulator(limit=request.max_output_tokens, started=started)
        headers: HeaderLike | None = None
        try:
            async with self._stream_request(client, params) as raw:
                http = raw.http_response
                headers = http.headers
                try:
                    await _read_sse(http, acc)
                except StreamErrorEvent as event:
                    raise openai.APIError(event.message, http.request, body=event.body) from None
                except httpx2.TimeoutException as exc:
                    raise openai.APITimeoutError(request=http.request) from exc
                except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
                    raise openai.APIConnectionError(request=http.request) from exc
                except (ValueError, TypeError, AttributeError, LookupError) as exc:
                    raise malformed_stream(
                        exc if isinstance(exc, ValueError) else ValueError(str(exc)),
                        provider=provider,
                        request_id=request_id_from_headers(headers),
                        partial_text="".join(acc.parts),
                        output_bound=acc.nbytes + acc.chunks,
                    ) from exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await http.aclose()
        except OPENAI_FAILURES as exc:
            response_started = headers is not None
            raise map_openai_error(
                exc,
                generation_started=response_started,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(acc.parts),
                provider=provider,
                output_bound=acc.nbytes + acc.chunks if response_started else 0,
            ) from exc
        assert headers is not None
        usage = CompletionUsage.construct(**acc.usage) if isinstance(acc.usage, dict) else None
        return self._stream_result(
            text="".join(acc.parts),
            usage=usage,
            raw_finish=acc.raw_finish,
            cut=acc.cut,
            refused=acc.refused,
            headers=headers,
            response_model=acc.response_model,
            tier=acc.tier,
            ttft=acc.ttft,
            started=started,
            output_bound=acc.nbytes + acc.chunks,
        )

    def _stream_request(
        self, client: openai.AsyncOpenAI, params: dict[str, Any]
    ) -> AsyncResponseContextManager[AsyncAPIResponse[Any]]:
        """``chat.completions.with_streaming_response.create(**params)``; with :attr:`direct_body`
        and a plain body, the same request made through ``client.post`` with the options ``create``
        passes, minus its parameter transform (the body is already what it would produce)."""
        body = _direct_body(params) if self.direct_body else None
        if body is None:
            return client.chat.completions.with_streaming_response.create(**params)
        options = make_request_options(
            extra_headers={**(params.get("extra_headers") or {}), RAW_RESPONSE_HEADER: "stream"},
            extra_body=params.get("extra_body"),
            security={"bearer_auth": True},
        )
        request = client.post(
            "/chat/completions",
            body=body,
            options=options,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        return AsyncResponseContextManager(cast(Any, request))

    async def _complete_sdk(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        """The reference path: the SDK's stream of chunk models."""
        params = self.request_params(request)
        provider = self.provider
        limit = request.max_output_tokens
        started = time.perf_counter()
        try:
            stream = await client.chat.completions.create(**params)
        except OPENAI_FAILURES as exc:
            raise map_openai_error(
                exc, generation_started=False, api_key=self._api_key, provider=provider
            ) from exc

        headers = stream.response.headers
        parts: list[str] = []
        append = parts.append
        ttft: float | None = None
        usage: CompletionUsage | None = None
        raw_finish: str | None = None
        response_model: str | None = None
        tier: str | None = None
        refused = False
        cut = False
        chunks = 0  # content-bearing chunks: each carries at least one output token
        nbytes = 0  # UTF-8 bytes of all streamed text (visible and reasoning)
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
                            chunks += 1
                            nbytes += len(content.encode("utf-8", "surrogatepass"))
                        else:
                            thought = _reasoning_text(delta)
                            if thought:
                                if ttft is None:
                                    ttft = time.perf_counter() - started
                                chunks += 1
                                nbytes += len(thought.encode("utf-8", "surrogatepass"))
                        if delta.refusal:
                            refused = True
                            chunks += 1
                            nbytes += len(delta.refusal.encode("utf-8", "surrogatepass"))
                    if choice.finish_reason is not None:
                        raw_finish = choice.finish_reason
                if chunks > limit and raw_finish is None:
                    # More tokens than the limit: the server does not honour it. Stop paying for it.
                    cut = True
                    break
        except OPENAI_FAILURES as exc:
            raise map_openai_error(
                exc,
                generation_started=True,
                api_key=self._api_key,
                headers=headers,
                partial_text="".join(parts),
                provider=provider,
                output_bound=nbytes + chunks,
            ) from exc
        except json.JSONDecodeError as exc:
            raise malformed_stream(
                exc,
                provider=provider,
                request_id=request_id_from_headers(headers),
                partial_text="".join(parts),
                output_bound=nbytes + chunks,
            ) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
        return self._stream_result(
            text="".join(parts),
            usage=usage,
            raw_finish=raw_finish,
            cut=cut,
            refused=refused,
            headers=headers,
            response_model=response_model,
            tier=tier,
            ttft=ttft,
            started=started,
            output_bound=nbytes + chunks,
        )

    def _stream_result(
        self,
        *,
        text: str,
        usage: CompletionUsage | None,
        raw_finish: str | None,
        cut: bool,
        refused: bool,
        headers: HeaderLike,
        response_model: str | None,
        tier: str | None,
        ttft: float | None,
        started: float,
        output_bound: int,
    ) -> Completion:
        """A finished stream's completion; the same rules on both paths."""
        provider = self.provider
        if cut:
            raw_finish = "client_output_limit"
        elif raw_finish is None:
            if self._dialect != "openai":
                self.cuts_streams = True  # remembered: with streaming = "auto", the next calls ask whole
            raise no_finish_reason(
                provider=provider,
                request_id=request_id_from_headers(headers),
                partial_text=text,
                output_bound=output_bound,
            )
        elif usage is None and self._dialect != "openai":
            self.no_stream_usage = True  # remembered: with streaming = "auto", the next calls ask whole
        completion = self._completion(
            text=text,
            usage=usage,
            raw_finish=raw_finish,
            refused=refused,
            headers=headers,
            response_model=response_model,
            tier=tier,
            ttft=ttft,
            started=started,
            output_bound=output_bound,
            streamed=True,
        )
        if cut:
            completion = replace(completion, finish_reason="length")
        return completion

    async def _complete_whole(self, request: Request) -> Completion:
        """One non-streaming chat completion (its answer carries the usage)."""
        params = self.request_params(request, stream=False)
        provider = self.provider
        started = time.perf_counter()
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **params, timeout=self._whole_answer_timeout
            )
            response = raw.parse()
        except OPENAI_FAILURES as exc:
            raise map_openai_error(
                exc, generation_started=False, api_key=self._api_key, provider=provider
            ) from exc
        except (json.JSONDecodeError, ValueError) as exc:
            raise malformed_stream(exc, provider=provider, request_id=None) from exc
        headers = raw.headers
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        text = (message.content or "") if message is not None else ""
        thought = _reasoning_text(message) if message is not None else ""
        bound = len(text.encode("utf-8", "surrogatepass")) + len(thought.encode("utf-8", "surrogatepass"))
        bound += 1 if text or thought else 0
        raw_finish = choice.finish_reason if choice is not None else None
        if raw_finish is None:
            raise no_finish_reason(
                provider=provider,
                request_id=request_id_from_headers(headers),
                partial_text=text,
                output_bound=bound,
            )
        return self._completion(
            text=text,
            usage=response.usage,
            raw_finish=raw_finish,
            refused=bool(message is not None and message.refusal),
            headers=headers,
            response_model=response.model,
            tier=response.service_tier,
            ttft=None,
            started=started,
            output_bound=bound,
            streamed=False,
        )


async def _read_sse(http: httpx2.Response, acc: ChatAccumulator) -> None:
    """Feed the response's events to ``acc`` until it says stop or the body ends. After ``[DONE]`` the
    rest of the body is read (briefly), so the connection goes back to the pool, as the SDK does."""
    splitter = SSESplitter()
    feed = acc.feed
    body = aiter(body_chunks(http))
    async for raw in body:
        for _, data in splitter.feed(raw):
            if feed(data):
                if acc.done:
                    await _drain(body)
                return


async def _drain(body: Any) -> None:
    with anyio.move_on_after(1.0):
        try:
            async for _ in body:
                pass
        except (httpx2.RequestError, anyio.EndOfStream):
            pass  # cleanup must not turn a finished answer into a failure


def _reasoning_text(delta: object) -> str:
    # vLLM / DeepSeek / OpenRouter / xAI send reasoning as an extra field; OpenAI itself sends none.
    extra = cast(Mapping[str, Any] | None, getattr(delta, "model_extra", None))
    if not extra:
        return ""
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
