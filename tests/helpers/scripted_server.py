"""A loopback HTTP server that replays scripted responses, for adapter tests through the real SDKs.

It is a small Starlette app served by uvicorn in a background thread on a real socket, so streaming
faults are real: events trickle out with optional pauses, a connection can be cut mid-body (the client
sees an incomplete chunked body), a stream can stall, and a reply can be delayed before its headers.
Every request is recorded (method, path, headers, JSON body) so tests can assert on the wire.

Usage::

    with ScriptedServer() as server:
        server.push(Reply.sse(events_from_file(path), headers={"x-request-id": "req_1"}))
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)
        ...
        assert server.requests[0].json["max_completion_tokens"] == 256

Replies are served first-in first-out; when the queue is empty the server answers 599 so a missing
script is loud.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "Cut",
    "Pause",
    "RecordedRequest",
    "Reply",
    "ScriptedServer",
    "events_from_file",
    "sse_event",
]


@dataclass(frozen=True)
class Pause:
    """Send nothing for ``seconds`` (a stall when longer than the client's read timeout)."""

    seconds: float


@dataclass(frozen=True)
class Cut:
    """Drop the connection here, mid-body (the chunked body never terminates)."""


class _CutConnection(Exception):
    """Raised inside the body iterator so uvicorn aborts the connection."""


StreamItem = str | bytes | Pause | Cut


@dataclass
class Reply:
    """One scripted response."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[StreamItem] | None = None
    """When set, the body is streamed as SSE: each str/bytes item is written as one chunk."""
    delay_s: float = 0.0
    """Wait this long before sending the status line and headers (a stall before headers)."""

    @classmethod
    def json(
        cls, obj: Any, *, status: int = 200, headers: dict[str, str] | None = None, delay_s: float = 0.0
    ) -> Reply:
        """A JSON reply (content-type set)."""
        h = {"content-type": "application/json", **(headers or {})}
        return cls(status=status, headers=h, body=json.dumps(obj).encode(), delay_s=delay_s)

    @classmethod
    def sse(
        cls, events: Iterable[StreamItem], *, headers: dict[str, str] | None = None, delay_s: float = 0.0
    ) -> Reply:
        """A 200 ``text/event-stream`` reply made of the given SSE blocks, pauses and cuts."""
        h = {"content-type": "text/event-stream; charset=utf-8", **(headers or {})}
        return cls(status=200, headers=h, events=list(events), delay_s=delay_s)


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def sse_event(data: Any, event: str | None = None) -> str:
    """One SSE block (``event:`` line optional) ending in a blank line; dicts are JSON-encoded."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n"


def events_from_file(path: Path) -> list[str]:
    """Split an SSE transcript into its blocks (each ending in a blank line)."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    return [block + "\n\n" for block in text.split("\n\n") if block.strip()]


class ScriptedServer:
    """The server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.disconnects = 0
        """How many streamed replies ended because the client went away."""

    # -- scripting ----------------------------------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (append ``/v1`` for the OpenAI SDK)."""
        return f"http://127.0.0.1:{self.port}"

    # -- the app ------------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        # Sleep in slices so that stopping the server never waits for a long stall.
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await anyio.sleep(min(left, 0.05))

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), body)
        with self._lock:
            self.requests.append(record)
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            return Response(b'{"error": "no scripted reply"}', status_code=599)
        if reply.delay_s:
            await self._sleep(reply.delay_s)
        if reply.events is None:
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        return StreamingResponse(self._stream(reply.events), status_code=reply.status, headers=reply.headers)

    async def _stream(self, items: Sequence[StreamItem]) -> AsyncIterator[bytes]:
        try:
            for item in items:
                if isinstance(item, Pause):
                    await self._sleep(item.seconds)
                elif isinstance(item, Cut):
                    raise _CutConnection
                else:
                    yield item.encode() if isinstance(item, str) else item
        except anyio.get_cancelled_exc_class():
            with self._lock:
                self.disconnects += 1
            raise

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind a free loopback port and serve in a daemon thread."""
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._sock, self._server = sock, server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
