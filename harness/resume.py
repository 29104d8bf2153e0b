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

A run whose status is ``running`` may still have a live process on it. It is taken over only when its
heartbeat (refreshed every few seconds by a running process) is older than :data:`STALE_AFTER_S`, or
when every process recorded on it ran on this host and is gone; otherwise ``--force`` is needed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import sqlalchemy as sa

from .cache import answers_of_run
from .errors import ConfigError
from .ledger import Ledger
from .plan import Plan, PriorUnit, options_from_config, prepare_run
from .runner import RunState, unit_key
from .session import RunOutcome
from .session import run as run_plan
from .storage import Store, calls_table
from .suite import Suite
from .types import UnitKey

__all__ = [
    "STALE_AFTER_S",
    "ResumePlan",
    "plan_resume",
    "prior_units",
    "register_process",
    "resume_run",
    "run_activity",
]

#: A ``running`` run whose heartbeat is older than this is considered abandoned.
STALE_AFTER_S = 60.0


def register_process(store: Store, run_id: str) -> None:
    """Record this process (host, pid, start time) on the run, so a later resume can tell whether a
    process is still working on it."""
    entry = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()}
    store.add_to_run_config_list(run_id, "processes", entry, keep=20)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is the one asking; it is not running the run concurrently
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


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
        raise ConfigError(
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
    return ResumePlan(run_id, plan, prior_units(store, run_id))


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
    """Continue a re-planned run: raise its budget if asked, then send only the units without a usable
    answer (see the module docstring). The run's status is ``running`` meanwhile, then its final one.

    Raises:
        StorageError: The database failed (see :func:`harness.session.run`).
    """
    if add_budget_nano < 0:
        raise ConfigError("--add-budget must not be negative")
    if add_budget_nano:
        async with Ledger(store, resume.run_id) as ledger:
            await ledger.add_budget(add_budget_nano)
    return await run_plan(
        resume.plan,
        store,
        on_progress=on_progress,
        on_start=on_start,
        handle_signals=handle_signals,
        simulator=simulator,
        resume_run_id=resume.run_id,
        prior=resume.prior,
    )


def resume_sync(store: Store, resume: ResumePlan, **kw: Any) -> RunOutcome:
    """:func:`resume_run` from synchronous code (the CLI)."""

    async def go() -> RunOutcome:
        return await resume_run(store, resume, **kw)

    return anyio.run(go)
