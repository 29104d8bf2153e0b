"""``tollbench sandbox check``: hostile programs run in the sandbox, and each must be contained.

Each check runs one program and decides from what the harness itself sees (a listening socket that
was or was not reached, a file that does or does not exist, the wall clock), never from the
program's own claim alone:

=============  ====================================================================================
network        connect to a TCP port the harness listens on at 127.0.0.1 (and resolve a name)
environment    look for a secret the harness put in its own environment
fork           start 200 processes that sleep
memory         allocate 6 GiB and touch it
write          write a file next to the sandbox directory, in /tmp and in the harness's directory
endless loop   ``while True: pass``: killed at the timeout, nothing left running
=============  ====================================================================================
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .core import GIB, Isolation, IsolationLevel, Limits, Result, isolation, run_python_sync

__all__ = ["Check", "run_checks", "CHECKS"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    contained: bool
    detail: str


def _listener() -> tuple[socket.socket, int, list[bool]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    reached: list[bool] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            reached.append(True)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1], reached


def check_network(level: IsolationLevel | None = None) -> Check:
    server, port, reached = _listener()
    try:
        program = (
            "import socket\n"
            "out = []\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
            "    out.append('connected')\n"
            "except OSError as e:\n"
            "    out.append(f'refused: {e}')\n"
            "try:\n"
            "    socket.getaddrinfo('example.com', 443); out.append('resolved')\n"
            "except OSError as e:\n"
            "    out.append(f'no dns: {e}')\n"
            "print('; '.join(out))\n"
        )
        result = run_python_sync({"net.py": program}, "net.py", limits=Limits(timeout_s=15), level=level)
        time.sleep(0.3)  # let the accept thread see a connection that did arrive
    finally:
        server.close()
    said = result.stdout.decode("utf-8", "replace").strip()
    contained = not reached and "connected" not in said.split("; ")[0]
    return Check("network", contained, said or _why(result))


def check_environment(level: IsolationLevel | None = None) -> Check:
    secret = "sk-tollbench-check-" + secrets.token_hex(8)
    key = "TOLLBENCH_CHECK_API_KEY"
    old = os.environ.get(key)
    os.environ[key] = secret
    try:
        program = (
            "import os\n"
            "found = [k for k, v in os.environ.items() if 'sk-' in v or 'KEY' in k or 'TOKEN' in k]\n"
            "print(len(os.environ), 'variables; keys found:', found)\n"
        )
        result = run_python_sync({"env.py": program}, "env.py", limits=Limits(timeout_s=15), level=level)
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    said = result.stdout.decode("utf-8", "replace").strip()
    contained = result.ok and secret.encode() not in result.stdout and "keys found: []" in said
    return Check("environment", contained, said or _why(result))


def check_fork(level: IsolationLevel | None = None, *, n: int = 200) -> Check:
    program = (
        "import os, time\n"
        "started = 0\n"
        f"for _ in range({n}):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        print('fork refused after', started, 'children:', e.strerror); break\n"
        "    if pid == 0:\n"
        "        time.sleep(60); os._exit(0)\n"
        "    started += 1\n"
        "else:\n"
        f"    print('started all {n}')\n"
    )
    limits = Limits(timeout_s=15, processes=64)
    result = run_python_sync({"fork.py": program}, "fork.py", limits=limits, level=level)
    said = result.stdout.decode("utf-8", "replace").strip()
    contained = "fork refused" in said
    return Check("fork", contained, said or _why(result))


def check_memory(level: IsolationLevel | None = None) -> Check:
    program = (
        "try:\n"
        "    block = bytearray(6 * 1024 ** 3)\n"
        "    for i in range(0, len(block), 4096): block[i] = 1\n"
        "    print('allocated 6 GiB')\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    limits = Limits(timeout_s=30, memory_bytes=2 * GIB)
    result = run_python_sync({"mem.py": program}, "mem.py", limits=limits, level=level)
    said = result.stdout.decode("utf-8", "replace").strip()
    contained = "allocated" not in said
    return Check("memory", contained, said or _why(result))


def check_write(level: IsolationLevel | None = None) -> Check:
    token = secrets.token_hex(6)
    targets = [
        Path(tempfile.gettempdir()) / f"tollbench-escape-{token}",
        Path("/var/tmp") / f"tollbench-escape-{token}",
        Path("/dev/shm") / f"tollbench-escape-{token}",
        Path.cwd() / f"tollbench-escape-{token}",
    ]
    program = (
        "import os, sys\n"
        "out = []\n"
        f"for path in {[str(t) for t in targets]!r} + ['../escape-{token}']:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('x')\n"
        "        out.append('wrote ' + path)\n"
        "    except OSError as e:\n"
        "        out.append(f'{path}: {e.strerror}')\n"
        "with open('inside.txt', 'w') as f: f.write('ok')\n"
        "out.append('own directory writable')\n"
        "print('; '.join(out))\n"
    )
    result = run_python_sync({"write.py": program}, "write.py", limits=Limits(timeout_s=15), level=level)
    escaped = [str(t) for t in targets if t.exists()]
    for t in targets:
        try:
            t.unlink()
        except OSError:
            pass
    said = result.stdout.decode("utf-8", "replace").strip()
    contained = not escaped and "wrote " not in said and "own directory writable" in said
    return Check("write", contained, said or _why(result))


def check_endless_loop(level: IsolationLevel | None = None, *, timeout_s: float = 2.0) -> Check:
    marker = "tollbench-loop-" + secrets.token_hex(6)
    # The loop forks first: the child must die with it.
    program = "import os\nos.fork()\nwhile True:\n    pass\n"
    script = f"{marker}.py"
    t0 = time.monotonic()
    result = run_python_sync({script: program}, script, limits=Limits(timeout_s=timeout_s), level=level)
    took = time.monotonic() - t0
    left = _processes_with(marker)
    contained = result.timed_out and took < timeout_s + 5 and not left
    detail = f"killed after {took:.1f}s (timeout {timeout_s:g}s); processes left: {len(left)}"
    return Check("endless loop", contained, detail)


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (the loop's script is named after it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _why(result: Result) -> str:
    if result.launch_error:
        return result.launch_error
    if result.timed_out:
        return "killed at the timeout"
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    return f"exit {result.returncode}" + (f": {tail[0]}" if tail else "")


CHECKS: dict[str, Callable[[IsolationLevel | None], Check]] = {
    "network": check_network,
    "environment": check_environment,
    "fork": check_fork,
    "memory": check_memory,
    "write": check_write,
    "endless loop": check_endless_loop,
}


def run_checks(level: IsolationLevel | None = None) -> tuple[Isolation, list[Check]]:
    """Every check at ``level`` (default: the machine's best), in order."""
    return isolation(), [check(level) for check in CHECKS.values()]
