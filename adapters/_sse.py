"""The fast stream reader: Server-Sent Events split from raw response bytes and parsed with orjson.

The SDKs build a pydantic model for every streamed chunk; at thousands of concurrent streams that, not
the network, is what limits one machine. The adapters therefore send the request through the SDK (it
builds, authenticates and types HTTP errors as ever), take the raw response
(``with_streaming_response``), and read it here: :class:`SSESplitter` cuts the bytes into events
exactly as the SDKs' ``SSEDecoder`` does, :func:`loads` parses an event's JSON, and one accumulator per
API (:class:`ChatAccumulator`, :class:`ResponsesAccumulator`, :class:`MessagesAccumulator`) keeps what
the adapter's SDK path keeps (text, usage, finish reason, model, tier, output bound), reading the
same fields from plain dicts. Usage objects are still turned into the SDK's own models (once per
call, by the adapter), so stored raw usage is the same on both paths.

An error inside the stream is raised as :class:`StreamErrorEvent` carrying what the SDK would have put
in its exception; the adapter builds the SDK's exception from it and maps it as before. The transcript
tests (``tests/adapters/test_fast_stream.py``) prove both paths agree field by field.

Nothing here imports an SDK.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

import httpx2
import orjson

__all__ = [
    "ChatAccumulator",
    "MessagesAccumulator",
    "ResponsesAccumulator",
    "SSESplitter",
    "StreamErrorEvent",
    "body_chunks",
    "loads",
]


def body_chunks(response: httpx2.Response) -> AsyncIterable[bytes]:
    """The response body as it arrives. Without a content encoding that is the transport's own byte
    stream (httpx's decoders and re-chunking do nothing then but cost time on every read; the SDKs
    drain bodies the same way); with one, ``aiter_bytes()`` decodes it. Transport failures are
    ``httpx2`` exceptions either way, and the caller closes the response."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    stream = response.stream
    if encoding in ("", "identity") and isinstance(stream, AsyncIterable):
        return stream
    return response.aiter_bytes()


def loads(data: bytes) -> Any:
    """An event's JSON. orjson first; what it refuses (NaN, integers past 64 bits) is retried with the
    standard library, which the SDKs use, so the two paths accept exactly the same documents.

    Raises:
        json.JSONDecodeError: not JSON (``orjson.JSONDecodeError`` is a subclass).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class StreamErrorEvent(Exception):
    """An error event inside a 200 stream: ``body`` is what the SDK puts in its exception's ``body``,
    ``message`` its message."""

    def __init__(self, message: str, body: object) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


class SSESplitter:
    """Cuts a byte stream into ``(event name, data)`` pairs, as the SDKs' ``SSEDecoder`` does: lines end
    at CR, LF or CRLF (also across chunk boundaries), ``data:`` lines of one event are joined with LF,
    one space after the colon is dropped, comments and other fields are ignored, and an event is
    dispatched at a blank line when it has a name or data. An unterminated last event is dropped."""

    __slots__ = ("_buf", "_cr", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """The events completed by ``chunk``."""
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        out: list[tuple[str | None, bytes]] = []
        data = self._data
        start = 0
        find = buf.find
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if not line:
                if data or self._event is not None:
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                    self._event = None
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif line.startswith(b"event:"):
                value = line[6:]
                name = (value[1:] if value[:1] == b" " else value).decode("utf-8", "replace")
                self._event = name or None
            # comments (":...") and the id / retry fields carry nothing the adapters use
        self._buf = buf[start:] if start < len(buf) else b""
        return out


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class ChatAccumulator:
    """One Chat Completions stream (the fields ``OpenAIChatAdapter`` reads from each chunk model).

    :meth:`feed` returns True when reading should stop: ``[DONE]``, or more content chunks than
    ``limit`` without a finish reason (``cut``)."""

    __slots__ = (
        "chunks",
        "cut",
        "done",
        "limit",
        "nbytes",
        "parts",
        "raw_finish",
        "refused",
        "response_model",
        "started",
        "tier",
        "ttft",
        "usage",
    )

    def __init__(self, *, limit: int, started: float) -> None:
        self.limit = limit
        self.started = started
        self.parts: list[str] = []
        self.ttft: float | None = None
        self.usage: Any = None
        self.raw_finish: str | None = None
        self.response_model: str | None = None
        self.tier: str | None = None
        self.refused = False
        self.cut = False
        self.done = False
        self.chunks = 0
        self.nbytes = 0

    def feed(self, data: bytes) -> bool:
        if data.startswith(b"[DONE]"):
            self.done = True
            return True
        chunk = loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("a stream chunk is not a JSON object")
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            if not message or not isinstance(message, str):
                message = "An error occurred during streaming"
            raise StreamErrorEvent(message, error)
        if self.response_model is None:
            self.response_model = chunk.get("model")
        tier = chunk.get("service_tier")
        if tier is not None:
            self.tier = tier
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                delta = choice.get("delta")
                if delta is not None:
                    content = delta.get("content")
                    if content:
                        if self.ttft is None:
                            self.ttft = time.perf_counter() - self.started
                        self.parts.append(content)
                        self.chunks += 1
                        self.nbytes += _utf8_len(content)
                    else:
                        thought = _reasoning_text(delta)
                        if thought:
                            if self.ttft is None:
                                self.ttft = time.perf_counter() - self.started
                            self.chunks += 1
                            self.nbytes += _utf8_len(thought)
                    refusal = delta.get("refusal")
                    if refusal:
                        self.refused = True
                        self.chunks += 1
                        self.nbytes += _utf8_len(refusal)
                finish = choice.get("finish_reason")
                if finish is not None:
                    self.raw_finish = finish
        if self.chunks > self.limit and self.raw_finish is None:
            self.cut = True  # more tokens than the limit: the server does not honour it
            return True
        return False


def _reasoning_text(delta: dict[str, Any]) -> str:
    # vLLM / DeepSeek / OpenRouter / xAI send reasoning as an extra field; OpenAI itself sends none.
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_THINKING = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})


class ResponsesAccumulator:
    """One Responses API stream (the fields ``OpenAIResponsesAdapter`` reads from each event model)."""

    __slots__ = ("final", "flat_error", "parts", "refused", "response_model", "started", "terminal", "ttft")

    def __init__(self, *, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.ttft: float | None = None
        self.final: dict[str, Any] | None = None
        self.terminal: str | None = None
        self.flat_error: tuple[str | None, str] | None = None
        self.refused = False
        self.response_model: str | None = None

    def feed(self, data: bytes) -> bool:
        if data.startswith(b"[DONE]"):
            return True
        event = loads(data)
        if not isinstance(event, dict):
            raise ValueError("a stream event is not a JSON object")
        error = event.get("error")
        if error:  # the nested {"error": {...}} shape (PROTOCOLS.md §3.4), as the SDK raises it
            message = error.get("message") if isinstance(error, dict) else None
            if not message or not isinstance(message, str):
                message = "An error occurred during streaming"
            raise StreamErrorEvent(message, error)
        etype = event.get("type")
        if etype == "response.output_text.delta":
            if self.ttft is None:
                self.ttft = time.perf_counter() - self.started
            self.parts.append(event["delta"])
        elif etype in _RESPONSES_TERMINAL:
            self.final = event.get("response")
            self.terminal = etype
        elif etype == "response.created":
            response = event.get("response")
            self.response_model = response.get("model") if isinstance(response, dict) else None
        elif etype == "error":
            self.flat_error = (event.get("code"), event.get("message"))  # type: ignore[assignment]
        elif self.ttft is None and etype in _RESPONSES_THINKING:
            self.ttft = time.perf_counter() - self.started
        elif etype == "response.refusal.delta":
            self.refused = True
            if self.ttft is None:
                self.ttft = time.perf_counter() - self.started
        return False


UsageDump = Callable[[dict[str, Any]], dict[str, Any]]


class MessagesAccumulator:
    """One Anthropic Messages stream (the fields ``AnthropicMessagesAdapter`` reads from each event).

    ``start_usage`` / ``delta_usage`` turn a raw usage object into the SDK model's ``model_dump()``
    (the adapter passes the SDK's own models), so the merged usage is the SDK path's."""

    __slots__ = (
        "delta_seen",
        "delta_usage",
        "parts",
        "raw_finish",
        "response_model",
        "start_usage",
        "started",
        "ttft",
        "usage",
    )

    def __init__(self, *, started: float, start_usage: UsageDump, delta_usage: UsageDump) -> None:
        self.started = started
        self.start_usage = start_usage
        self.delta_usage = delta_usage
        self.parts: list[str] = []
        self.ttft: float | None = None
        self.usage: dict[str, Any] | None = None
        self.delta_seen = False
        self.raw_finish: str | None = None
        self.response_model: str | None = None

    def feed(self, name: str | None, data: bytes) -> None:
        if name is None or name == "ping":
            return
        if name == "error":
            body: object
            try:
                body = loads(data)
                message = f"{body}"
            except ValueError:
                body = data.decode("utf-8", "replace")
                message = str(body) or "Error code: 200"
            raise StreamErrorEvent(message, body)
        if not data:
            return
        event = loads(data)
        if not isinstance(event, dict):
            raise ValueError("a stream event is not a JSON object")
        etype = event.get("type")
        if etype == "content_block_delta":
            delta = event["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.started
                self.parts.append(delta["text"])
            elif dtype == "thinking_delta" and self.ttft is None:
                self.ttft = time.perf_counter() - self.started
        elif etype == "message_start":
            message_obj = event["message"]
            self.response_model = message_obj.get("model")
            raw = message_obj.get("usage")
            self.usage = self.start_usage(raw) if raw is not None else {}
        elif etype == "message_delta":
            delta = event.get("delta")
            if delta is not None and delta.get("stop_reason") is not None:
                self.raw_finish = delta["stop_reason"]
            raw = event.get("usage")
            if raw is not None:
                merged = self.usage if self.usage is not None else {}
                for key, value in self.delta_usage(raw).items():
                    if value is not None:
                        merged[key] = value
                self.usage = merged
                self.delta_seen = True
