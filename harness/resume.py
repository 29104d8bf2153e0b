"""Resume: continue an interrupted, failed or budget-stopped run without buying any answer twice.

What a unit (model, suite, item, repeat) needs is decided from the database alone:

- an item result ``scored`` or ``unusable``: the answer was paid for; the unit is never sent again;
- an ``ok`` call with a stored answer but no usable item result (the process died between paying and
  recording): the answer is re-scored from the database, free, whatever ``--no-cache`` says;
- anything else (``not_run``, ``error``, no row at all, or only calls left ``reserved`` by a crash):
  the unit is sent again. A call left ``reserved`` may have been billed; it stays counted at its worst
  case until ``tollbench reconcile`` settles it. Such calls are the only way an item can be paid twice.

The run is re-planned from ``runs.config["options"]`` (stored when the run was created): the same
suites, models, sample, repeats, seed and output limits, so the units and their requests are the
same. Budget, status and heartbeat live on the run row; ``--add-budget`` raises the budget through the
ledger.

One owner per run (DESIGN.md invariant 10). A session owns the run it works on (``runs.owner_token``,
``owner_pid``, ``owner_host``). Taking a run over is :func:`take_over`: ONE conditional UPDATE of the
run row (:meth:`~harness.storage.Store.claim_run`) whose WHERE says "nobody owns it, I do, its
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import sqlalchemy as sa

from .cache import answers_of_run
from .errors import ConfigError
from .plan import Plan, PriorUnit, options_from_config, prepare_run
from .runner import RunState, unit_key
from .session import RunOutcome
from .session import run as run_plan
from .storage import RunOwner, Store, calls_table
from .suite import Suite
from .types import UnitKey

__all__ = [
    "STALE_AFTER_S",
    "ResumePlan",
    "RunBusyError",
    "hold",
    "plan_resume",
    "prior_units",
    "register_process",
    "release",
    "resume_run",
    "run_activity",
    "take_over",
]

#: A ``running`` run whose heartbeat is older than this is considered abandoned.
STALE_AFTER_S = 60.0

_HELD: set[str] = set()
"""Owner tokens of the sessions alive in this process (a same-pid owner not in here has ended)."""


class RunBusyError(ConfigError):
    """Another live session owns the run (exit 2); nothing was changed."""


def _busy_message(run_id: str, run: Mapping[str, Any]) -> str:
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
        raise RunBusyError(_busy_message(run_id, store.get_run(run_id) or run))
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


def prior_units(store: Store, run_id: str) -> dict[UnitKey, PriorUnit]:
    """What earlier sessions of ``run_id`` did, per unit: item status, cost and attempts so far, and an
    answer bought but not recorded."""
    prior: dict[UnitKey, dict[str, Any]] = {}
    for r in store.item_results(run_id):
        key = (r["model"], r["suite"], r["item_id"], int(r["repeat"]))
        prior[key] = {"status": r["status"], "correct": r["correct"], "cost_nano": 0, "attempts": 0}
    c = calls_table
    stmt = (
        sa.select(
            c.c.model,
            c.c.suite,
            c.c.item_id,
            c.c.repeat,
            sa.func.count().label("attempts"),
            sa.func.sum(sa.func.coalesce(c.c.cost_nano, 0)).label("cost"),
        )
        .where(c.c.run_id == run_id, c.c.cached.is_(False))
        .group_by(c.c.model, c.c.suite, c.c.item_id, c.c.repeat)
    )
    with store.begin_read("reading a run's calls") as conn:
        for row in conn.execute(stmt):
            key = (row.model, row.suite, row.item_id, int(row.repeat))
            entry = prior.setdefault(key, {"status": None, "correct": None, "cost_nano": 0, "attempts": 0})
            entry["cost_nano"] = int(row.cost or 0)
            entry["attempts"] = int(row.attempts or 0)
    answers = answers_of_run(store, run_id)
    out: dict[UnitKey, PriorUnit] = {}
    for key, e in prior.items():
        done = e["status"] in ("scored", "unusable")
        out[key] = PriorUnit(
            status=e["status"],
            correct=e["correct"],
            cost_nano=e["cost_nano"],
            attempts=e["attempts"],
            answer=None if done else answers.get(key),
        )
    return out


@dataclass
class ResumePlan:
    """A run re-planned for resuming."""

    run_id: str
    plan: Plan
    prior: dict[UnitKey, PriorUnit]
    force: bool = False
    """Take the run over even from a live owner (``--force``)."""

    @property
    def done_units(self) -> int:
        """Units that already have a usable answer."""
        return sum(1 for mp in self.plan.models.values() for u in mp.units if self._done(u))

    @property
    def recoverable_units(self) -> int:
        """Units answered by a call the run bought but never recorded (re-scored for free)."""
        return sum(
            1
            for mp in self.plan.models.values()
            for u in mp.units
            if (p := self.prior.get(unit_key(u))) and not p.done and p.answer
        )

    @property
    def units_to_send(self) -> int:
        """Units that still need a provider call."""
        total = self.plan.total_units
        return total - self.done_units - self.recoverable_units

    def _done(self, u: Any) -> bool:
        p = self.prior.get(unit_key(u))
        return bool(p and p.done)


def plan_resume(
    store: Store,
    run_id: str,
    *,
    force: bool = False,
    suites: Sequence[str | Suite] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ResumePlan:
    """Check that ``run_id`` can be resumed and re-plan it.

    Args:
        store: The open database.
        run_id: The run to continue.
        force: Take over a run that looks alive (fresh heartbeat, live process).
        suites: Suite objects for suites that are not registered by name (tests).
        env: Environment for API keys (default ``os.environ``).
        overrides: :class:`~harness.plan.RunOptions` fields to change (``use_cache``, ``sim_url``, ...).

    Raises:
        ConfigError: No such run, an imported run, a live run without ``force``, or a run whose
            stored configuration no longer plans (a suite or model that is gone, a missing key).
    """
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
    config = dict(run.get("config") or {})
    if config.get("imported"):
        raise ConfigError(
            f"run {run_id} was imported from a bundle; nothing was bought here to resume - "
            "start a new run with `tollbench run` instead"
        )
    active, why = run_activity(run)
    if active and not force:
        # An early, friendly refusal; the decision is the atomic take-over in :func:`resume_run`.
        if run.get("owner_token"):
            raise RunBusyError(_busy_message(run_id, run))
        raise RunBusyError(
            f"run {run_id} is running ({why}); wait for it to finish, or pass --force if that process is gone"
        )
    options = options_from_config(config.get("options") or {}, suites=suites, **overrides)
    plan = prepare_run(options, env=env)
    stored_models, planned = list(run["models"]), list(plan.models)
    if sorted(stored_models) != sorted(planned):
        raise ConfigError(
            f"run {run_id} ran models {', '.join(stored_models)} but they now resolve to "
            f"{', '.join(planned)}; restore the model aliases it used"
        )
    if bool(run["simulated"]) != options.simulated:
        raise ConfigError(f"run {run_id}: stored options disagree with its simulated flag")
    return ResumePlan(run_id, plan, prior_units(store, run_id), force=force)


async def resume_run(
    store: Store,
    resume: ResumePlan,
    *,
    add_budget_nano: int = 0,
    simulator: Any | None = None,
    on_progress: Callable[[RunState], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    handle_signals: bool = False,
) -> RunOutcome:
    """Continue a re-planned run: take it over (raising its budget in the same statement), then send
    only the units without a usable answer (see the module docstring). The run's status is
    ``running`` meanwhile, then its final one.

    Raises:
        RunBusyError: Another live session owns the run (nothing was changed; exit 2).
        StorageError: The database failed (see :func:`harness.session.run`).
    """
    if add_budget_nano < 0:
        raise ConfigError("--add-budget must not be negative")
    owner = await anyio.to_thread.run_sync(
        lambda: take_over(store, resume.run_id, force=resume.force, add_budget_nano=add_budget_nano)
    )
    try:
        # What earlier sessions did, read again now that nobody else can be working on the run.
        resume.prior = await anyio.to_thread.run_sync(prior_units, store, resume.run_id)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: _give_back(store, resume.run_id, owner))
        raise
    return await run_plan(
        resume.plan,
        store,
        on_progress=on_progress,
        on_start=on_start,
        handle_signals=handle_signals,
        simulator=simulator,
        resume_run_id=resume.run_id,
        prior=resume.prior,
        owner=owner,
    )


def _give_back(store: Store, run_id: str, owner: RunOwner) -> None:
    try:
        release(store, run_id, "interrupted", owner)
    except Exception:  # the database failed: the owner is forgotten here, its heartbeat goes stale
        pass


def resume_sync(store: Store, resume: ResumePlan, **kw: Any) -> RunOutcome:
    """:func:`resume_run` from synchronous code (the CLI)."""

    async def go() -> RunOutcome:
        return await resume_run(store, resume, **kw)

    return anyio.run(go)
