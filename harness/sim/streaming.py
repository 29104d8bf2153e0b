"""Server-sent-event delivery with pacing, mid-stream faults and billing of what was really sent.

A renderer (:mod:`harness.sim.wire_openai`, :mod:`harness.sim.wire_anthropic`) pre-renders a whole
stream as a list of framed SSE events with the cumulative output tokens each one completes
(:class:`Rendered`). :class:`SSEResponse` then sends them: at ``speed == 0`` events are coalesced
into writes of up to 16 KiB; at ``speed > 0`` each event is sent on its own after sleeping for the
profile's time to first token and ``tokens / tokens_per_s``. With a pacing tick (``pace_s > 0``) the
delays are added up and slept only once they reach the tick: the events that come due within one tick
go out in one write after one sleep (each at most one tick early), and what is left of the delay is
slept before the last events are sent, so the stream's total duration is unchanged; at 10,000
concurrent streams this turns millions of sleeps and writes into a few per stream. When it ends
(completed, cut, error event, client gone or cancelled) it reports how many events were sent so the
caller can bill them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from harness.types import Usage

__all__ = ["Rendered", "SSEResponse", "install_cut_log_filter"]

_COALESCE_BYTES = 16 * 1024
_INCOMPLETE_MSG = "ASGI callable returned without completing response."


@dataclass(slots=True)
class Rendered:
    """A fully rendered stream."""

    events: list[bytes]
    """Framed SSE events (each ends with a blank line)."""
    tokens: list[int]
    """Cumulative output tokens produced once ``events[i]`` has been sent."""
    final_index: int
    """Index of the first event that ends the generation (finish chunk / terminal event /
    ``message_delta``); mid-stream faults strike before it, so the client never sees the usage."""
    raw_usage: dict[str, Any]
    usage: Usage
    status: str
    """``completed`` or ``incomplete`` (output limit reached)."""
    reasoning: int
    error_event: Callable[[int], bytes]
    """The provider's in-stream error event, given the number of events sent before it."""
    malformed: Callable[[int], bytes]
    """A truncated-JSON event, given the number of events sent before it."""

    def partial_usage(self, sent: int) -> Usage:
        """Usage billed when only the first ``sent`` events were delivered."""
        if sent >= len(self.events) or sent > self.final_index:
            return self.usage
        out = self.tokens[sent - 1] if sent > 0 else 0
        u = self.usage
        return Usage(
            input_uncached=u.input_uncached,
            cache_read=u.cache_read,
            cache_write_5m=u.cache_write_5m,
            cache_write_1h=u.cache_write_1h,
            output=out,
            reasoning=min(self.reasoning, out),
        )


class _CutLogFilter(logging.Filter):
    """Hides uvicorn's complaint about the responses the simulator cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _INCOMPLETE_MSG


def install_cut_log_filter() -> None:
    """Attach (once) the filter that silences uvicorn's log line for deliberately cut streams."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CutLogFilter) for f in logger.filters):
        logger.addFilter(_CutLogFilter())


OnDone = Callable[[str, int], None]
"""``(status, events_sent)``; status is ``completed``, ``incomplete``, ``cut``, ``error_event`` or
``client_disconnected``."""


class SSEResponse(Response):
    """Sends a :class:`Rendered` stream, applying latency and at most one mid-stream fault."""

    def __init__(
        self,
        rendered: Rendered,
        headers: dict[str, str],
        *,
        on_done: OnDone,
        speed: float = 0.0,
        ttft_s: float = 0.0,
        tokens_per_s: float = 100.0,
        fault: str | None = None,
        fault_after: int = 0,
        stall_s: float = 0.0,
        pace_s: float = 0.0,
    ) -> None:
        # No Response.__init__: it would declare ``content-length: 0``; a stream is chunked.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        self.raw_headers.append((b"cache-control", b"no-cache"))
        self.rendered = rendered
        self.on_done = on_done
        self.speed = speed
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.fault = fault
        self.fault_after = max(0, min(fault_after, rendered.final_index))
        self.stall_s = stall_s
        self.pace_s = max(0.0, pace_s)
        """Pacing granularity in (scaled) seconds; 0 sleeps before every event that has a delay."""
        self.writes = 0
        """Body writes made (``http.response.body`` messages), for tests and benchmarks."""
        self._sent = 0
        self._status = rendered.status
        self._disconnected = False
        self._billed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the events (ASGI)."""
        try:
            if self.speed > 0 or self.fault == "stall":
                async with anyio.create_task_group() as tg:

                    async def listen() -> None:
                        while True:
                            message = await receive()
                            if message["type"] == "http.disconnect":
                                self._disconnected = True
                                tg.cancel_scope.cancel()
                                return

                    tg.start_soon(listen)
                    await self._stream(send)
                    tg.cancel_scope.cancel()
            else:
                await self._stream(send)
        finally:
            self._bill("client_disconnected" if self._disconnected else self._status)

    def _bill(self, status: str) -> None:
        # Billed once, before the last bytes leave, so a client that has read the whole stream
        # always finds its request on the invoice.
        if not self._billed:
            self._billed = True
            self.on_done(status, self._sent)

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        r = self.rendered
        buf = bytearray()
        paced = self.speed > 0
        tick = self.pace_s
        pending = 0.0  # scaled delay come due but not slept yet (pacing tick)

        async def flush(more: bool = True) -> None:
            if buf or not more:
                self.writes += 1
                await send({"type": "http.response.body", "body": bytes(buf), "more_body": more})
                buf.clear()

        prev_tokens = 0
        for i, event in enumerate(r.events):
            if self.fault is not None and i == self.fault_after:
                if self.fault == "disconnect_mid_stream":
                    await flush()
                    self._status = "cut"
                    return  # uvicorn closes the connection: no terminating chunk
                if self.fault == "stream_error_event":
                    buf += r.error_event(i)
                    self._status = "error_event"
                    self._bill(self._status)
                    await flush(more=False)
                    return
                if self.fault == "malformed_chunk":
                    buf += r.malformed(i)
                elif self.fault == "stall":
                    await flush()
                    await anyio.sleep(self.stall_s)
            if paced:
                delay = (r.tokens[i] - prev_tokens) / self.tokens_per_s
                if i == 0:
                    delay += self.ttft_s
                pending += delay * self.speed
                if pending > 0 and pending >= tick:
                    await flush()
                    await anyio.sleep(pending)
                    pending = 0.0
            prev_tokens = r.tokens[i]
            buf += event
            self._sent = i + 1
            if (paced and not tick) or len(buf) >= _COALESCE_BYTES:
                await flush()
        if pending > 0:  # the rest of the stream's duration: the last events go out at its end
            await anyio.sleep(pending)
        self._bill("client_disconnected" if self._disconnected else self._status)
        await flush(more=False)
