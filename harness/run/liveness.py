"""Liveness and ownership of a run: who works on it, and taking it over atomically.

One owner per run (docs/design.md invariant 10). A session owns the run it works on (``runs.owner_token``,
``owner_pid``, ``owner_host``). Taking a run over is :func:`take_over`: ONE conditional UPDATE of the
run row (:meth:`~harness.store.engine.Store.claim_run`) whose WHERE says "nobody owns it, I do, its
heartbeat is older than :data:`STALE_AFTER_S`, or its owner process is gone from this host", and whose
row count decides who proceeds; ``--add-budget`` is added by that same statement, so a session that
loses adds nothing and stops with :class:`RunBusyError` (exit 2): ``run X is being resumed by pid N on
HOST; wait or use --force``. ``--force`` takes the run unconditionally, still in one statement. The
owner renews ownership with its heartbeat (``store.touch_heartbeat``), and releases it at the end only
while it still owns the run. What earlier sessions did is read again once the run is won, so a
session that wins after another finished never buys the other's answers again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.errors import ConfigError
from harness.store.engine import RunOwner, Store

__all__ = [
    "STALE_AFTER_S",
    "RunBusyError",
    "busy_message",
    "forget",
    "hold",
    "register_process",
    "release",
    "run_activity",
    "take_over",
]

#: A ``running`` run whose heartbeat is older than this is considered abandoned.
STALE_AFTER_S = 60.0

_HELD: set[str] = set()
"""Owner tokens of the sessions alive in this process (a same-pid owner not in here has ended)."""


class RunBusyError(ConfigError):
    """Another live session owns the run (exit 2); nothing was changed."""


def busy_message(run_id: str, run: Mapping[str, Any]) -> str:
    return (
        f"run {run_id} is being resumed by pid {run.get('owner_pid')} on {run.get('owner_host')}; "
        "wait or use --force"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _owner_gone(run: Mapping[str, Any]) -> str | None:
    """Why the run's owner is certainly gone (its process on this host has ended), or None."""
    token, pid, host = run.get("owner_token"), run.get("owner_pid"), run.get("owner_host")
    if not token or not pid or host != socket.gethostname():
        return None  # another host's process cannot be checked: only its heartbeat tells
    if int(pid) == os.getpid():
        return None if token in _HELD else "its session in this process has ended"
    return None if _pid_alive(int(pid)) else f"its process {pid} is gone"


def hold(owner: RunOwner) -> RunOwner:
    """Note that a live session of this process holds ``owner`` (of a run it has just created)."""
    _HELD.add(owner.token)
    return owner


def take_over(
    store: Store,
    run_id: str,
    *,
    force: bool = False,
    add_budget_nano: int = 0,
    stale_after_s: float = STALE_AFTER_S,
) -> RunOwner:
    """Make this session the owner of ``run_id`` (one atomic conditional UPDATE, see the module
    docstring), raising its budget by ``add_budget_nano`` in the same statement.

    Raises:
        ConfigError: No such run.
        RunBusyError: A live session owns it (and ``force`` is off); nothing was changed.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
    owner = RunOwner.new()
    gone = run.get("owner_token") if _owner_gone(run) else None
    stale_before = datetime.now(UTC) - timedelta(seconds=stale_after_s)
    _HELD.add(owner.token)
    try:
        won = store.claim_run(
            run_id,
            owner,
            stale_before=stale_before,
            gone_token=gone,
            force=force,
            add_budget_nano=add_budget_nano,
        )
    except BaseException:
        _HELD.discard(owner.token)
        raise
    if not won:
        _HELD.discard(owner.token)
        raise RunBusyError(busy_message(run_id, store.get_run(run_id) or run))
    return owner


def release(store: Store, run_id: str, status: str, owner: RunOwner | None) -> bool:
    """End a session: set the run's final ``status`` and release ownership, only while ``owner``
    still owns it (``None``: a session that joined a run owned by another sets the status only once
    nobody owns it). The owner is forgotten in this process whatever happens, so a later session here
    can take the run over if the database could not be written.

    Returns:
        Whether the run row was updated.

    Raises:
        StorageError: The database failed.
    """
    try:
        return store.release_run(run_id, status, owner.token if owner else None)
    finally:
        if owner is not None:
            _HELD.discard(owner.token)
            store.forget_ownership(run_id)


def forget(store: Store, run_id: str, owner: RunOwner | None) -> None:
    """Forget ``owner`` in this process (its session ended; the run row was updated elsewhere)."""
    if owner is not None:
        _HELD.discard(owner.token)
    store.forget_ownership(run_id)


def register_process(store: Store, run_id: str) -> None:
    """Record this process (host, pid, start time) on the run, so a later resume can tell whether a
    process is still working on it."""
    entry = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()}
    store.add_to_run_config_list(run_id, "processes", entry, keep=20)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is the one asking; it is not running the run concurrently
    return _pid_alive(pid)


def run_activity(
    run: Mapping[str, Any], *, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S
) -> tuple[bool, str]:
    """Whether a process may still be working on ``run`` (a runs row), and why.

    Returns:
        ``(active, reason)``: active only for a ``running`` run with a fresh heartbeat and a recorded
        process that is alive (or that runs on another host, which cannot be checked).
    """
    if run["status"] != "running":
        return False, f"its status is {run['status']}"
    beat = run.get("heartbeat_at")
    now = now or datetime.now(UTC)
    age = (now - beat).total_seconds() if beat is not None else float("inf")
    if age > stale_after_s:
        return False, f"its heartbeat is {age:.0f}s old"
    if run.get("owner_token"):
        gone = _owner_gone(run)
        if gone is not None:
            return False, gone
        return (
            True,
            f"pid {run.get('owner_pid')} on {run.get('owner_host')} owns it (heartbeat {age:.0f}s ago)",
        )
    # A run without an owner (written by an older tollbench): the processes recorded on it.
    processes = [p for p in (run.get("config") or {}).get("processes") or [] if isinstance(p, Mapping)]
    host = socket.gethostname()
    if processes and all(p.get("host") == host for p in processes):
        live = [int(p["pid"]) for p in processes if _alive(int(p.get("pid") or 0))]
        if not live:
            return False, "the processes that ran it are gone"
        return True, f"process {live[-1]} is still running it (heartbeat {age:.0f}s ago)"
    return True, f"its heartbeat is {age:.0f}s old"
