"""Running model-written Python: one child process per run, isolated as far as the machine allows.

A run (:func:`run_python_sync`, or :func:`run_python` from async code) writes the given files into a
fresh temporary directory and starts the program there. The isolation, from best to least
(:func:`isolation` probes once per process which one works here):

``bwrap``
    bubblewrap (if installed): new user, pid, network, ipc and uts namespaces; the filesystem is hidden
    except the interpreter's own directories, read-only, and the work directory; an unprivileged uid.
``namespaces``
    ``unshare`` (util-linux): new network, mount and pid namespaces; every mount read-only and
    ``nosuid`` except the work directory; as root, a drop to a fresh unprivileged uid (a different one
    per run, so the process limit is each run's own); otherwise a user namespace (``unshare -r``).
``none``
    the machine cannot isolate (no namespaces): rlimits and an empty environment only; the network
    and the filesystem are reachable. Code suites refuse to run at this level without an explicit
    unsafe option.

At every level: rlimits (CPU seconds, address space, file size, open files, processes), an empty
environment (a fixed ``PATH``/``LANG``/``HOME`` and single-threaded BLAS; no variable of the harness,
so no API key), its own session (process group), killed as a group at the wall-clock timeout (with
a pid namespace, everything it started dies with it), and stdout/stderr read at most
``output_bytes`` each (output is written to files capped by the file-size limit, never to pipes
the harness must drain).

Runs go through :func:`run_python`, which bounds concurrency by a pool of its own (the CPU count),
apart from API concurrency, and waits in a worker thread, never on the event loop.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

__all__ = [
    "GIB",
    "LAUNCH_FAILED",
    "MIB",
    "Isolation",
    "IsolationLevel",
    "Limits",
    "Result",
    "isolation",
    "pool_size",
    "run_python",
    "run_python_sync",
]

MIB = 1 << 20
GIB = 1 << 30

#: Exit code of the launcher when it could not set the sandbox up (never the program's own).
LAUNCH_FAILED = 125

IsolationLevel = Literal["bwrap", "namespaces", "none"]

_LAUNCHER = Path(__file__).with_name("_launcher.py")

#: The whole environment of a sandboxed program.
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}

#: First of the unprivileged uids a root harness drops to (one fresh uid per run, no passwd entry).
_UID_BASE = 1_900_000_000
_uids = itertools.count()
_uid_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use."""

    timeout_s: float = 10.0
    """Wall-clock seconds before the whole process group is killed."""
    cpu_s: int | None = None
    """CPU seconds (``RLIMIT_CPU``); default: the timeout rounded up, plus one."""
    memory_bytes: int = 2 * GIB
    """Address space (``RLIMIT_AS``)."""
    file_bytes: int = 64 * MIB
    """Largest file the program may write (``RLIMIT_FSIZE``), its stdout and stderr included."""
    open_files: int = 256
    processes: int = 64
    """``RLIMIT_NPROC``; binds only a non-root uid (the sandbox never runs model code as root unless
    the level is ``none`` and the harness runs as root)."""
    output_bytes: int = 10 * MIB
    """Most of stdout and of stderr read back."""

    def rlimits(self) -> dict[str, int]:
        cpu = self.cpu_s if self.cpu_s is not None else int(self.timeout_s) + 2
        return {
            "cpu": max(1, cpu),
            "as": self.memory_bytes,
            "fsize": self.file_bytes,
            "nofile": self.open_files,
            "nproc": self.processes,
            "core": 0,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """How a run ended."""

    returncode: int | None
    """The exit status (negative: killed by that signal), None if it never started."""
    stdout: bytes
    stderr: bytes
    timed_out: bool
    """Killed at the wall-clock timeout."""
    elapsed_s: float
    stdout_truncated: bool = False
    isolation: IsolationLevel = "none"
    launch_error: str | None = None
    """The sandbox itself failed (exit 125 from the launcher): the program never ran."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def killed_by(self) -> str | None:
        """The signal's name when a signal ended the run (``SIGKILL``, ``SIGXCPU``, ...)."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


@dataclass(frozen=True, slots=True)
class Isolation:
    """What this machine's sandbox provides (:func:`isolation`)."""

    level: IsolationLevel
    python: str
    """The interpreter that runs model code."""
    network: bool
    """No network at all (its own network namespace)."""
    filesystem: Literal["hidden", "read-only", "open"]
    pid_namespace: bool
    unprivileged: bool
    """Model code runs as a uid other than root (the process limit binds)."""
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = [
            f"isolation level: {self.level}",
            f"network: {'none (own namespace)' if self.network else 'REACHABLE'}",
            f"filesystem: {self.filesystem}",
            f"processes: {'own pid namespace' if self.pid_namespace else 'shared'}; "
            f"uid: {'unprivileged' if self.unprivileged else 'the harness user'}",
            f"python: {self.python}",
        ]
        return "\n".join(parts + list(self.notes))


def _next_uid() -> int:
    with _uid_lock:
        return _UID_BASE + (os.getpid() % 100_000) * 1000 + next(_uids) % 1000


def _is_root() -> bool:
    return os.geteuid() == 0


def _host_python() -> str:
    return sys.executable or "/usr/bin/python3"


def _bind_dirs(python: str) -> list[str]:
    """Directories bwrap exposes read-only: the system's, and the interpreter's own (a venv and its
    base installation)."""
    dirs = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/alternatives", "/etc/ssl"]
    for prefix in {sys.prefix, sys.base_prefix, str(Path(python).resolve().parent.parent)}:
        if prefix and not any(prefix == d or prefix.startswith(d + "/") for d in dirs):
            dirs.append(prefix)
    return [d for d in dirs if os.path.exists(d)]


def _command(
    level: IsolationLevel, python: str, workdir: str, limits: Limits, argv: Sequence[str]
) -> tuple[list[str], int | None]:
    """The command line for one run and the uid it runs as (None: the harness's own)."""
    uid: int | None = None
    target = [python, "-E", "-s", "-B", *argv]  # not -I: the script's directory is importable
    config: dict[str, object] = {
        "workdir": workdir,
        "limits": limits.rlimits(),
        "env": {**_ENV, "HOME": workdir, "TMPDIR": workdir},
        "argv": target,
        "mounts": False,
        "uid": None,
    }
    launcher = [_host_python(), "-I", "-S", str(_LAUNCHER)]
    if level == "bwrap":
        box = "/sandbox"
        config.update(workdir=box, env={**_ENV, "HOME": box, "TMPDIR": box})
        cmd = ["bwrap", "--die-with-parent", "--new-session"]
        if _is_root():
            # No user namespace: a uid mapped inside one would still be root outside, and root is
            # exempt from the process limit. The launcher keeps only setuid/setgid, drops to a
            # fresh uid (which clears every capability), then runs the program.
            uid = _next_uid()
            config.update(uid=uid, gid=uid)
            cmd += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
            cmd += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            cmd += ["--unshare-all", "--cap-drop", "ALL"]
        # Mounts apply in order: the fresh /tmp first, so an interpreter bound from under /tmp (a
        # venv in /tmp) is mounted on top of it rather than hidden by it.
        cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        binds = _bind_dirs(python)
        parents = sorted(
            {str(a) for d in binds for a in Path(d).parents if str(a) not in ("/", "/tmp")}, key=len
        )
        for parent in parents:  # traversable by the sandbox uid (bwrap copies a 0700 /root)
            cmd += ["--perms", "0755", "--dir", parent]
        for d in binds:
            cmd += ["--ro-bind", d, d]
        cmd += ["--ro-bind", str(_LAUNCHER), "/launcher.py", "--bind", workdir, box]
        cmd += ["--chdir", "/", "--"]  # the launcher enters the 0700 work directory as its uid
        launcher = [_host_python(), "-I", "-S", "/launcher.py"]
        return [*cmd, *launcher, json.dumps(config)], uid
    if level == "namespaces":
        cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
        if _is_root():
            uid = _next_uid()
            config.update(uid=uid, gid=uid)
        else:
            cmd.append("--map-root-user")
        config["mounts"] = True
        return [*cmd, "--", *launcher, json.dumps(config)], uid
    return [*launcher, json.dumps(config)], None


def _read_capped(path: Path, cap: int) -> tuple[bytes, bool]:
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return b"", False
    return data[:cap], len(data) > cap


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(c) for c in text.split()]
    except (OSError, ValueError):
        pass
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """Kill the run and everything it started, and return only when they are gone.

    With a pid namespace, the first process inside (a child of ``unshare``/``bwrap``) is the
    namespace's init: killing it makes the kernel kill every other process in the namespace, and
    its parent's wait returns only once they are all reaped. Then the process group, for what the
    ``none`` level leaves (a program that left its group with ``setsid`` can outlive it there).
    """
    if proc.poll() is None:
        for child in _children(proc.pid):
            _kill(child)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_python_sync(
    files: Mapping[str, str | bytes],
    main: str,
    *,
    args: Sequence[str] = (),
    stdin: bytes = b"",
    limits: Limits | None = None,
    level: IsolationLevel | None = None,
    python: str | None = None,
) -> Result:
    """Run ``python main args...`` on ``files`` in a fresh directory, isolated; blocks until it ends.

    Args:
        files: Relative path -> content, written into the work directory (``main`` among them).
        main: The script to run (relative to the work directory).
        stdin: What the program reads on stdin.
        limits: The run's limits (default :class:`Limits`).
        level: Force an isolation level (tests); default: the best this machine has (:func:`isolation`).
        python: The interpreter for the program (default: the one :func:`isolation` found).
    """
    limits = limits or Limits()
    if level is None:
        level = isolation().level
    if python is None:
        python = python_for(level)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tollbench-sbx-") as outer:
        base = Path(outer)
        work = base / "work"
        work.mkdir()
        for rel, content in files.items():
            target = (work / rel).resolve()
            if work.resolve() not in target.parents:
                raise ValueError(f"sandbox file outside its directory: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        (base / "stdin").write_bytes(stdin)
        cmd, uid = _command(level, python, str(work), limits, [main, *args])
        if uid is not None and _is_root():
            for path in [work, *work.rglob("*")]:
                os.chown(path, uid, uid, follow_symlinks=False)
        os.chmod(work, 0o700)  # runs side by side cannot read each other's files
        os.chmod(outer, 0o711)
        with (
            (base / "stdin").open("rb") as fin,
            (base / "stdout").open("wb") as fout,
            (base / "stderr").open("wb") as ferr,
        ):
            proc = subprocess.Popen(
                cmd,
                stdin=fin,
                stdout=fout,
                stderr=ferr,
                cwd=outer,
                env={**_ENV, "HOME": str(work)},
                start_new_session=True,
                close_fds=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_all(proc)  # also whatever it left running
        out, truncated = _read_capped(base / "stdout", limits.output_bytes)
        err, _ = _read_capped(base / "stderr", limits.output_bytes)
        if uid is not None and _is_root():
            shutil.rmtree(work, ignore_errors=True)  # files the sandbox uid made
    launch_error = None
    if proc.returncode == LAUNCH_FAILED and err.startswith(b"sandbox: "):
        launch_error = err.decode("utf-8", "replace").strip()
    return Result(
        returncode=proc.returncode,
        stdout=out,
        stderr=err,
        timed_out=timed_out,
        elapsed_s=time.monotonic() - t0,
        stdout_truncated=truncated,
        isolation=level,
        launch_error=launch_error,
    )


def pool_size() -> int:
    """How many sandboxed runs go at once: the CPU count."""
    return max(1, os.cpu_count() or 1)


_limiter: RunVar[anyio.CapacityLimiter] = RunVar("tollbench_sandbox_limiter")


def _pool() -> anyio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(pool_size())
        _limiter.set(limiter)
        return limiter


async def run_python(
    files: Mapping[str, str | bytes],
    main: str,
    *,
    args: Sequence[str] = (),
    stdin: bytes = b"",
    limits: Limits | None = None,
    level: IsolationLevel | None = None,
) -> Result:
    """:func:`run_python_sync` in a worker thread, at most :func:`pool_size` at once.

    A cancelled caller waits for the run to end, which its timeout bounds (the thread kills the
    process group at the timeout on every path).
    """

    def call() -> Result:
        return run_python_sync(files, main, args=args, stdin=stdin, limits=limits, level=level)

    return await anyio.to_thread.run_sync(call, limiter=_pool())


_PROBE = "import os, sys\nprint(os.getuid(), sys.version_info[0])\n"


def _works(level: IsolationLevel, python: str) -> str | None:
    """None if a trivial program runs at ``level`` with ``python``, else why not."""
    try:
        result = run_python_sync(
            {"p.py": _PROBE}, "p.py", limits=Limits(timeout_s=20.0), level=level, python=python
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if result.ok and result.stdout.split()[-1:] == [b"3"]:
        return None
    why = result.launch_error or result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    return str(why) if why else f"exit {result.returncode}"


def _pythons() -> list[str]:
    env = os.environ.get("TOLLBENCH_SANDBOX_PYTHON", "").strip()
    if env:
        return [env]
    out = [_host_python()]
    if os.path.exists("/usr/bin/python3") and "/usr/bin/python3" not in out:
        out.append("/usr/bin/python3")
    return out


@lru_cache(maxsize=4)
def python_for(level: IsolationLevel) -> str:
    """The interpreter that runs model code at ``level``: the first of :func:`_pythons` that the
    sandbox uid can run (``/usr/bin/python3`` when the harness's own lives where it cannot)."""
    pythons = _pythons()
    for python in pythons:
        if _works(level, python) is None:
            return python
    return pythons[0]


@lru_cache(maxsize=1)
def isolation() -> Isolation:
    """The best isolation this machine gives model code (probed once per process by running a
    trivial program each way). ``TOLLBENCH_SANDBOX_PYTHON`` names the interpreter for model code;
    otherwise the harness's own, or ``/usr/bin/python3`` where the sandbox uid cannot run that one."""
    notes: list[str] = []
    bwrap = shutil.which("bwrap")
    pythons = _pythons()
    if bwrap:
        why = _works("bwrap", pythons[0])
        if why is None:
            return Isolation("bwrap", pythons[0], True, "hidden", True, True)
        notes.append(f"bubblewrap is installed but does not work here: {why}")
    else:
        notes.append("bubblewrap is not installed (apt-get install bubblewrap hides the filesystem)")
    if shutil.which("unshare"):
        for python in pythons:
            why = _works("namespaces", python)
            if why is None:
                if python != pythons[0]:
                    notes.append(f"{pythons[0]} cannot be run by the sandbox uid; using {python}")
                return Isolation("namespaces", python, True, "read-only", True, _is_root(), tuple(notes))
            notes.append(f"unshare with {python}: {why}")
    else:
        notes.append("unshare (util-linux) is not installed")
    return Isolation("none", pythons[0], False, "open", False, not _is_root(), tuple(notes))


def reset_isolation_cache() -> None:
    """Forget the probed isolation (tests that change the machine's tools)."""
    isolation.cache_clear()
    python_for.cache_clear()


def with_timeout(limits: Limits, timeout_s: float) -> Limits:
    """``limits`` with another wall-clock timeout."""
    return replace(limits, timeout_s=timeout_s)
