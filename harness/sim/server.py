"""Running the simulator: in a background thread (:class:`SimServer`), in a child process
(:class:`SimProcess`) or in the foreground (:func:`serve_forever`, used by ``tollbench sim serve``).

All of them serve on uvicorn (``http="h11"``, no lifespan, access log off) from a socket bound here,
so port 0 picks a free port that is known before the server starts. Binding is loopback-only unless
``allow_non_loopback`` is set.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from harness.answerkey import AnswerKey
from harness.errors import ConfigError
from harness.sim.app import build_app
from harness.sim.faults import FaultConfig
from harness.sim.profiles import sim_profiles
from harness.sim.state import SimState
from harness.types import Usage

__all__ = [
    "SimClient",
    "SimProcess",
    "SimServer",
    "check_bind_host",
    "check_pace",
    "check_speed",
    "serve_forever",
    "sim_environment",
    "start_sim_process",
]


def check_bind_host(host: str, allow_non_loopback: bool) -> None:
    """Refuse a non-loopback bind unless explicitly allowed.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``allow_non_loopback`` is False.
    """
    if allow_non_loopback or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"refusing to bind the simulator to {host!r}: it is not a loopback address and the simulator "
            "has no real authentication; use 127.0.0.1, or allow it explicitly (--allow-non-loopback)"
        )


def check_speed(speed: float, flag: str = "--sim-speed") -> None:
    """Refuse a latency multiplier that is negative, NaN or infinite (0 = no latency is fine).

    Raises:
        ConfigError: naming ``flag``.
    """
    if not math.isfinite(speed) or speed < 0:
        raise ConfigError(
            f"{flag} takes a latency multiplier of 0 or more (0 = none, 1 = real latency), got {speed}"
        )


def check_pace(pace_s: float, flag: str = "--pace") -> None:
    """Refuse a pacing tick that is negative, NaN or infinite (0 = a sleep before every event).

    Raises:
        ConfigError: naming ``flag``.
    """
    if not math.isfinite(pace_s) or pace_s < 0:
        raise ConfigError(f"{flag} takes a pacing tick of 0 seconds or more (0 = per event), got {pace_s}")


#: Pending connections the listening socket holds (the kernel caps it at ``net.core.somaxconn``):
#: a run that opens 10,000 streams at once connects them all in the first second.
LISTEN_BACKLOG = 16384


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 (a free port) to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind the simulator to {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}"


#: Where each provider of :data:`harness.models.PROVIDERS` is served, below the simulator's root: the
#: OpenAI-compatible providers each at their own prefix, so each gets its own usage dialect.
PROVIDER_PATHS: dict[str, str] = {
    "openai": "/v1",
    "openai-responses": "/v1",
    "anthropic": "",
    "google": "",
    "deepseek": "/deepseek/v1",
    "xai": "/xai/v1",
    "openrouter": "/openrouter/api/v1",
    "together": "/together/v1",
    "vllm": "/compat/v1",
    "llamacpp": "/compat/v1",
    "ollama": "/compat/v1",
}


def provider_base_urls(root: str) -> dict[str, str]:
    """The base URL of every provider on a simulator at ``root`` (``http://127.0.0.1:PORT``)."""
    return {provider: root + path for provider, path in PROVIDER_PATHS.items()}


class _Server(uvicorn.Server):
    """uvicorn server that reports when it is accepting connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http="h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        loop="asyncio",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=LISTEN_BACKLOG,
    )


class SimServer:
    """Runs the simulator on a loopback port in a background thread (own event loop, uvicorn).

    Example::

        with SimServer(seed=1) as sim:
            client = AsyncOpenAI(api_key="sk-sim", base_url=sim.openai_base_url, max_retries=0)
    """

    def __init__(
        self,
        *,
        profiles: Path | None = None,
        seed: int = 0,
        answer_key: AnswerKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        faults: FaultConfig | None = None,
        pricer: Callable[[str, str, Usage], Decimal] | None = None,
        allow_non_loopback: bool = False,
        pace_s: float = 0.0,
    ) -> None:
        check_bind_host(host, allow_non_loopback)
        self._host = host
        self._port = port
        self._state = SimState(
            profiles=sim_profiles(profiles),
            seed=seed,
            answer_key=answer_key,
            speed=speed,
            faults=faults,
            pricer=pricer,
            pace_s=pace_s,
        )
        self._app = build_app(self._state)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind and serve; returns once the socket accepts connections (idempotent).

        Raises:
            ConfigError: the address cannot be bound.
            RuntimeError: the server did not start within 15 seconds.
        """
        with self._lock:
            if self._thread is not None:
                return
            sock = _bind(self._host, self._port)
            self._port = sock.getsockname()[1]
            ready = threading.Event()
            server = _Server(_config(self._app), ready.set)
            thread = threading.Thread(
                target=server.run, kwargs={"sockets": [sock]}, name="tollbench-sim", daemon=True
            )
            self._sock, self._server, self._thread = sock, server, thread
            thread.start()
            deadline = time.monotonic() + 15
            while not ready.wait(0.01):
                if not thread.is_alive() or time.monotonic() > deadline:
                    self._stop_locked()
                    raise RuntimeError("the simulator did not start")

    def _stop_locked(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def stop(self) -> None:
        """Shut down cleanly (in-flight streams get about a second); idempotent."""
        with self._lock:
            self._stop_locked()

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known after :meth:`start`)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return _url(self._host, self._port)

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (``.../v1``)."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (the host root)."""
        return self.base_url

    @property
    def base_urls(self) -> dict[str, str]:
        """The base URL of every provider (:func:`provider_base_urls`)."""
        return provider_base_urls(self.base_url)

    @property
    def answer_key(self) -> AnswerKey:
        """The live answer key: entries added while running are used."""
        return self._state.answer_key

    @property
    def state(self) -> SimState:
        """The server's shared state (profiles, invoice, ...), for tests and the runner."""
        return self._state

    def invoice(self) -> dict[str, Any]:
        """The invoice, same JSON as ``GET /sim/invoice``."""
        return self._state.invoice.as_json()

    def reset_invoice(self) -> None:
        """Clear the invoice."""
        self._state.invoice.reset()

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the server-wide faults (None clears them)."""
        self._state.faults = faults


def serve_forever(
    *,
    host: str,
    port: int,
    profiles: Path | None,
    seed: int,
    speed: float,
    answer_key_file: Path | None,
    allow_non_loopback: bool,
    on_ready: Callable[[str, str], None],
    faults: FaultConfig | None = None,
    batch_complete_s: float = 1.0,
    workers: int = 1,
    pace_s: float = 0.0,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; ``on_ready(openai_base_url, anthropic_base_url)``
    is called once the socket accepts connections.

    With ``workers`` > 1 the process forks that many servers in all onto the one listening socket
    (the kernel spreads the connections), to serve loads one process cannot (10,000 concurrent
    streams). Each worker keeps its own state: the invoice, rate limits and ``/sim/*`` endpoints then
    answer for whichever worker a request reaches, so use several workers for load, not for billing
    checks.

    Raises:
        ConfigError: a non-loopback host without permission, an unbindable address, or a bad
            profile / answer-key file.
    """
    check_bind_host(host, allow_non_loopback)
    check_speed(speed, "--speed")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 (a free port) to 65535, got {port}")
    try:
        loaded = sim_profiles(profiles)
        key = AnswerKey.load(answer_key_file) if answer_key_file is not None else None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_pace(pace_s)
    state = SimState(profiles=loaded, seed=seed, answer_key=key, speed=speed, faults=faults, pace_s=pace_s)
    state.batch_settings.complete_s = batch_complete_s
    sock = _bind(host, port)
    base = _url(host, sock.getsockname()[1])
    children: list[int] = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker: serve on the shared socket until the first process is gone
            _stop_with(os.getppid())
            try:
                _Server(_config(build_app(state)), lambda: None).run(sockets=[sock])
            finally:
                os._exit(0)
        children.append(pid)
    server = _Server(_config(build_app(state)), lambda: on_ready(base + "/v1", base))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _stop_with(pid: int, interval_s: float = 0.5) -> None:
    """SIGTERM ourselves (an orderly shutdown) once process ``pid`` is no longer our parent."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class SimClient:
    """A simulator already running somewhere on loopback (``tollbench sim serve``), driven over HTTP."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/").removesuffix("/v1")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._base

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (``.../v1``)."""
        return self._base + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (the host root)."""
        return self._base

    @property
    def base_urls(self) -> dict[str, str]:
        """The base URL of every provider (:func:`provider_base_urls`)."""
        return provider_base_urls(self._base)

    def _call(self, method: str, path: str, data: bytes | None = None) -> Any:
        req = urllib.request.Request(self._base + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def invoice(self) -> dict[str, Any]:
        """``GET /sim/invoice``."""
        result: dict[str, Any] = self._call("GET", "/sim/invoice")
        return result

    def reset_invoice(self) -> None:
        """``POST /sim/invoice/reset``."""
        self._call("POST", "/sim/invoice/reset", b"")

    def add_answer_key(self, key: AnswerKey) -> None:
        """Send entries to the running server (``POST /sim/answer-key``)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "key-upload.jsonl"
            key.save(path)
            self._call("POST", "/sim/answer-key", path.read_bytes())

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the server-wide faults (``POST /sim/faults``)."""
        data = json.dumps(faults.as_dict() if faults is not None else None).encode()
        self._call("POST", "/sim/faults", data)

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""


class SimProcess(SimClient):
    """The simulator in a child process (``python -m harness.sim``): it does not share the caller's GIL,
    outlives a killed runner started by another process (tests read its invoice after the kill), and
    stops by itself when the process that started it dies. Use :func:`start_sim_process` to create one."""

    def __init__(
        self, proc: subprocess.Popen[bytes], base_url: str, workdir: tempfile.TemporaryDirectory[str]
    ):
        super().__init__(base_url)
        self._proc = proc
        self._workdir = workdir

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def stop(self) -> None:
        """Terminate the child and wait for it (idempotent)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._workdir.cleanup()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


#: Variables the simulator child never inherits, beside every name :data:`_SECRET_ENV` matches:
#: the providers' SDK settings (keys, base URLs that may embed credentials, organisations).
_DROPPED_PREFIXES = ("OPENAI_", "ANTHROPIC_", "AZURE_OPENAI", "GOOGLE_", "GEMINI_", "AWS_", "HF_TOKEN")
_SECRET_ENV = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|_URL$|_DSN$|^TOLLBENCH_DB$",
    re.IGNORECASE,
)


def sim_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the simulator child: the parent's without API keys, tokens, passwords,
    provider SDK settings and URLs/DSNs that may hold credentials (the simulator needs none of them;
    docs/design.md invariant 8). ``PATH``, ``PYTHONPATH``, locale and the like are kept."""
    source = os.environ if env is None else env
    return {
        k: v
        for k, v in source.items()
        if not k.upper().startswith(_DROPPED_PREFIXES) and not _SECRET_ENV.search(k)
    }


def start_sim_process(
    *,
    profiles: Path | None = None,
    seed: int = 0,
    speed: float = 0.0,
    answer_key_file: Path | None = None,
    faults_file: Path | None = None,
    workers: int = 1,
    pace_s: float = 0.0,
) -> SimProcess:
    """Start ``python -m harness.sim`` on a free loopback port and wait until it listens.

    Raises:
        RuntimeError: the child exited or did not become ready within 30 seconds.
    """
    workdir = tempfile.TemporaryDirectory(prefix="tollbench-sim-")
    ready = Path(workdir.name) / "ready"
    errlog = Path(workdir.name) / "stderr.log"
    cmd = [
        sys.executable,
        "-m",
        "harness.sim",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--speed",
        repr(float(speed)),
        "--ready-file",
        str(ready),
        "--parent-pid",
        str(os.getpid()),
    ]
    if profiles is not None:
        cmd += ["--profiles", str(profiles)]
    if answer_key_file is not None:
        cmd += ["--answer-key", str(answer_key_file)]
    if faults_file is not None:
        cmd += ["--faults", str(faults_file)]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    if pace_s:
        cmd += ["--pace", repr(float(pace_s))]
    with errlog.open("wb") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=sim_environment()
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            detail = errlog.read_text(encoding="utf-8", errors="replace").strip()[-2000:]
            workdir.cleanup()
            raise RuntimeError(f"the simulator process did not start: {detail or 'no output'}")
        time.sleep(0.02)
    return SimProcess(proc, ready.read_text(encoding="utf-8").strip(), workdir)
