"""The sandbox, run as root as in CI: hostile programs are contained, killed in time, and leave no
process behind, at every isolation level this machine has (bubblewrap and plain namespaces)."""

from __future__ import annotations

import os
import shutil
import time

import anyio
import pytest

from harness.sandbox import core
from harness.sandbox.check import (
    check_endless_loop,
    check_environment,
    check_fork,
    check_memory,
    check_network,
    check_write,
)
from harness.sandbox.core import Limits, run_python, run_python_sync

LEVELS = [
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
    ),
    pytest.param(
        "namespaces", marks=pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare")
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("level", LEVELS)
def test_a_loopback_listener_cannot_be_reached(level: core.IsolationLevel) -> None:
    check = check_network(level)
    assert check.contained, check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_no_variable_of_the_harness_reaches_the_program(level: core.IsolationLevel) -> None:
    os.environ["OPENAI_API_KEY"] = "sk-test-must-not-leak"
    try:
        result = run_python_sync(
            {"env.py": "import os; print(sorted(os.environ.items()))"}, "env.py", level=level
        )
        assert result.ok, result.stderr
        assert b"sk-test-must-not-leak" not in result.stdout
        assert b"OPENAI_API_KEY" not in result.stdout
    finally:
        del os.environ["OPENAI_API_KEY"]
    check = check_environment(level)
    assert check.contained, check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_200_forks_hit_the_process_limit_and_leave_nothing(level: core.IsolationLevel) -> None:
    check = check_fork(level)
    assert check.contained, check.detail
    assert "refused after" in check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_6_gib_is_refused(level: core.IsolationLevel) -> None:
    check = check_memory(level)
    assert check.contained, check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_writes_outside_the_directory_fail(level: core.IsolationLevel) -> None:
    check = check_write(level)
    assert check.contained, check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_an_endless_loop_is_killed_in_time_with_its_children(level: core.IsolationLevel) -> None:
    check = check_endless_loop(level, timeout_s=1.5)
    assert check.contained, check.detail


@pytest.mark.parametrize("level", LEVELS)
def test_a_detached_grandchild_dies_with_the_run(level: core.IsolationLevel, tmp_path: object) -> None:
    marker = f"tollbench-detached-{os.getpid()}-{time.monotonic_ns()}"
    program = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "print('parent done')\n"
    )
    result = run_python_sync({"d.py": program}, "d.py", level=level, limits=Limits(timeout_s=10))
    assert result.ok, result.stderr
    left = [
        p.name
        for p in __import__("pathlib").Path("/proc").iterdir()
        if p.name.isdigit() and marker.encode() in _cmdline(p)
    ]
    assert left == []


def _cmdline(p: object) -> bytes:
    try:
        return (p / "cmdline").read_bytes()  # type: ignore[operator]
    except OSError:
        return b""


@pytest.mark.parametrize("level", LEVELS)
def test_output_is_read_capped_and_big_files_are_refused(level: core.IsolationLevel) -> None:
    program = "import sys\nsys.stdout.write('x' * 5_000_000)\n"
    limits = Limits(timeout_s=10, output_bytes=1000)
    result = run_python_sync({"o.py": program}, "o.py", level=level, limits=limits)
    assert result.ok
    assert len(result.stdout) == 1000 and result.stdout_truncated
    limits = Limits(timeout_s=10, file_bytes=100_000)
    result = run_python_sync({"o.py": program}, "o.py", level=level, limits=limits)
    # Python ignores SIGXFSZ: the write fails with EFBIG and the program exits with an error.
    assert not result.ok and len(result.stdout) <= 100_000 and b"File too large" in result.stderr


@pytest.mark.parametrize("level", LEVELS)
def test_stdin_files_and_exit_codes(level: core.IsolationLevel) -> None:
    files = {"main.py": "import helper, sys\nprint(helper.f(sys.stdin.read()))\nsys.exit(3)\n"}
    files["helper.py"] = "def f(s):\n    return s.upper()\n"
    result = run_python_sync(files, "main.py", stdin=b"abc", level=level)
    assert result.returncode == 3 and result.stdout == b"ABC\n" and not result.timed_out
    assert result.isolation == level


def test_files_outside_the_directory_are_refused() -> None:
    with pytest.raises(ValueError):
        run_python_sync({"../x.py": "pass"}, "../x.py")


def test_the_machine_isolates_and_says_how() -> None:
    iso = core.isolation()
    assert iso.level in ("bwrap", "namespaces")
    assert iso.network and iso.pid_namespace and iso.unprivileged
    assert f"isolation level: {iso.level}" in iso.describe()


def test_without_bubblewrap_namespaces_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(core.shutil, "which", lambda n: None if n == "bwrap" else real_which(n))
    core.reset_isolation_cache()
    try:
        iso = core.isolation()
        assert iso.level == "namespaces" and iso.filesystem == "read-only"
        assert any("bubblewrap is not installed" in n for n in iso.notes)
    finally:
        core.reset_isolation_cache()


def test_with_nothing_to_isolate_the_level_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.shutil, "which", lambda n: None)
    core.reset_isolation_cache()
    try:
        iso = core.isolation()
        assert iso.level == "none" and not iso.network and iso.filesystem == "open"
    finally:
        core.reset_isolation_cache()


@pytest.mark.anyio
async def test_runs_wait_off_the_event_loop_in_a_pool_of_cpu_count() -> None:
    running = 0
    most = 0
    ticks = 0
    program = "import time\ntime.sleep(0.6)\n"

    async def one() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            result = await run_python({"s.py": program}, "s.py")
            assert result.ok
        finally:
            running -= 1

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.05)
            ticks += 1

    n = core.pool_size() * 2
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with anyio.create_task_group() as work:
            for _ in range(n):
                work.start_soon(one)
        tg.cancel_scope.cancel()
    took = time.monotonic() - t0
    assert ticks >= 10  # the loop kept running while the programs slept
    assert took >= 1.2  # two rounds: never more than pool_size at once


@pytest.mark.parametrize("level", LEVELS)
def test_runs_side_by_side_cannot_read_each_others_files(level: core.IsolationLevel) -> None:
    import threading

    secret = f"secret-{time.monotonic_ns()}"
    holder = "import time\nopen('s.txt', 'w').write(" + repr(secret) + ")\ntime.sleep(3)\n"
    box: dict[str, core.Result] = {}
    t = threading.Thread(
        target=lambda: box.setdefault("a", run_python_sync({"a.py": holder}, "a.py", level=level))
    )
    t.start()
    time.sleep(1.0)
    reader = (
        "import glob\nfound = []\n"
        "for path in glob.glob('/tmp/tollbench-sbx-*/work/s.txt') + glob.glob('/tmp/*/*/s.txt'):\n"
        "    try:\n        found.append(open(path).read())\n    except OSError:\n        pass\n"
        "print(found)\n"
    )
    result = run_python_sync({"b.py": reader}, "b.py", level=level)
    t.join()
    assert box["a"].ok and result.ok, result.stderr
    assert secret.encode() not in result.stdout


def test_an_interpreter_under_tmp_is_bound_on_top_of_the_fresh_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    # bwrap applies mounts in order: a venv in /tmp (a CI clone there) bound before `--tmpfs /tmp`
    # was hidden by it ("execvp ...: No such file or directory") and the sandbox fell back a level.
    monkeypatch.setattr(core.sys, "prefix", "/tmp/somewhere/.venv")
    monkeypatch.setattr(core.os.path, "exists", lambda p: True)
    cmd, _ = core._command("bwrap", "/tmp/somewhere/.venv/bin/python", "/tmp/w", Limits(), ["m.py"])
    tmpfs = cmd.index("--tmpfs")
    assert cmd[tmpfs + 1] == "/tmp"
    binds = [i for i, a in enumerate(cmd) if a == "--ro-bind" and cmd[i + 1].startswith("/tmp/")]
    assert binds and all(i > tmpfs for i in binds)
    dirs = [i for i, a in enumerate(cmd) if a == "--dir" and cmd[i + 1].startswith("/tmp")]
    assert all(i > tmpfs for i in dirs)
