"""The sandbox's first process: runs inside the new namespaces, then becomes the model's program.

Run as ``python -I -S _launcher.py CONFIG_JSON`` by :mod:`harness.sandbox.core` (never imported by
the harness; standard library only, so it starts in milliseconds). In order:

1. ``mounts``: make every mount private and read-only (and ``nosuid``), then bind the work
   directory back read-write: the program can write its own directory and nothing else;
2. the rlimits (CPU, address space, file size, open files, processes);
3. ``uid``: drop to an unprivileged uid (supplementary groups cleared; the process limit only binds
   a non-root uid);
4. ``execve`` of the target interpreter with the fixed minimal environment (nothing inherited).

Any failure before the exec exits 125 with one line on stderr (``sandbox: ...``), so a broken sandbox
is never mistaken for the program's own failure.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# statvfs f_flag bits that must be kept on a remount (a user namespace cannot clear locked flags).
_KEEP = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

LAUNCH_FAILED = 125


def _fail(message: str) -> None:
    os.write(2, f"sandbox: {message}\n".encode())
    os._exit(LAUNCH_FAILED)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, target: str, flags: int, source: str | None = None) -> int:
    src = source.encode() if source is not None else None
    rc = int(libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None))
    return 0 if rc == 0 else ctypes.get_errno()


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2:
                # /proc/self/mounts escapes space, tab, newline and backslash as octal.
                points.append(fields[1].encode().decode("unicode_escape"))
    return sorted(set(points), key=lambda p: (p.count("/"), p))


def _kept_flags(path: str) -> int:
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _KEEP.items() if f_flag & st)


def _read_only_except(workdir: str) -> None:
    libc = _libc()
    err = _mount(libc, "/", MS_REC | MS_PRIVATE, "none")
    if err:
        _fail(f"cannot make mounts private: {os.strerror(err)}")
    for point in _mount_points():
        if point.startswith("/proc/") or point == "/proc":
            continue  # a fresh /proc of the new pid namespace (unshare --mount-proc)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | _kept_flags(point)
        err = _mount(libc, point, flags)
        if err and point == "/":
            _fail(f"cannot make / read-only: {os.strerror(err)}")
    err = _mount(libc, workdir, MS_BIND, workdir)
    if not err:
        err = _mount(libc, workdir, MS_REMOUNT | MS_BIND | MS_NOSUID | _kept_flags(workdir) & ~MS_RDONLY)
    if err:
        _fail(f"cannot bind the work directory writable: {os.strerror(err)}")


def _limits(limits: dict[str, int]) -> None:
    names = {
        "cpu": resource.RLIMIT_CPU,
        "as": resource.RLIMIT_AS,
        "fsize": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
        "nproc": resource.RLIMIT_NPROC,
        "core": resource.RLIMIT_CORE,
    }
    for key, value in limits.items():
        which = names[key]
        _, hard = resource.getrlimit(which)
        soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (soft, soft))


def main() -> None:
    try:
        cfg = json.loads(sys.argv[1])
    except (IndexError, ValueError):
        _fail("bad launcher configuration")
        return
    workdir = cfg["workdir"]
    try:
        if cfg.get("mounts"):
            _read_only_except(workdir)
        _limits(cfg["limits"])
        uid = cfg.get("uid")
        if uid is not None:
            os.setgroups([])
            os.setgid(int(cfg["gid"]))
            os.setuid(int(uid))
        os.chdir(workdir)
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    argv = [str(a) for a in cfg["argv"]]
    try:
        os.execve(argv[0], argv, {str(k): str(v) for k, v in cfg["env"].items()})
    except OSError as exc:
        _fail(f"cannot start {argv[0]}: {exc}")


if __name__ == "__main__":
    main()
