"""One session of a run: create (or join, or resume) the run row, start or reach the simulator, drive a
:class:`~harness.run.runner.Runner`, and leave the run with its final status.

:mod:`harness.run.runner` executes the units; this module owns everything around it: the run row and its
ownership (a new run is created owned by its session; a resumed one is taken over atomically, see
:mod:`harness.run.resume`; the final status is written, and ownership released, only while still the
owner), the process registration, the simulator's lifetime and answer key, and turning a database
failure inside the workers into one clear error.

Joining an existing run with ``--run-id`` is allowed only when the plan is the one stored on it
(suites, models and every option that changes what is bought); otherwise it is refused with what
differs. A join of a run nobody owns takes it over; a join of a run a live session owns works beside
that session (they share the budget through the ledger) without owning it.

No database call runs on the event loop: each goes through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from harness.errors import ConfigError, StorageError
from harness.models import PROVIDERS
from harness.pricing.money import usd_to_nano
from harness.run.plan import Plan, PriorUnit, options_to_config
from harness.run.runner import Runner, RunState
from harness.store.engine import RunOwner, Store
from harness.suite import SteppedSuite
from harness.types import UnitKey

__all__ = ["PLAN_KEYS", "RunOutcome", "plan_differences", "run"]

log = logging.getLogger("tollbench.session")

#: Where a simulated session that needs no simulator points its clients: a closed loopback port, so
#: a call made by mistake fails at once and never reaches a real API (docs/design.md invariant 7).
_NOWHERE = "http://127.0.0.1:9/v1"


@dataclass
class RunOutcome:
    """How a session ended: the run, its final status and the process exit code (docs/design.md)."""

    run_id: str
    status: str
    exit_code: int
    errors: list[str] = field(default_factory=list)
    """The most frequent failed-attempt errors, one line each with what to do (empty if none)."""
    stop: str = ""
    """Why this session stopped early, one line (the budget or pool arithmetic), if it did."""


async def run(
    plan: Plan,
    store: Store,
    *,
    on_progress: Callable[[RunState], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    handle_signals: bool = False,
    simulator: Any | None = None,
    resume_run_id: str | None = None,
    prior: Mapping[UnitKey, PriorUnit] | None = None,
    owner: RunOwner | None = None,
) -> RunOutcome:
    """Execute a prepared plan: create (or join) the run row, start the simulator if asked, run, and
    mark the final status. Exit codes follow docs/design.md: 0 done, 1 failed, 3 budget, 130 interrupted.

    ``simulator`` is an already running ``SimServer``/``SimProcess`` to use for a simulated run (tests use
    it to read the invoice afterwards); it is left running. Without it ``--sim`` starts and stops one.

    ``resume_run_id`` continues that existing run instead of creating one (status back to ``running``;
    see :mod:`harness.run.resume`, which also builds ``prior`` and passes the ``owner`` it took the run
    over with; without one the run is taken over here, without ``--force``).

    Raises:
        ConfigError: ``--run-id`` names a run with another plan (what differs is named), or
            (:class:`~harness.run.resume.RunBusyError`) another live session owns the run to resume.
        StorageError: The database failed during the run (a lock, a full disk): nothing committed is
            lost, unsettled reservations stay counted at their worst case, and the run can be resumed.
    """
    opts = plan.options
    budget_nano = usd_to_nano(opts.budget_usd)
    config: dict[str, Any] = {
        "concurrency": opts.concurrency,
        "limit": opts.limit,
        "repeats": opts.repeats,
        "seed": opts.seed,
        "max_output_tokens": {n: m.max_output_tokens for n, m in plan.models.items()},
        "data": str(opts.data) if opts.data else None,
        "suite_options": dict(opts.suite_options),
        "options": options_to_config(opts),
    }
    if plan.control is not None:  # before any row is written: the control's answers must exist
        from harness.run.control import missing_controls

        missing = await anyio.to_thread.run_sync(missing_controls, store, plan)
        if missing:
            raise ConfigError(
                f"--control {plan.control}: no run of it answered every item of {', '.join(missing)}; "
                "`tollbench run --control` runs it first"
            )
    from harness.run.claims import UnitClaims
    from harness.run.liveness import forget, register_process, release, take_over
    from harness.run.prior import prior_units
    from harness.run.runner import unit_key

    joined = False
    if resume_run_id is not None:
        run_id = resume_run_id
        if owner is None:
            owner = await anyio.to_thread.run_sync(lambda: take_over(store, run_id))
    else:
        run_id, owner, joined = await anyio.to_thread.run_sync(
            _create_or_join, store, plan, budget_nano, config
        )
    # Every session is one worker of the run: it buys only the units it claims (docs/workers.md).
    claims = UnitClaims(store, run_id, lease_s=opts.lease_s)
    in_claims = False

    sim = simulator
    own_sim = False
    runner: Runner | None = None
    status = "failed"
    try:
        await anyio.to_thread.run_sync(register_process, store, run_id)
        if joined and prior is None:  # what the run's other workers did already
            prior = await anyio.to_thread.run_sync(prior_units, store, run_id)
        if on_start:
            await anyio.to_thread.run_sync(on_start, run_id)  # callers may read the database
        runner = Runner(
            plan,
            store,
            run_id,
            base_urls=_live_base_urls(opts.base_url),
            on_progress=on_progress,
            handle_signals=handle_signals,
            prior=prior,
            claims=claims,
        )
        if opts.simulated and sim is None and opts.sim_url:
            from harness.sim import SimClient

            sim = SimClient(opts.sim_url)
        elif opts.simulated and sim is None and await runner.needs_a_call():
            sim = await _start_simulator(plan)
            own_sim = True
        instance = await anyio.to_thread.run_sync(_sim_instance, sim) if sim is not None else None
        if instance is not None:
            await anyio.to_thread.run_sync(_note_sim_instance, store, run_id, instance)
        if opts.simulated and sim is None:
            # Everything is answered already (resume, the response cache): no simulator is started,
            # and a request sent by mistake fails at once.
            runner.connect(dict.fromkeys(PROVIDERS, _NOWHERE))
        elif opts.simulated:
            assert sim is not None
            runner.connect(sim.base_urls, instance)
        else:  # a live run (tests may point its base URL at a simulator they pass in)
            runner.connect(_live_base_urls(opts.base_url), instance)
        if sim is not None:
            from harness.answerkey import AnswerKey

            key = AnswerKey()
            chains = {n: s for n, s in plan.suites.items() if isinstance(s, SteppedSuite)}
            for mp in plan.models.values():
                for unit in mp.units:
                    key.add_prompt(runner.prompt_for(unit))
                    stepped = chains.get(unit.suite)
                    if stepped is not None:  # every step (keyed from its own part on)
                        key.add_prompts(stepped.key_prompts(runner.prompt_for(unit)))
            if hasattr(sim, "add_answer_key"):
                await anyio.to_thread.run_sync(sim.add_answer_key, key)
            else:
                sim.answer_key.update(key)
        known = prior or {}
        units = [
            (unit_key(u), bool((p := known.get(unit_key(u))) is not None and p.done))
            for mp in plan.models.values()
            for u in mp.units
        ]
        await claims.join(units, retry_errors=resume_run_id is not None)
        in_claims = True
        try:
            status = await runner.execute()
        except BaseExceptionGroup as group:
            # A database failure in any worker ends the run with that one clear error.
            storage = group.subgroup(StorageError)
            if storage is None:
                raise
            first = _leaves(storage)[0]
            raise first from group
        if opts.target_ci is not None:
            summaries = runner.target_summaries()
            await anyio.to_thread.run_sync(store.update_run_config, run_id, "target_ci", summaries)
    finally:
        with anyio.CancelScope(shield=True):
            if runner is not None and runner.state.interrupted:
                status = "interrupted"
            try:
                if in_claims and runner is not None:
                    # The last live worker ends the run, once; the others only leave.
                    rows = runner.not_run_rows()
                    token = owner.token if owner is not None else None
                    try:
                        left = await claims.leave(status, owner_token=token, not_run_rows=rows)
                    finally:
                        forget(store, run_id, owner)
                    if left.final and left.status is not None:
                        status = left.status
                elif not await anyio.to_thread.run_sync(release, store, run_id, status, owner):
                    log.warning("run %s: another session owns it now; it sets the final status", run_id)
            except StorageError as exc:
                # The database is unusable (full, locked): the run stays `running`; its heartbeat goes
                # stale and `tollbench resume` can take it over. The original error propagates.
                log.error("could not mark run %s %s: %s", run_id, status, exc)
            if sim is not None and own_sim:
                await anyio.to_thread.run_sync(sim.stop)
    code = {"done": 0, "budget_exhausted": 3, "interrupted": 130}.get(status, 1)
    errors = runner.state.error_summary() if runner is not None else []
    stopped = runner.state.run_stop if runner is not None else None
    return RunOutcome(run_id, status, code, errors, stopped.detail if stopped is not None else "")


def _live_base_urls(base_url: str | None) -> dict[str, str | None]:
    """``--base-url`` applies to the OpenAI-speaking models; the rest go where their spec says."""
    return {"openai": base_url}


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _sim_instance(sim: Any) -> str | None:
    """The simulator's invoice instance id (None if it cannot say)."""
    state = getattr(sim, "state", None)
    if state is not None:
        return str(state.invoice.instance)
    try:
        value = sim.invoice().get("instance")
    except Exception:  # an older or unreachable simulator: calls just carry no sent_to
        return None
    return str(value) if value else None


def _note_sim_instance(store: Store, run_id: str, instance: str) -> None:
    store.add_to_run_config_list(run_id, "sim_instances", instance)


#: The stored options that decide what a run buys: a join (``--run-id``) must agree on all of them.
PLAN_KEYS = (
    "suites",
    "models",
    "limit",
    "repeats",
    "seed",
    "max_output_tokens",
    "simulated",
    "data",
    "suite_options",
    "models_file",
    "base_url",
    "target_ci",
    "ci_method",
    "control",
    "split",
    "sim_seed",
    "sim_profiles",
    "pool",
)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def plan_differences(existing: Mapping[str, Any], plan: Plan, config: Mapping[str, Any]) -> list[str]:
    """What differs between the run row ``existing`` and a new session's ``plan`` (its ``config`` as
    :func:`run` stores it), as ``"name stored -> new"`` strings; empty when a join is safe."""
    stored_config = dict(existing.get("config") or {})
    stored = dict(stored_config.get("options") or {})
    new = dict(config.get("options") or {})
    diffs: list[str] = []
    if not stored:  # a run written by an older tollbench: compare what it stored at the top level
        stored = {k: stored_config.get(k) for k in ("limit", "repeats", "seed", "data", "suite_options")}
        new = {k: config.get(k) for k in stored}
    for key in PLAN_KEYS:
        if key in stored or key in new:
            a, b = stored.get(key), new.get(key)
            if key == "ci_method" and a is None and stored.get("target_ci") is not None:
                a = "eb"  # a --target-ci run stored before --ci-method existed
            if (a or None) != (b or None) and not (a == 0 and b == 0):
                diffs.append(f"{key} {_shown(a)} -> {_shown(b)}")
    for key, mine in (("suites", list(plan.suites)), ("models", list(plan.models))):
        theirs = list(existing.get(key) or [])
        if sorted(theirs) != sorted(mine) and not any(d.startswith(f"{key} ") for d in diffs):
            diffs.append(f"{key} {_shown(theirs)} -> {_shown(mine)}")
    limits, mine_limits = stored_config.get("max_output_tokens"), config.get("max_output_tokens")
    if (
        isinstance(limits, Mapping)
        and limits != mine_limits
        and not any("max_output_tokens" in d for d in diffs)
    ):
        diffs.append(f"max_output_tokens {_shown(limits)} -> {_shown(mine_limits)}")
    return diffs


def _create_or_join(
    store: Store, plan: Plan, budget_nano: int, config: dict[str, Any]
) -> tuple[str, RunOwner | None, bool]:
    """Create the run owned by this session, or join it when ``--run-id`` names one that exists and
    has the same plan (several processes then share its budget through the ledger's transactions).
    A joined run that nobody owns is taken over; one a live session owns is worked on beside it.
    Two processes racing to create the same id end up on the same row.

    Raises:
        ConfigError: The existing run has another plan or another ``--sim`` setting.
    """
    from harness.budget.pools import attach_run, check_pool
    from harness.run.liveness import RunBusyError, hold, take_over

    opts = plan.options
    for _ in range(2):
        existing = store.get_run(opts.run_id) if opts.run_id else None
        if existing is not None:
            run_id = str(existing["id"])
            if bool(existing["simulated"]) != opts.simulated:
                kind = "simulated" if existing["simulated"] else "a live run"
                raise ConfigError(f"run {run_id} is {kind}; cannot join it with this run's --sim setting")
            if existing.get("config", {}).get("imported"):
                raise ConfigError(f"run {run_id} was imported from a bundle; it cannot be joined")
            diffs = plan_differences(existing, plan, config)
            if diffs:
                raise ConfigError(
                    f"run {run_id} exists with another plan ({'; '.join(diffs)}); join it only with the "
                    "same options, or start a new run without --run-id"
                )
            try:
                return run_id, take_over(store, run_id), True
            except RunBusyError:
                return run_id, None, True  # a live session owns it: work beside it (claims split units)
        if opts.pool:
            check_pool(store, opts.pool)  # before the run exists: a wrong name creates nothing
        owner = RunOwner.new()
        try:
            run_id = store.create_run(
                suites=list(plan.suites),
                models=list(plan.models),
                budget_nano=budget_nano,
                simulated=opts.simulated,
                config=config,
                price_table_sha256=plan.price_table.sha256,
                run_id=opts.run_id,
                owner=owner,
            )
        except StorageError:
            if not opts.run_id:
                raise
            continue
        if opts.pool:
            attach_run(store, run_id, opts.pool)
        return run_id, hold(owner), False
    raise ConfigError(f"could not create or join run {opts.run_id!r}")


async def _start_simulator(plan: Plan) -> Any:
    from harness.sim import start_sim_process

    opts = plan.options
    seed = opts.sim_seed if opts.sim_seed is not None else opts.seed
    return await anyio.to_thread.run_sync(
        lambda: start_sim_process(
            profiles=opts.sim_profiles, seed=seed, speed=opts.sim_speed, faults_file=opts.sim_faults
        )
    )
