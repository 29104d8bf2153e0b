"""A loopback TCP proxy that delays every response byte, or hangs up after reading the request.

It stands for a slow proxy or load balancer in front of a provider: the request reaches the upstream
server at once (so the upstream generates, and bills, the response), but each chunk the upstream sends
back is held for ``delay_s`` before it is forwarded. A client whose read timeout is shorter than the
delay gives up before it has seen the status line, on a request that was nevertheless served.

With ``upstream=None`` it is a server that reads the request and closes the connection without a
reply (what a load balancer that drops a connection looks like to the client).

Usage::

    with DelayProxy(("127.0.0.1", sim.port), delay_s=0.6) as proxy:
        client = AsyncOpenAI(base_url=proxy.url + "/v1", ...)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

__all__ = ["DelayProxy"]


class DelayProxy:
    """A threaded TCP proxy on 127.0.0.1 (see the module docstring)."""

    def __init__(self, upstream: tuple[str, int] | None, *, delay_s: float = 0.6) -> None:
        self._upstream = upstream
        self._delay = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DelayProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
        for t in list(self._threads):
            t.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.append(s)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._track(client)
            if self._upstream is None:
                self._spawn(self._hang_up, client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            self._spawn(self._pump, client, upstream, 0.0)
            self._spawn(self._pump, upstream, client, self._delay)

    def _hang_up(self, client: socket.socket) -> None:
        # Read the request head (and whatever body arrives at once), then close without a reply.
        client.settimeout(1.0)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            client.close()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while not self._stop.is_set():
                chunk = src.recv(65536)
                if not chunk:
                    break
                if delay:
                    # Hold the chunk ``delay`` seconds after it arrived (order is kept).
                    time.sleep(delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
