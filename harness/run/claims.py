"""One worker of a run: the units it claims, its leases and heartbeat, and how it leaves (docs/workers.md).

Every session of a run (``run``, ``run --run-id X`` on several machines, ``worker X``, ``resume``) is a
worker: it registers in ``run_workers`` and buys only the units it has claimed in ``unit_claims``
(:mod:`harness.store.workers`: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), a few at a time in plan order, so each unit is bought by one worker. Its
heartbeat (every quarter of its lease) renews its leases; a unit whose lease it lost (its heartbeat
was late and another worker took the unit) is not started. A worker whose process is gone (same host)
or whose heartbeat is older than its lease is ended by the others, and its units are taken; its
in-flight reservations stay counted in the ledger until ``tollbench reconcile``.

A worker with nothing left to claim waits while other workers hold units (they may give them back),
then leaves; the one whose leaving finds no other live worker writes the run's one final status
(:func:`harness.store.workers.leave`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from harness.errors import ConfigError, StorageError
from harness.run.liveness import _pid_alive
from harness.run.plan import Plan, options_from_config, prepare_run
from harness.store import workers as w
from harness.store.engine import TERMINAL_STATUSES, Store
from harness.types import UnitKey

__all__ = ["DEFAULT_LEASE_S", "UnitClaims", "plan_join"]

log = logging.getLogger("tollbench.claims")

#: How long a claim lasts without a heartbeat, by default (``--lease``).
DEFAULT_LEASE_S = 60.0

_LIVE: set[str] = set()
"""Worker ids alive in this process (a same-pid worker not in here has ended)."""


def worker_is_live(row: Mapping[str, Any], now: datetime | None = None) -> bool:
    """Whether a ``run_workers`` row is a live worker: not ended, heartbeat within its lease, and (on
    this host) its process alive."""
    if row.get("ended_at") is not None:
        return False
    now = now or datetime.now(UTC)
    beat = row.get("heartbeat_at")
    if beat is None or now - beat > timedelta(seconds=float(row.get("lease_s") or DEFAULT_LEASE_S)):
        return False
    if row.get("host") != socket.gethostname():
        return True  # another machine's process: only its heartbeat tells
    pid = int(row.get("pid") or 0)
    if pid == os.getpid():
        return str(row.get("worker_id")) in _LIVE
    return _pid_alive(pid)


class UnitClaims:
    """This process's worker on ``run_id`` (see the module docstring)."""

    def __init__(self, store: Store, run_id: str, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        if lease_s <= 0:
            raise ConfigError("--lease must be more than 0 seconds")
        self.store = store
        self.run_id = run_id
        self.lease_s = float(lease_s)
        self.worker_id = secrets.token_hex(16)
        self.heartbeat_s = max(0.05, min(10.0, self.lease_s / 4))
        self.poll_s = max(0.05, min(0.5, self.lease_s / 8))
        self.alive = True
        """False once another worker ended this one (it was thought dead): start nothing new."""
        self.lost: set[UnitKey] = set()
        """Units this worker claimed and lost (another took them after its lease expired)."""
        self._mine: set[UnitKey] = set()
        self._lease_base: float | None = None
        """Monotonic time at or before which every lease this worker holds was last set (the start of
        its last renewal, or of its first claim): they all last until ``_lease_base + lease_s``."""
        self._on_ended: Callable[[], None] | None = None
        self.claimed = 0
        self.taken = 0
        """Units taken over from a worker that was gone."""

    # -- joining and claiming -------------------------------------------------------------------------

    async def join(self, units: Sequence[tuple[UnitKey, bool]], *, retry_errors: bool = False) -> None:
        """Register this worker and make sure the run's units have claim rows (``done`` flags; a
        resume also sends failed units again: ``retry_errors``)."""
        _LIVE.add(self.worker_id)
        await anyio.to_thread.run_sync(
            lambda: w.register_worker(
                self.store,
                self.run_id,
                self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                lease_s=self.lease_s,
            )
        )
        await anyio.to_thread.run_sync(
            lambda: w.seed_units(self.store, self.run_id, list(units), retry_errors=retry_errors)
        )
        await self.sweep()

    async def claim(self, model: str, n: int) -> list[tuple[UnitKey, bool]]:
        """Claim up to ``n`` units of ``model`` (``(unit, taken from a gone worker)`` pairs)."""
        if not self.alive:
            return []
        started = time.monotonic()
        got = await anyio.to_thread.run_sync(
            w.claim_units, self.store, self.run_id, self.worker_id, model, n, self.lease_s
        )
        for key, taken in got:
            self._mine.add(key)
            self.lost.discard(key)
            self.taken += int(taken)
        self.claimed += len(got)
        if got and self._lease_base is None:
            self._lease_base = started
        return got

    async def still_mine(self, key: UnitKey) -> bool:
        """Whether this worker may start ``key``: it was not lost, and its lease has time left (if its
        leases are about to run out, as after a pause of the process, they are renewed first)."""
        base = self._lease_base
        if base is not None and time.monotonic() > base + self.lease_s - self.heartbeat_s:
            try:
                await self.renew()
            except StorageError as exc:  # not renewed: start it only while the lease surely holds
                log.warning("worker heartbeat: %s", exc)
                if time.monotonic() > base + self.lease_s:
                    return False
        return self.alive and key not in self.lost

    def finished(self, key: UnitKey) -> None:
        """The unit's item result is queued in the ledger (its claim is marked done with it)."""
        self._mine.discard(key)

    async def others_hold(self, model: str) -> bool:
        """Whether units of ``model`` not done may still come free: held by other workers (after ending
        the workers that are gone) or free again."""
        await self.sweep()
        free, others = await anyio.to_thread.run_sync(
            w.units_left, self.store, self.run_id, model, self.worker_id
        )
        return free + others > 0

    async def sweep(self) -> None:
        """End the workers that are gone (process dead on this host, or heartbeat older than their
        lease) and free their units at once."""
        rows = await anyio.to_thread.run_sync(w.open_workers, self.store, self.run_id)
        now = datetime.now(UTC)
        gone = [
            str(r["worker_id"])
            for r in rows
            if r["worker_id"] != self.worker_id and not worker_is_live(r, now)
        ]
        if gone:
            log.warning("run %s: %d worker(s) gone; their units are free again", self.run_id, len(gone))
            await anyio.to_thread.run_sync(w.mark_gone, self.store, self.run_id, gone)

    # -- heartbeat ------------------------------------------------------------------------------------

    async def keep_alive(self, on_ended: Callable[[], None]) -> None:
        """Renew this worker's leases every :attr:`heartbeat_s`; ``on_ended`` is called once if another
        worker ended this one (it must start nothing new)."""
        self._on_ended = on_ended
        while True:
            await anyio.sleep(self.heartbeat_s)
            try:
                await self.renew()
                await self.sweep()
            except StorageError as exc:  # the ledger reports database trouble where it matters
                log.warning("worker heartbeat: %s", exc)

    async def renew(self) -> None:
        """Renew this worker's leases now; note the units it lost and whether it was ended."""
        before = set(self._mine)
        started = time.monotonic()
        alive, held = await anyio.to_thread.run_sync(
            w.renew, self.store, self.run_id, self.worker_id, self.lease_s
        )
        if alive:
            self._lease_base = started
        lost = before - held - (before - self._mine)  # not held, and not finished meanwhile
        if lost:
            log.warning("run %s: %d unit lease(s) lost; they are not started here", self.run_id, len(lost))
            self.lost |= lost
            self._mine -= lost
        if not alive and self.alive:
            self.alive = False
            log.warning("run %s: this worker was ended by another (heartbeat too late)", self.run_id)
            if self._on_ended is not None:
                self._on_ended()

    # -- leaving --------------------------------------------------------------------------------------

    async def release(self) -> None:
        """Give back the units this worker holds and has not finished (others may take them at once)."""
        await anyio.to_thread.run_sync(w.release_units, self.store, self.run_id, self.worker_id)
        self._mine.clear()

    async def leave(
        self, status: str, *, owner_token: str | None, not_run_rows: Mapping[UnitKey, dict[str, Any]]
    ) -> w.Leave:
        """End this worker; the last live worker ends the run with its final status.

        While other workers look alive, this waits (at most the longest of their leases) for one of
        them to prove it is alive (a newer heartbeat: it will end the run) or to be gone (then this
        worker ends the run).
        """

        def once(mark: bool) -> w.Leave:
            return w.leave(
                self.store,
                self.run_id,
                self.worker_id,
                status,
                owner_token=owner_token,
                is_live=worker_is_live,
                not_run_rows=not_run_rows,
                mark_ended=mark,
            )

        try:
            result = await anyio.to_thread.run_sync(once, True)
            left_at = datetime.now(UTC)
            with anyio.move_on_after(self._longest_lease() + 2 * self.heartbeat_s):
                while result.waiting:
                    await anyio.sleep(self.poll_s)
                    rows = await anyio.to_thread.run_sync(w.open_workers, self.store, self.run_id)
                    if any(r["heartbeat_at"] > left_at for r in rows if worker_is_live(r)):
                        break  # a live worker: it ends the run
                    result = await anyio.to_thread.run_sync(once, False)
            return result
        finally:
            _LIVE.discard(self.worker_id)

    def _longest_lease(self) -> float:
        return max(self.lease_s, DEFAULT_LEASE_S)


def plan_join(store: Store, run_id: str, *, suites: Sequence[Any] | None = None, **overrides: Any) -> Plan:
    """The plan of run ``run_id`` as stored on it, for ``tollbench worker RUN_ID`` (join by id alone).

    Raises:
        ConfigError: No such run, an imported or ended run, or stored options that no longer plan.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
    config = dict(run.get("config") or {})
    if config.get("imported"):
        raise ConfigError(f"run {run_id} was imported from a bundle; it cannot be joined")
    if run["status"] in TERMINAL_STATUSES:
        raise ConfigError(
            f"run {run_id} has ended ({run['status']}); continue it with `tollbench resume {run_id}`"
        )
    options = options_from_config(config.get("options") or {}, suites=suites, run_id=run_id, **overrides)
    return prepare_run(options)
