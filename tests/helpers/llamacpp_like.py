"""A loopback OpenAI-compatible server that behaves like llama.cpp's (llama-cpp-python 0.3.x), as
observed against the real one (issue 11, PROTOCOLS.md section 12):

- it reads the output limit only from ``max_tokens`` (``max_completion_tokens`` is ignored; without
  ``max_tokens`` it generates until its own end, ``natural_tokens``), unless ``honour_limit`` is off,
  when it reads neither;
- streams carry one token per chunk and **no usage**, whatever ``stream_options.include_usage`` says;
  they end with a finish chunk and ``[DONE]``;
- while a stream runs, the next request that arrives **cuts it**: the running stream gets ``[DONE]``
  with no finish reason (what it did with two requests at once);
- non-streaming answers carry ``usage`` (``prompt_tokens`` / ``completion_tokens``) and are served one at
  a time.

It keeps its own bill: every request with the tokens it *generated* (each token is generated before it
is sent, so a stream cut or closed by the client has generated at least what it sent), keyed by the
``x-client-request-id`` header tollbench sends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Generated", "LlamaCppLike"]

#: One "token" of output: a short word, so its UTF-8 bytes are few (as a real tokenizer's are).
_WORD = " ok"


@dataclass
class Generated:
    """One request as the server saw it."""

    client_id: str | None
    stream: bool
    limit: int | None
    prompt_tokens: int
    generated: int = 0
    """Tokens generated for it (billed, if this server billed)."""
    ended: str = "running"
    """``finished`` (with a finish reason), ``cut`` (``[DONE]`` without one), ``client_closed``."""


class LlamaCppLike:
    """The server; a context manager. ``natural_tokens`` is how long an answer runs without a limit."""

    def __init__(
        self,
        *,
        natural_tokens: int = 2000,
        tokens_per_s: float = 4000.0,
        honour_limit: bool = True,
        answer: str = "The answer is \\boxed{7}.",
    ) -> None:
        self.natural_tokens = natural_tokens
        self.tokens_per_s = tokens_per_s
        self.honour_limit = honour_limit
        self.answer = answer
        self.requests: list[Generated] = []
        self._lock = threading.Lock()
        self._running: list[anyio.Event] = []  # cut signals of the streams now running
        self._serial = anyio.Lock()
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL for the OpenAI SDK (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def generated_for(self, client_id: str) -> int:
        """Tokens generated for all requests that carried this ``x-client-request-id``."""
        with self._lock:
            return sum(g.generated for g in self.requests if g.client_id == client_id)

    # -- the app ------------------------------------------------------------------------------

    def _limit(self, body: dict[str, Any]) -> int:
        if not self.honour_limit:
            return self.natural_tokens
        value = body.get("max_tokens")  # never max_completion_tokens
        if isinstance(value, int) and value > 0:
            return min(value, self.natural_tokens)
        return self.natural_tokens

    def _text(self, n: int) -> list[str]:
        # The answer first, then filler words: n tokens in all (one per chunk).
        head = [self.answer] if n > 0 else []
        return head + [_WORD] * max(0, n - 1)

    async def _chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages", []))
        stream = bool(body.get("stream"))
        limit_seen = body.get("max_tokens") if self.honour_limit else None
        record = Generated(request.headers.get("x-client-request-id"), stream, limit_seen, prompt)
        with self._lock:
            self.requests.append(record)
            for cut in self._running:  # the next request cuts whatever stream is running
                cut.set()
            self._running.clear()
        n = self._limit(body)
        pieces = self._text(n)
        finish = "length" if n < self.natural_tokens else "stop"
        created = int(time.time())
        if not stream:
            async with self._serial:
                await anyio.sleep(n / self.tokens_per_s)
                record.generated = n
                record.ended = "finished"
            return JSONResponse(
                {
                    "id": "chatcmpl-local",
                    "object": "chat.completion",
                    "created": created,
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces)},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
                }
            )
        cut = anyio.Event()
        with self._lock:
            self._running.append(cut)
        return StreamingResponse(
            self._stream(record, pieces, finish, cut, body.get("model"), created),
            media_type="text/event-stream",
        )

    async def _stream(
        self, record: Generated, pieces: list[str], finish: str, cut: anyio.Event, model: Any, created: int
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], reason: str | None) -> bytes:
            obj = {
                "id": "chatcmpl-local",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
            return f"data: {json.dumps(obj)}\n\n".encode()

        try:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in pieces:
                if cut.is_set() or self._stopping.is_set():
                    record.ended = "cut"
                    yield b"data: [DONE]\n\n"
                    return
                await anyio.sleep(1 / self.tokens_per_s)
                record.generated += 1  # generated before it is sent
                yield chunk({"content": piece}, None)
            record.ended = "finished"
            yield chunk({}, finish)
            yield b"data: [DONE]\n\n"
        except anyio.get_cancelled_exc_class():
            record.ended = "client_closed"
            raise
        finally:
            with self._lock:
                if cut in self._running:
                    self._running.remove(cut)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LlamaCppLike:
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="critical", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        self._sock, self._server = sock, server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("llama.cpp-like server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> LlamaCppLike:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
