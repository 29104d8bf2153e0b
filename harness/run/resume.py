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

One owner per run: :mod:`harness.run.liveness` takes the run over atomically before anything is read or
sent (see there); what earlier sessions did is read again once the run is won, so a session that wins
after another finished never buys the other's answers again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from harness.errors import ConfigError
from harness.run.liveness import (
    STALE_AFTER_S,
    RunBusyError,
    busy_message,
    hold,
    register_process,
    release,
    run_activity,
    take_over,
)
from harness.run.plan import Plan, PriorUnit, options_from_config, prepare_run
from harness.run.prior import prior_units
from harness.run.runner import RunState, unit_key
from harness.run.session import RunOutcome
from harness.run.session import run as run_plan
from harness.store.engine import RunOwner, Store
from harness.suite import Suite
from harness.types import UnitKey

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
        overrides: :class:`~harness.run.plan.RunOptions` fields to change (``use_cache``, ``sim_url``, ...).

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
            raise RunBusyError(busy_message(run_id, run))
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
        StorageError: The database failed (see :func:`harness.run.session.run`).
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
