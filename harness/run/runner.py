"""Run suites against models under a hard dollar cap.

Flow of one call (docs/design.md): suite item -> worker -> provider slot -> ledger ``reserve(worst case)``
(durable before sending) -> adapter streams through the official SDK -> usage normalised -> priced with
the run's price snapshot -> ledger ``settle(actual)`` -> scorer -> item result.

Concurrency: one pool of ``concurrency`` workers per model reading that model's work units from a memory
stream, and one :class:`~harness.run.limiter.AdaptiveLimiter` per provider. When a reservation does not fit
the budget no new call starts anywhere, in-flight calls finish and settle, and the run ends
``budget_exhausted`` with the remaining items recorded as not run.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from harness.budget.gate import BudgetGate
from harness.budget.ledger import CachedCall, CallStart, ItemResult, Ledger
from harness.budget.shares import ShareHold, Shares
from harness.budget.split import split_budget
from harness.errors import (
    AuthError,
    BadRequest,
    BudgetExhausted,
    CallTimeout,
    ProviderError,
    RateLimited,
    ShareExhausted,
    StorageError,
    UnitLost,
)
from harness.forecast.projection import Projection, summarize_partial
from harness.pricing.money import format_usd, usd_str, usd_to_nano
from harness.redact import strip_url_credentials
from harness.run.attempt import Reservation, one_line, provider_cost_nano
from harness.run.cache import CachedAnswer, canonical_request, find_cached, request_key, response_record
from harness.run.claims import UnitClaims
from harness.run.judge import judge_answer
from harness.run.limiter import AdaptiveLimiter
from harness.run.plan import ModelPlan, Plan, PriorUnit, RunOptions, Unit, prepare_run
from harness.run.prior import prior_units
from harness.run.retry import retrying
from harness.run.startup import resume_collector
from harness.run.steps import STEP_ROLE, run_steps
from harness.stats.sequential import TargetCI, planned_items
from harness.store.engine import Store
from harness.suite import JudgedSuite, Score, SteppedSuite, score_answer
from harness.types import Adapter, Completion, ModelSpec, Prompt, Request, RetryDecision, UnitKey

__all__ = [
    "ModelProgress",
    "RunOptions",
    "RunState",
    "Runner",
    "Stop",
    "StopReason",
    "prepare_run",
    "unit_key",
]

log = logging.getLogger("tollbench.runner")

#: Where the judge's adapter is kept among the models' (closed with them).
_JUDGE_KEY = "\x00judge"

#: Seconds between heartbeats of a running run (``runs.heartbeat_at``); resume treats a run whose
#: heartbeat is older than a few of these as abandoned.
HEARTBEAT_S = 10.0

#: Workers started per event-loop turn (see :class:`_Crew`).
SPAWN_BATCH = 64

#: Units a worker process claims first (then four times as many per claim, up to ``--concurrency``).
FIRST_CLAIM = 64


class StopReason(StrEnum):
    """Why a model (or the whole run) stopped before all its units were sent: the one stop vocabulary.
    The value is what ``item_results.reason`` records for the units not run."""

    BUDGET = "budget_exhausted"
    """The run's budget: the next call does not fit with nothing of this process in flight."""
    SHARE = "budget_share_exhausted"
    """The model's share of a split budget ran out and none could come back or flow in."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM."""
    UNAVAILABLE = "model_unavailable"
    """The provider refused the model itself (no access, unknown model): no later call can succeed."""
    TAKEN_OVER = "taken_over"
    """Another session took the run over: this one starts nothing new."""


@dataclass(frozen=True, slots=True)
class Stop:
    reason: StopReason
    detail: str = ""
    """A one-line explanation (the error that stopped it, the budget arithmetic)."""


@dataclass
class ModelProgress:
    total: int
    done: int = 0
    calls: int = 0
    errors: int = 0
    """Items that ended in an error (after their retries)."""
    failed_calls: int = 0
    """Attempts that failed (retried or not)."""
    correct: int = 0
    scored: int = 0


@dataclass
class RunState:
    """Live counters shared by the workers and the progress display."""

    run_id: str
    budget_nano: int
    per_model: dict[str, ModelProgress]
    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    run_stop: Stop | None = None
    """Set when the whole run stopped (budget, interrupt)."""
    model_stops: dict[str, Stop] = field(default_factory=dict)
    """Models stopped on their own (share, model unavailable)."""
    target_reached: set[tuple[str, str]] = field(default_factory=set)
    """(model, suite) pairs whose --target-ci interval is narrow enough."""
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Failed attempts by (model, error type, one-line message)."""
    projection: Projection | None = None
    ledger: Ledger | None = None
    batch: Any = None
    """``--batch``: the batch path's progress (:class:`harness.run.batch.BatchProgress`)."""

    @property
    def spent_nano(self) -> int:
        return self.ledger.spent_nano if self.ledger else 0

    @property
    def committed_nano(self) -> int:
        return self.ledger.committed_nano if self.ledger else 0

    def stop_of(self, model: str) -> Stop | None:
        """Why ``model`` stopped, if it did (the run's stop wins over the model's own)."""
        return self.run_stop or self.model_stops.get(model)

    @property
    def budget_stop(self) -> bool:
        return self.run_stop is not None and self.run_stop.reason is StopReason.BUDGET

    @property
    def interrupted(self) -> bool:
        return self.run_stop is not None and self.run_stop.reason is StopReason.INTERRUPTED

    @property
    def share_stopped(self) -> set[str]:
        return {m for m, s in self.model_stops.items() if s.reason is StopReason.SHARE}

    @property
    def stopped_models(self) -> dict[str, str]:
        return {m: s.detail or s.reason.value for m, s in self.model_stops.items()}

    def error_summary(self, limit: int = 5) -> list[str]:
        """The most frequent failed-attempt errors, one line each, with what to do about them."""
        lines = []
        for (model, kind, message), count in self.errors.most_common(limit):
            text = f"{kind} {message}"
            hint = next((h for key, h in _ERROR_HINTS.items() if key in text), "")
            lines.append(f"{count} x {model}: {kind}: {message}" + (f" ({hint})" if hint else ""))
        rest = sum(self.errors.values()) - sum(c for _, c in self.errors.most_common(limit))
        if rest:
            lines.append(f"... and {rest} more failed attempts (see `tollbench show RUN_ID --calls`)")
        return lines


_ERROR_HINTS = {
    "model_not_found": "check the model id: `tollbench prices` lists the priced models",
    "not_found_error": "check the model id: `tollbench prices` lists the priced models",
    "authentication_error": "check the API key in the environment",
    "invalid_api_key": "check the API key in the environment",
    "permission_error": "the key has no access to this model",
    "rate_limit_exceeded": "lower --concurrency, or wait for the provider's rate limit to reset",
    "rate_limit_error": "lower --concurrency, or wait for the provider's rate limit to reset",
    "insufficient_quota": "the account is out of credit",
    "attempt_timeout": "raise --attempt-timeout, or lower --max-output-tokens",
    "stream_stall": "raise --stall-timeout",
}


class Runner:
    def __init__(
        self,
        plan: Plan,
        store: Store,
        run_id: str,
        *,
        base_urls: Mapping[str, str | None],
        on_progress: Callable[[RunState], None] | None = None,
        handle_signals: bool = False,
        prior: Mapping[UnitKey, PriorUnit] | None = None,
        sim_instance: str | None = None,
        claims: UnitClaims | None = None,
    ) -> None:
        """Prepare to execute ``plan`` as run ``run_id``.

        Args:
            plan: The prepared plan (every unit of the run).
            store: The open database.
            run_id: The run (it must exist).
            base_urls: Base URL per provider (the simulator's, or None for the SDK default).
            on_progress: Called with the live state about four times a second.
            handle_signals: Turn SIGINT/SIGTERM into an orderly stop (the CLI).
            prior: For a resumed run: what earlier sessions did per unit. Units with a usable answer
                are not sent again; answers bought but not recorded are re-scored from the database.
            sim_instance: The simulator's invoice instance (recorded as ``calls.sent_to``).
            claims: This process's worker on the run: units are bought only once claimed there, so
                several workers split the run (:mod:`harness.run.claims`).
        """
        self.plan = plan
        self._claims = claims
        self.handle_signals = handle_signals
        self.store = store
        self.run_id = run_id
        self.base_urls = base_urls
        self.on_progress = on_progress
        # The budget shown until the ledger has read the run's own (no database call here: the
        # runner is built on the event loop).
        self.state = RunState(
            run_id,
            usd_to_nano(plan.options.budget_usd),
            {name: ModelProgress(total=len(m.units)) for name, m in plan.models.items()},
        )
        self._endpoints: dict[str, str] = {}
        self._stepped: dict[str, bool] = {}
        self._judged_suites: dict[str, bool] = {}
        self._requests: dict[UnitKey, tuple[Request, dict[str, Any], str]] = {}
        """Each unit's request as :meth:`look_up` built it, taken by the unit's first attempt."""
        self._done: set[UnitKey] = set()
        self._batched: set[str] = set()
        """Models the batch path owns (``--batch``; :mod:`harness.run.batch`): no workers for them."""
        self._prior: dict[UnitKey, PriorUnit] = dict(prior or {})
        self._cache: dict[str, CachedAnswer] = {}
        """The response cache's answers found so far, by request key (:meth:`look_up`)."""
        self._looked_up: set[UnitKey] = set()
        """Units whose response-cache lookup is done: a unit is looked up before it is bought."""
        self._looking: dict[UnitKey, anyio.Event] = {}
        """Units whose lookup is under way, and the event set when it ends."""
        self._sent_to = f"sim:{sim_instance}" if sim_instance else None
        self._adapters: dict[str, Adapter] = {}
        self._learned: set[tuple[str, str]] = set()
        """(model, fact) its endpoint was seen (and recorded) to do: ``no_stream_usage``, ``cuts_streams``."""
        self._limiters: dict[str, AdaptiveLimiter] = {}
        opts = plan.options
        # A budget across several models is split into shares (equal by default); leftover share flows
        # to the models still running when one finishes (harness.budget.shares owns that and every wait for
        # it). The run's hard cap stays in the DB ledger, behind the gate (harness.run.attempt).
        self._shares: Shares | None = None
        self._gate: BudgetGate | None = None
        self._unit_costs: dict[tuple[str, str], list[int]] = {}
        self._targets: dict[tuple[str, str], TargetCI] = {}
        if opts.target_ci is not None:
            for name, mp in plan.models.items():
                for sname, suite in plan.suites.items():
                    units = [u for u in mp.units if u.suite == sname]
                    order = list(dict.fromkeys(u.item.id for u in units))
                    if order:
                        self._targets[(name, sname)] = TargetCI(
                            opts.target_ci,
                            population=len(suite.items),
                            order=order,
                            repeats=max(1, len(units) // len(order)),
                            method=opts.ci_method,
                            control=plan.controls.get(sname) if plan.control else None,
                        )
        self.state.projection = Projection(plan.total_units)
        self._apply_prior()

    def _apply_prior(self) -> None:
        """Count the units earlier sessions finished as done (progress, --target-ci, projection)."""
        skipped = 0
        for name, mp in self.plan.models.items():
            progress = self.state.per_model[name]
            for unit in mp.units:
                prior = self._prior.get(unit_key(unit))
                if prior is None or not prior.done:
                    continue
                self._done.add(unit_key(unit))
                skipped += 1
                progress.done += 1
                if prior.status == "scored":
                    progress.scored += 1
                    progress.correct += int(bool(prior.correct))
                target = self._targets.get((unit.model, unit.suite))
                if target is not None and (unit.model, unit.suite) not in self.state.target_reached:
                    target.add(unit.item.id, bool(prior.correct) if prior.status == "scored" else None)
                    if target.done:
                        self.state.target_reached.add((unit.model, unit.suite))
        if skipped and self.state.projection is not None:
            self.state.projection.units_skipped(skipped)

    def endpoint(self, spec: Any) -> str:
        """Where this model's requests go, as the cache key names it (see :mod:`harness.run.cache`)."""
        if self.plan.options.simulated:
            return "simulator"
        got = self._endpoints.get(spec.name)
        if got is None:
            url = self._base_url(spec)
            # Credentials in the URL are neither part of the key nor stored (docs/design.md, invariant 8).
            got = self._endpoints[spec.name] = strip_url_credentials(url) if url else "default"
        return got

    def request_for(
        self, mp: ModelPlan, unit: Unit, prompt: Prompt | None = None
    ) -> tuple[Request, dict[str, Any], str]:
        """The unit's request (or, for a stepped suite's step, ``prompt``'s), its canonical form and
        its response-cache key."""
        spec = mp.spec
        request = Request(
            model=spec.model,
            messages=(prompt or self.prompt_for(unit)).messages,
            max_output_tokens=mp.max_output_tokens,
            reasoning_effort=spec.reasoning_effort,
            thinking_budget=spec.thinking_budget,
            temperature=spec.temperature,
            extra_body=spec.extra_body,
        )
        canonical = canonical_request(
            spec, request, repeat=unit.repeat, run_seed=self.plan.options.seed, endpoint=self.endpoint(spec)
        )
        return request, canonical, request_key(canonical)

    def prompt_for(self, unit: Unit) -> Prompt:
        return self.plan.prompt(unit)

    def _base_url(self, spec: ModelSpec) -> str | None:
        """Where ``spec``'s requests go: the session's URL for its provider (the simulator's), its own
        ``base_url``, the provider's ``*_BASE_URL`` variable, or the provider's default endpoint (None:
        the SDK's default)."""
        from harness.models import base_url_env, default_base_url

        env = os.environ.get(base_url_env(spec.provider), "").strip() or None
        return self.base_urls.get(spec.provider) or spec.base_url or env or default_base_url(spec.provider)

    def connect(self, base_urls: Mapping[str, str | None], sim_instance: str | None = None) -> None:
        """Say where requests go (before :meth:`execute`): base URL per provider and, for the simulator,
        its invoice instance (recorded as ``calls.sent_to`` for ``reconcile``)."""
        before = {name: self.endpoint(mp.spec) for name, mp in self.plan.models.items()}
        self.base_urls = base_urls
        self._endpoints.clear()
        if any(self.endpoint(mp.spec) != before[name] for name, mp in self.plan.models.items()):
            self._requests.clear()  # their cache keys name the endpoint: look them up again
            self._looked_up.clear()
            self._cache.clear()
        self._sent_to = f"sim:{sim_instance}" if sim_instance else None

    async def look_up(self, mp: ModelPlan, units: Iterable[Unit]) -> None:
        """Look ``units`` up in the response cache (those not looked up or being looked up, in one
        query); the request and key built for each are the ones the unit's first attempt sends.

        While a run goes, :meth:`_look_ahead` looks a model's units up a batch at a time from the
        start, ahead of the workers, so the first requests do not wait for thousands of keys and the
        later units do not wait for the database once the run is busy; a unit is always looked up
        before it is bought (:meth:`_looked_up_before_buying`)."""
        if not self.plan.options.use_cache:
            return
        keys: list[str] = []
        mine: list[UnitKey] = []
        looked_up, looking, done = self._looked_up, self._looking, self._done
        finished = anyio.Event()
        try:
            for unit in units:
                ukey = unit_key(unit)
                if ukey in looked_up or ukey in looking or ukey in done:
                    continue
                mine.append(ukey)
                looking[ukey] = finished
                built = self.request_for(mp, unit)
                keys.append(built[2])
                if not self.stepped(unit.suite):  # a chain's steps build their own requests
                    self._requests[ukey] = built
                if len(mine) % 512 == 0:
                    await anyio.lowlevel.checkpoint()  # the workers' first requests go meanwhile
            if mine:
                self._cache.update(await anyio.to_thread.run_sync(find_cached, self.store, keys))
                looked_up.update(mine)
        finally:
            for ukey in mine:
                del looking[ukey]
            finished.set()

    async def _looked_up_before_buying(self, mp: ModelPlan, unit: Unit) -> None:
        """Return once ``unit`` is looked up: wait for the lookup under way, or make it."""
        if not self.plan.options.use_cache:
            return
        ukey = unit_key(unit)
        while ukey not in self._looked_up and ukey not in self._done:
            pending = self._looking.get(ukey)
            if pending is not None:
                await pending.wait()  # then looked up, or (its lookup failed) looked up here
            else:
                await self.look_up(mp, (unit,))

    async def _look_ahead(self, mp: ModelPlan, units: Sequence[Unit]) -> None:
        """Look a model's units up, in plan order (the order they are claimed and handed out in), a
        batch at a time: 64 first, then four times as many each time."""
        for chunk in _growing_chunks(units):
            if self.state.stop_of(mp.spec.name) is not None:
                return
            await self.look_up(mp, chunk)

    async def load_cache(self) -> None:
        """Look every unit still to answer up in the response cache (the batch path plans with all
        of them; the streaming path looks units up ahead of its workers, :meth:`_look_ahead`)."""
        for mp in self.plan.models.values():
            await self.look_up(mp, mp.units)

    def _needs_call(self, mp: ModelPlan, unit: Unit) -> bool:
        """Whether ``unit`` (looked up) needs a provider call: not answered before, no stored answer to
        re-score, no answer in the response cache; a judged or stepped suite's unit not done yet
        always does (its judge or its steps may have to be called)."""
        key = unit_key(unit)
        if key in self._done:
            return False
        if self._judged(unit.suite) or self.stepped(unit.suite):
            return True
        prior = self._prior.get(key)
        if prior is not None and prior.answer is not None:
            return False
        built = self._requests.get(key)
        rkey = built[2] if built is not None else self.request_for(mp, unit)[2]
        return not (self._cache and rkey in self._cache)

    async def needs_a_call(self) -> bool:
        """Whether any unit needs a provider call (see :meth:`_needs_call`), looking units up in the
        response cache a batch at a time only until one does."""
        for mp in self.plan.models.values():
            for chunk in _growing_chunks(mp.units):
                await self.look_up(mp, chunk)
                if any(self._needs_call(mp, unit) for unit in chunk):
                    return True
        return False

    async def execute(self) -> str:
        """Run every unit; return the final run status."""
        from adapters import create_adapter

        opts = self.plan.options
        provider_slots: dict[str, int] = {}
        for name, mp in self.plan.models.items():
            self._adapters[name] = create_adapter(
                mp.spec,
                api_key=mp.api_key,
                base_url=self._base_url(mp.spec),
                stall_timeout_s=opts.stall_timeout_s,
                max_connections=opts.concurrency,  # a connection per worker: no wait for the pool
            )
            provider_slots[mp.spec.provider] = provider_slots.get(mp.spec.provider, 0) + opts.concurrency
            if mp.spec.streaming == "auto" and mp.spec.dialect not in ("", "openai"):
                facts = await anyio.to_thread.run_sync(
                    self.store.endpoint_facts, self.endpoint(mp.spec), mp.spec.model
                )
                for fact in ("no_stream_usage", "cuts_streams"):
                    if facts.get(fact) == "true":
                        setattr(self._adapters[name], fact, True)
                        self._learned.add((name, fact))
        judge = self.plan.judge
        if judge is not None:  # judged suites (harness.run.judge): the judge's own adapter and price
            self._adapters[_JUDGE_KEY] = create_adapter(
                judge.spec,
                api_key=judge.api_key,
                base_url=self._base_url(judge.spec),
                stall_timeout_s=opts.stall_timeout_s,
                max_connections=opts.concurrency * max(1, len(self.plan.models)),
            )
            provider_slots.setdefault(judge.spec.provider, opts.concurrency)
        self._limiters = {p: AdaptiveLimiter(n) for p, n in provider_slots.items()}
        for price in [mp.price for mp in self.plan.models.values()] + ([judge.price] if judge else []):
            await anyio.to_thread.run_sync(
                self.store.ensure_price,
                price.id,
                price.provider,
                price.model,
                price.to_dict(),
                self.plan.price_table.sha256,
            )
        status = "done"
        try:
            async with Ledger(self.store, self.run_id, claims=self._claims is not None) as ledger:
                self.state.ledger = ledger
                self.state.budget_nano = ledger.budget_nano
                self._gate = BudgetGate(ledger)
                self._gate.on_stop = self._budget_stopped
                if len(self.plan.models) > 1:
                    # What is left of the budget (a resumed run has spent some) is what is shared.
                    left = max(0, ledger.budget_nano - ledger.committed_nano)
                    self._shares = Shares(split_budget(left, list(self.plan.models), opts.split))
                batches = None
                if opts.batch:
                    from harness.run.batch import BatchDriver

                    await self.load_cache()  # what is cached is not put in a batch
                    batches = BatchDriver(self)
                    await batches.prepare()
                    self._batched = batches.models
                resume_collector()  # start-up is over (harness.run.startup)
                try:
                    async with anyio.create_task_group() as tg:
                        if self.handle_signals:
                            tg.start_soon(self._watch_signals, tg)
                        tg.start_soon(self._report_progress)
                        tg.start_soon(self._heartbeat)
                        if self._claims is not None:
                            tg.start_soon(self._claims.keep_alive, self._worker_ended)
                        async with anyio.create_task_group() as work:
                            if batches is not None:
                                work.start_soon(batches.run)
                            for name, mp in self.plan.models.items():
                                self._start_model(work, name, mp)
                        tg.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        if self._claims is None:
                            await self._record_not_run(ledger)
                        await ledger.flush()
                        if self._claims is not None:  # after the flush: finished units are done
                            await self._claims.release()
        finally:
            with anyio.CancelScope(shield=True):
                for adapter in self._adapters.values():
                    try:
                        await adapter.aclose()
                    except Exception:
                        pass
                if self.on_progress:
                    self.on_progress(self.state)
        if self.state.interrupted:
            status = "interrupted"
        elif self.state.budget_stop or self.state.share_stopped:
            status = "budget_exhausted"
        elif self._all_failed() or self._nothing_answered():
            status = "failed"
        return status

    def _nothing_answered(self) -> bool:
        """Every model stopped as unavailable and nothing was answered: the run failed."""
        return bool(self.state.model_stops) and all(
            (s := self.state.model_stops.get(name)) is not None
            and s.reason is StopReason.UNAVAILABLE
            and p.scored == 0
            for name, p in self.state.per_model.items()
        )

    def _budget_stopped(self, stop: BudgetExhausted) -> None:
        """The gate stopped the run: no new call starts anywhere; share waiters stop too."""
        if self.state.run_stop is None:
            self.state.run_stop = Stop(StopReason.BUDGET, str(stop))
        if self._shares is not None:
            self._shares.stop_all()

    def _stop_model(self, model: str, reason: StopReason, detail: str = "") -> None:
        self.state.model_stops.setdefault(model, Stop(reason, detail))
        if self._shares is not None:
            self._shares.stop(model)

    def target_summaries(self) -> list[dict[str, Any]]:
        """For a --target-ci run: per model and suite, n of N items, the interval, the spend, and the
        projected cost of the full run."""
        out = []
        for (model, suite), target in self._targets.items():
            mp = self.plan.models[model]
            costs = self._unit_costs.get((model, suite), [])
            summary = summarize_partial(
                model=model,
                suite=suite,
                target=target,
                unit_costs_nano=costs,
                spent_nano=sum(costs),
                full_units=sum(1 for u in mp.units if u.suite == suite),
            )
            entry = {**summary.as_dict(), "method": target.method, "line": summary.line()}
            if target.method == "control":
                entry["control"] = self._control_summary(target, suite, sum(costs))
                entry["line"] += "; " + entry["control"]["line"]
            elif (self.plan.control_runs.get(suite) or {}).get("history"):  # consulted, not used
                history = self.plan.control_runs[suite]["history"]
                line = (
                    f"history of {len(history['models'])} models not used (forecast correlation "
                    f"{history['correlation'] or 0:.2f}: no fewer items than without it)"
                )
                entry["control"] = {"model": self.plan.control, "history": history, "line": line}
                entry["line"] += "; " + line
            out.append(entry)
        return out

    def _control_summary(self, target: TargetCI, suite: str, spent_nano: int) -> dict[str, Any]:
        """Both models' costs, the correlation and the items the control saved (--control)."""
        info = dict(self.plan.control_runs.get(suite) or {})
        stats = target.control_summary() or {}
        iv = target.interval()
        without = planned_items("betting", iv.estimate, target.half_width, target.population)
        # A saving only once the target was met: a run stopped before (budget, a small suite, an
        # interrupt) saved nothing yet, whatever the forecast without the control says.
        saved = max(0, without - iv.n) if without is not None and target.done else None
        rho = stats.get("correlation")
        control_nano = int(info.get("spent_nano") or 0)
        paid = "reused, paid before" if info.get("reused") else "run first"
        history = info.get("history")
        source = (
            f"control: item difficulty from history (Rasch fit on {len(history['models'])} models' "
            f"{len(history['runs'])} earlier runs, {history['items_covered']:,} items covered)"
            if history
            else f"control {self.plan.control} (run {info.get('run_id')}, {paid}): "
            f"{format_usd(control_nano)} on every item"
        )
        line = (
            f"{source}; correlation {'n/a' if rho is None else f'{rho:.2f}'}; expensive model "
            f"{format_usd(spent_nano)} on {iv.n:,} items, "
            + (
                f"~{saved:,} fewer than without the control"
                if saved is not None
                else "target not met yet"
                + (f" (without the control it needs ~{without:,})" if without is not None else "")
            )
        )
        return {
            "model": self.plan.control,
            "run_id": info.get("run_id"),
            "reused": bool(info.get("reused")),
            "control_spent_usd": usd_str(control_nano),
            "expensive_spent_usd": usd_str(spent_nano),
            "correlation": rho,
            "beta": stats.get("beta"),
            "items_without_control": without,
            "items_saved": saved,
            "history": history,
            "line": line,
        }

    def _all_failed(self) -> bool:
        return all(p.done > 0 and p.scored == 0 and p.errors > 0 for p in self.state.per_model.values())

    def _start_model(self, tg: TaskGroup, name: str, mp: ModelPlan) -> None:
        if name in self._batched:
            return  # the batch path buys this model's units (harness.run.batch)
        units = [u for u in mp.units if unit_key(u) not in self._done]
        send, receive = anyio.create_memory_object_stream[Unit](max_buffer_size=0)
        crew = _Crew(self, tg, mp, receive, most=min(self.plan.options.concurrency, max(1, len(units))))
        crew.spawn(None)  # announced before anything runs, so the model never looks stuck early
        if self.plan.options.use_cache:
            tg.start_soon(self._look_ahead, mp, units)
        if self._claims is not None:
            # Units come from the run's claims, a few at a time (other workers buy the others).
            tg.start_soon(self._feed, mp, send, crew)
        else:
            tg.start_soon(self._hand_out, mp, units, send, crew)

    async def _hand_out(
        self, mp: ModelPlan, units: list[Unit], send: MemoryObjectSendStream[Unit], crew: _Crew
    ) -> None:
        """Give this model's units to its workers, in plan order (no other process buys them)."""
        with crew, send:
            for unit in units:
                if self.state.stop_of(mp.spec.name) is not None or not await crew.give(unit, send):
                    return

    async def _worker(
        self, mp: ModelPlan, receive: anyio.abc.ObjectReceiveStream[Unit], first: Unit | None
    ) -> None:
        async with self._worker_life(mp.spec.name), receive:
            if first is not None and not await self._take(mp, first):
                return
            async for unit in receive:
                if not await self._take(mp, unit):
                    return

    async def _take(self, mp: ModelPlan, unit: Unit) -> bool:
        """Buy ``unit`` (or skip it); False when the model has stopped and its workers should end."""
        if self.state.stop_of(mp.spec.name) is not None:
            return False
        if (unit.model, unit.suite) in self.state.target_reached:
            return True  # recorded as not run (target reached) at the end
        claims = self._claims
        if claims is not None and not await claims.still_mine(unit_key(unit)):
            return True  # another worker took it after this one's lease expired
        try:
            await self._process(mp, unit)
        except UnitLost:
            return True  # its lease ran out while it waited to send: the unit is another's now
        if claims is not None:
            claims.finished(unit_key(unit))
        return True

    async def lease_holds(self, unit: Unit) -> None:
        """Called with an attempt reserved, just before it is sent: the unit is still this worker's.

        The reservation can wait (for the ledger's batch, a share, a provider slot) and the process
        can be paused anywhere; a request sent after its lease ran out could buy a unit another worker
        has bought meanwhile.

        Raises:
            UnitLost: the lease ran out and was not renewed, or another worker took the unit (the
                attempt settles at 0: it was never sent).
        """
        claims = self._claims
        if claims is not None and not await claims.still_mine(unit_key(unit)):
            raise UnitLost(f"{unit.model} {unit.item.id}#{unit.repeat}: lease lost before it was sent")

    @asynccontextmanager
    async def _worker_life(self, model: str) -> AsyncIterator[None]:
        if self._shares is None:
            yield
            return
        async with self._shares.worker(model):
            yield

    async def _process(self, mp: ModelPlan, unit: Unit) -> None:
        if self.stepped(unit.suite):  # a chain of calls (harness.run.steps)
            await run_steps(self, mp, unit)
            return
        opts = self.plan.options
        prompt = self.prompt_for(unit)
        spec = mp.spec
        await self._looked_up_before_buying(mp, unit)
        built = self._requests.pop(unit_key(unit), None)
        request, canonical, rkey = built if built is not None else self.request_for(mp, unit)
        prior = self._prior.get(unit_key(unit))
        if prior is not None and prior.answer is not None:
            # Bought by this run before a crash, never recorded: re-score it, never buy it again.
            await self._answer_from_store(mp, unit, prompt, prior.answer, [prior.answer.call_id])
            return
        hit = self._cache.get(rkey)
        if hit is not None:
            await self._answer_from_cache(mp, unit, prompt, hit, canonical, rkey)
            return
        adapter = self._adapters[spec.name]
        input_bound = adapter.input_tokens_upper_bound(request)
        reserve_nano = usd_to_nano(mp.price.worst_case(input_bound, mp.max_output_tokens))

        def bound_charge(output_bound: int) -> int:
            # What a usage-unknown attempt can be billed at most for what was seen: the reservation,
            # or more when the server sent more than the limit (it ignored it).
            return usd_to_nano(mp.price.worst_case(input_bound, max(mp.max_output_tokens, output_bound)))

        limiter = self._limiters[spec.provider]
        progress = self.state.per_model[spec.name]
        costs: list[int] = []
        last_call: list[str] = []
        completion: Completion | None = None
        try:
            async for attempt in retrying(opts.retry):
                with attempt:
                    completion = await self._attempt(
                        mp,
                        unit,
                        request,
                        adapter,
                        limiter,
                        reserve_nano,
                        attempt.retry_state.attempt_number + (prior.attempts if prior else 0),
                        costs,
                        last_call,
                        canonical,
                        rkey,
                        bound_charge,
                    )
        except BudgetExhausted as stop:
            if isinstance(stop, ShareExhausted):
                self._stop_model(spec.name, StopReason.SHARE, str(stop))
            # The model's own stop (a share, or the model refused while this unit waited) or the run's.
            why = self.state.stop_of(spec.name)
            reason = why.reason.value if why is not None else StopReason.BUDGET.value
            if costs:  # earlier attempts of this item were paid for: record the item with their spend
                await self._finish_item(unit, prompt, "not_run", None, None, "", reason, costs, last_call)
            return  # otherwise recorded as not run at the end
        except ProviderError as exc:
            progress.errors += 1
            progress.done += 1
            if isinstance(exc, AuthError) or (isinstance(exc, BadRequest) and exc.status_code == 404):
                detail = f"{exc.error_type or type(exc).__name__}: {one_line(exc.message)}"
                self._stop_model(spec.name, StopReason.UNAVAILABLE, detail)
            await self._finish_item(
                unit, prompt, "error", None, None, "", exc.error_type or type(exc).__name__, costs, last_call
            )
            return
        assert completion is not None
        await self._score_and_finish(
            mp, unit, prompt, completion.text, completion.finish_reason, costs, last_call
        )

    async def _attempt(
        self,
        mp: ModelPlan,
        unit: Unit,
        request: Request,
        adapter: Adapter,
        limiter: AdaptiveLimiter,
        reserve_nano: int,
        attempt_number: int,
        costs: list[int],
        last_call: list[str],
        canonical: Mapping[str, Any] | None = None,
        rkey: str | None = None,
        bound_charge: Callable[[int], int] | None = None,
        role: str = "target",
    ) -> Completion:
        """One attempt: share (if split), provider slot, durable reservation, the call, one settlement.

        Raises:
            BudgetExhausted: the run or (``ShareExhausted``) this model stopped at its budget.
            ProviderError: the attempt failed (the retry layer decides whether to try again).
        """
        spec = mp.spec
        gate = self._gate
        assert gate is not None
        async with self._share_hold(spec.name, reserve_nano) as hold, limiter.slot():
            start = self._call_start(mp, unit, attempt_number, reserve_nano, canonical, rkey, role)
            # The call id travels as x-client-request-id (OpenAI documents it; others ignore it), so
            # `reconcile` can match a crashed call to the provider's bill.
            request = replace(
                request, extra_headers={**request.extra_headers, "x-client-request-id": start.call_id}
            )

            def settled(cost_nano: int) -> None:
                costs.append(cost_nano)
                if self.state.projection is not None:
                    self.state.projection.call_settled(cost_nano)

            try:
                async with Reservation(
                    gate, start, hold=hold, on_settled=settled, bound_charge=bound_charge
                ) as attempt:
                    await self.lease_holds(unit)
                    last_call[:] = [start.call_id]
                    self.state.calls += 1
                    self.state.per_model[spec.name].calls += 1
                    try:
                        with anyio.fail_after(self.plan.options.attempt_timeout_s):
                            completion = await adapter.complete(request)
                    except TimeoutError:
                        raise CallTimeout(
                            f"attempt exceeded {self.plan.options.attempt_timeout_s:g}s",
                            provider=spec.provider,
                            retry=RetryDecision.transient(),
                            error_type="attempt_timeout",
                            generation_started=True,
                        ) from None
                    reported = provider_cost_nano(completion.provider_cost_usd)
                    if completion.usage_known:
                        price = mp.price.cost(completion.usage, service_tier=completion.service_tier)
                        attempt.answered(completion, usd_to_nano(price), provider_cost_nano=reported)
                    else:
                        # Usage unknown: its worst case for what was seen (docs/design.md invariant 11).
                        charge = reserve_nano
                        if bound_charge is not None:
                            charge = max(charge, bound_charge(completion.output_bound))
                        attempt.answered(completion, charge, provider_cost_nano=reported)
                        if completion.streamed and adapter.no_stream_usage:
                            await self._remember(mp, "no_stream_usage")
            except ProviderError as exc:
                if exc.error_type == "no_finish_reason" and getattr(adapter, "cuts_streams", False):
                    await self._remember(mp, "cuts_streams")
                self.state.per_model[spec.name].failed_calls += 1
                self.state.errors[
                    (spec.name, exc.error_type or type(exc).__name__, one_line(exc.message)[:200])
                ] += 1
                if isinstance(exc, RateLimited):
                    limiter.on_rate_limited(exc.retry.retry_after_s)
                raise
            limiter.on_success(completion.rate_limits)
            return completion

    async def _remember(self, mp: ModelPlan, fact: str) -> None:
        """Remember (once per model and fact per run) that this endpoint streams without usage
        (``no_stream_usage``) or cuts streams short (``cuts_streams``), so that later runs make its
        calls without streaming from the start."""
        if (mp.spec.name, fact) in self._learned:
            return
        self._learned.add((mp.spec.name, fact))
        endpoint, model = self.endpoint(mp.spec), mp.spec.model
        log.info("%s: %s %s; its next calls are not streamed", mp.spec.name, endpoint, fact)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.store.set_endpoint_fact, endpoint, model, fact, "true")

    @asynccontextmanager
    async def _share_hold(self, model: str, amount_nano: int) -> AsyncIterator[ShareHold | None]:
        if self._shares is None:
            yield None
            return
        async with self._shares.hold(model, amount_nano) as hold:
            yield hold

    async def _score(self, unit: Unit, prompt: Prompt, text: str, finish_reason: str) -> Score:
        return await score_answer(self.plan.suites[unit.suite], prompt, text, finish_reason)

    async def _finish_item(
        self,
        unit: Unit,
        prompt: Prompt,
        status: str,
        correct: bool | None,
        extracted: str | None,
        text: str,
        reason: str | None,
        costs: list[int],
        last_call: list[str],
    ) -> None:
        ledger = self.state.ledger
        assert ledger is not None
        self._done.add(unit_key(unit))
        self._unit_costs.setdefault((unit.model, unit.suite), []).append(sum(costs))
        if self.state.projection is not None:
            self.state.projection.unit_done(sum(costs))
        target = self._targets.get((unit.model, unit.suite))
        if target is not None and (unit.model, unit.suite) not in self.state.target_reached:
            target.add(unit.item.id, bool(correct) if status == "scored" else None)
            if target.done:
                self.state.target_reached.add((unit.model, unit.suite))
                if self.state.projection is not None:
                    left = sum(
                        1
                        for u in self.plan.models[unit.model].units
                        if u.suite == unit.suite and unit_key(u) not in self._done
                    )
                    self.state.projection.units_skipped(left)
        await ledger.record_item(
            self._item_result(unit, prompt, status, correct, extracted, text, reason, costs, last_call)
        )

    def _item_result(
        self,
        unit: Unit,
        prompt: Prompt,
        status: str,
        correct: bool | None,
        extracted: str | None,
        text: str,
        reason: str | None,
        costs: list[int],
        last_call: list[str],
    ) -> ItemResult:
        prior = self._prior.get(unit_key(unit))
        return ItemResult(
            run_id=self.run_id,
            model=unit.model,
            suite=unit.suite,
            item_id=unit.item.id,
            repeat=unit.repeat,
            status=status,
            correct=correct,
            extracted=extracted,
            answer_text=text,
            target=prompt.target,
            reason=reason,
            meta=dict(prompt.meta),
            cost_nano=sum(costs) + (prior.cost_nano if prior else 0),
            attempts=len(costs) + (prior.attempts if prior else 0),
            final_call_id=last_call[0] if last_call else None,
        )

    def _call_start(
        self,
        mp: ModelPlan,
        unit: Unit,
        attempt: int,
        reserve_nano: int,
        canonical: Mapping[str, Any] | None,
        rkey: str | None,
        role: str = "target",
    ) -> CallStart:
        """A new call row for one attempt at ``unit`` (a fresh call id, started now)."""
        spec = mp.spec
        return CallStart(
            call_id=uuid.uuid4().hex,
            run_id=self.run_id,
            model=spec.name,
            provider=spec.provider,
            api=spec.api,
            provider_model=spec.model,
            suite=unit.suite,
            item_id=unit.item.id,
            repeat=unit.repeat,
            attempt=attempt,
            role=role,
            reserved_nano=reserve_nano,
            price_id=mp.price.id,
            started_at=datetime.now(UTC),
            request_hash=rkey,
            request=canonical,
            sent_to=self._sent_to,
        )

    async def _answer_from_cache(
        self,
        mp: ModelPlan,
        unit: Unit,
        prompt: Prompt,
        hit: CachedAnswer,
        canonical: Mapping[str, Any],
        rkey: str,
    ) -> None:
        """Answer a unit from the response cache: a ``cached`` call row at cost 0, then score."""
        ledger = self.state.ledger
        assert ledger is not None
        start = replace(self._call_start(mp, unit, 0, 0, canonical, rkey), sent_to=None)
        call_id = start.call_id
        await ledger.record_cached(
            CachedCall(
                start=start,
                source_call_id=hit.call_id,
                reproduce_nano=hit.cost_nano,
                response=response_record(hit.text, hit.finish_reason),
                finish_reason=hit.raw_finish_reason,
            )
        )
        await self._answer_from_store(mp, unit, prompt, hit, [call_id])

    async def _answer_from_store(
        self, mp: ModelPlan, unit: Unit, prompt: Prompt, answer: CachedAnswer, last_call: list[str]
    ) -> None:
        """Score a stored answer and record the item (nothing is sent or charged)."""
        await self._score_and_finish(mp, unit, prompt, answer.text, answer.finish_reason, [], last_call)

    async def _score_and_finish(
        self,
        mp: ModelPlan,
        unit: Unit,
        prompt: Prompt,
        text: str,
        finish_reason: str,
        costs: list[int],
        last_call: list[str],
    ) -> None:
        """Score an answer (bought now, cached or stored), count it, and record the item result."""
        if self._judged(unit.suite) and text.strip() and finish_reason != "refusal":
            judged = await judge_answer(self, mp, unit, prompt, text, costs)
            if judged is None:
                return  # the budget stopped the run before the judge: recorded not_run, kept for resume
            score = judged
        else:
            score = await self._score(unit, prompt, text, finish_reason)
        await self.finish_scored(mp, unit, prompt, score, text, costs, last_call)

    async def finish_scored(
        self,
        mp: ModelPlan,
        unit: Unit,
        prompt: Prompt,
        score: Score,
        text: str,
        costs: list[int],
        last_call: list[str],
    ) -> None:
        """Count a scored unit and record its item result (``harness.run.steps`` too)."""
        progress = self.state.per_model[mp.spec.name]
        if score.meta:
            prompt = replace(prompt, meta={**prompt.meta, **score.meta})
        progress.done += 1
        if score.status == "scored":
            progress.scored += 1
            progress.correct += int(bool(score.correct))
        await self._finish_item(
            unit, prompt, score.status, score.correct, score.extracted, text, score.reason, costs, last_call
        )

    # -- what harness.run.judge uses of the runner ------------------------------------------------

    def _judged(self, suite: str) -> bool:
        got = self._judged_suites.get(suite)
        if got is None:
            got = self._judged_suites[suite] = self.plan.judge is not None and isinstance(
                self.plan.suites[suite], JudgedSuite
            )
        return got

    def stepped(self, suite: str) -> bool:
        """Is ``suite``'s unit a chain of calls (:class:`~harness.suite.SteppedSuite`)?"""
        got = self._stepped.get(suite)
        if got is None:  # a runtime-checkable protocol's isinstance is slow: once per suite
            got = self._stepped[suite] = isinstance(self.plan.suites[suite], SteppedSuite)
        return got

    # -- what harness.run.steps uses of the runner ------------------------------------------------

    def adapter_for(self, model: str) -> Adapter:
        return self._adapters[model]

    async def step_attempt(
        self,
        mp: ModelPlan,
        unit: Unit,
        request: Request,
        reserve_nano: int,
        attempt_number: int,
        costs: list[int],
        last_call: list[str],
        canonical: Mapping[str, Any],
        rkey: str,
        bound_charge: Callable[[int], int],
    ) -> Completion:
        """One attempt at a step of a stepped unit: the model's own attempt path, role ``step``."""
        spec = mp.spec
        return await self._attempt(
            mp, unit, request, self._adapters[spec.name], self._limiters[spec.provider], reserve_nano,
            attempt_number, costs, last_call, canonical, rkey, bound_charge, role=STEP_ROLE,
        )  # fmt: skip

    async def record_unit(
        self, unit: Unit, prompt: Prompt, status: str, reason: str, costs: list[int], last_call: list[str]
    ) -> None:
        """A unit ended without a score (``not_run`` at a stop, ``error``)."""
        await self._finish_item(unit, prompt, status, None, None, "", reason, costs, last_call)

    @property
    def gate(self) -> BudgetGate | None:
        return self._gate

    @property
    def sent_to(self) -> str | None:
        return self._sent_to

    def judge_adapter(self) -> Adapter:
        return self._adapters[_JUDGE_KEY]

    def limiter_for(self, provider: str) -> AdaptiveLimiter:
        return self._limiters[provider]

    def share_hold(self, model: str, amount_nano: int) -> Any:
        return self._share_hold(model, amount_nano)

    def stop_model_at_share(self, model: str, detail: str) -> None:
        self._stop_model(model, StopReason.SHARE, detail)

    def stop_model_unavailable(self, model: str, detail: str) -> None:
        self._stop_model(model, StopReason.UNAVAILABLE, detail)

    async def record_unjudged(
        self, unit: Unit, prompt: Prompt, text: str, reason: str, costs: list[int]
    ) -> None:
        """An answer bought but not judged before a stop: ``not_run``, its answer kept for resume."""
        await self._finish_item(unit, prompt, "not_run", None, None, text, reason, costs, [])

    async def _record_not_run(self, ledger: Ledger) -> None:
        for name, mp in self.plan.models.items():
            stop = self.state.stop_of(name)
            model_reason = (
                "not_run"
                if stop is None
                else stop.detail
                if stop.reason is StopReason.UNAVAILABLE
                else stop.reason.value
            )
            for unit in mp.units:
                if unit_key(unit) in self._done:
                    continue
                reached = (unit.model, unit.suite) in self.state.target_reached
                reason = "target_ci_reached" if reached else model_reason
                prompt = self.prompt_for(unit)
                why = one_line(reason)[:200]
                result = self._item_result(unit, prompt, "not_run", None, None, "", why, [], [])
                await ledger.record_item(result)

    async def _feed(self, mp: ModelPlan, send: MemoryObjectSendStream[Unit], crew: _Crew) -> None:
        """Claim this model's units from the run (a batch at a time, in plan order) and hand them to
        the workers; when none is left to claim, wait while other workers hold some (they may give
        them back, or die), then stop."""
        claims = self._claims
        assert claims is not None
        name = mp.spec.name
        by_key = {unit_key(u): u for u in mp.units}
        most = max(1, self.plan.options.concurrency)
        batch = min(most, FIRST_CLAIM)  # the first requests leave before a claim of thousands of rows
        with crew, send:
            while self.state.stop_of(name) is None and claims.alive:
                got = await claims.claim(name, batch)
                batch = min(most, batch * 4)
                if not got:
                    if not await claims.others_hold(name):
                        return
                    await anyio.sleep(claims.poll_s)
                    continue
                taken = [key for key, was_held in got if was_held]
                if taken:  # another worker held them: what did it buy before it went?
                    fresh = await anyio.to_thread.run_sync(prior_units, self.store, self.run_id)
                    self._prior.update({k: fresh[k] for k in taken if k in fresh})
                for key, _ in got:
                    if self.state.stop_of(name) is not None:
                        return  # the claimed units left are recorded as not run at the end
                    unit = by_key.get(key)
                    prior = self._prior.get(key)
                    if unit is None or key in self._done or (prior is not None and prior.done):
                        claims.finished(key)
                        continue
                    if not await crew.give(unit, send):
                        return  # every worker of this model stopped

    def not_run_rows(self) -> dict[UnitKey, dict[str, Any]]:
        """For the worker that ends a run with several workers: the ``not_run`` item result of every
        unit (the units no worker finished get theirs; see :func:`harness.store.workers.leave`)."""
        from harness.budget.ledger import item_row

        now = datetime.now(UTC)
        red = self.store.redactor
        out: dict[UnitKey, dict[str, Any]] = {}
        for name, mp in self.plan.models.items():
            stop = self.state.stop_of(name)
            model_reason = (
                "not_run"
                if stop is None
                else stop.detail
                if stop.reason is StopReason.UNAVAILABLE
                else stop.reason.value
            )
            for unit in mp.units:
                reached = (unit.model, unit.suite) in self.state.target_reached
                why = one_line("target_ci_reached" if reached else model_reason)[:200]
                result = self._item_result(
                    unit, self.prompt_for(unit), "not_run", None, None, "", why, [], []
                )
                out[unit_key(unit)] = item_row(result, now, red.text, red.json)
        return out

    def _worker_ended(self) -> None:
        """Another worker ended this one (its heartbeat was too late): start nothing new."""
        if self.state.run_stop is None:
            self.state.run_stop = Stop(StopReason.TAKEN_OVER, "another worker ended this one")
        if self._shares is not None:
            self._shares.stop_all()

    async def _watch_signals(self, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.state.run_stop is None:
                    self.state.run_stop = Stop(StopReason.INTERRUPTED, "interrupted by a signal")
                # Cancel everything: in-flight attempts settle (shielded) at their reservation.
                tg.cancel_scope.cancel()
                return

    async def _heartbeat(self) -> None:
        """Keep ``runs.heartbeat_at`` fresh while calls are slow, so resume can tell a live run."""
        while True:
            await anyio.sleep(HEARTBEAT_S)
            try:
                owned = await anyio.to_thread.run_sync(self.store.touch_heartbeat, self.run_id)
            except StorageError as exc:  # the ledger reports database trouble where it matters
                log.warning("heartbeat: %s", exc)
                continue
            if not owned and self.state.run_stop is None:
                # Another session took the run over (--force, or after our heartbeat went stale):
                # start nothing new; what is in flight settles.
                log.warning("run %s was taken over by another session; stopping", self.run_id)
                self.state.run_stop = Stop(StopReason.TAKEN_OVER, "another session took the run over")
                if self._shares is not None:
                    self._shares.stop_all()

    async def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        while True:
            self.on_progress(self.state)
            await anyio.sleep(0.25)


def unit_key(unit: Unit) -> UnitKey:
    """(model, suite, item id, repeat): what identifies a unit across sessions of a run."""
    return (unit.model, unit.suite, unit.item.id, unit.repeat)


def _growing_chunks(units: Sequence[Unit]) -> Iterator[Sequence[Unit]]:
    """``units`` in chunks of :data:`FIRST_CLAIM`, then four times as many each time (at most 4,096):
    the first units go out after a small batch of work, the rest in few large ones."""
    size, start = FIRST_CLAIM, 0
    while start < len(units):
        yield units[start : start + size]
        start += size
        size = min(size * 4, 4096)


class _Crew:
    """One model's workers, started as units come for them rather than all at once.

    A unit goes to a worker waiting for one; when none waits, a new worker starts with it, up to
    ``most`` (``--concurrency``); past that, the unit waits for a worker to free up. At ``-c 10000``
    the first requests leave as soon as the first units are claimed instead of after ten thousand
    tasks have been created and reached their first wait, and a model with fewer units than the
    concurrency never starts more workers than it has units. Used as a context manager by the task
    that hands the units out: leaving it closes the crew's own receiving end, so that when every
    worker has stopped, a unit waiting for a worker fails at once (``BrokenResourceError``)
    instead of waiting for nobody.
    """

    def __init__(
        self,
        runner: Runner,
        tg: TaskGroup,
        mp: ModelPlan,
        receive: MemoryObjectReceiveStream[Unit],
        most: int,
    ) -> None:
        self._runner = runner
        self._tg = tg
        self._mp = mp
        self._receive = receive
        self.most = most
        self.spawned = 0

    def spawn(self, first: Unit | None) -> None:
        """Start one more worker (announced to the shares synchronously, before it runs)."""
        runner = self._runner
        if runner._shares is not None:
            runner._shares.add_workers(self._mp.spec.name, 1)
        self._tg.start_soon(runner._worker, self._mp, self._receive.clone(), first)
        self.spawned += 1
        if self.spawned >= self.most:
            self._receive.close()  # no more workers: the stream breaks when the last one ends

    async def give(self, unit: Unit, send: MemoryObjectSendStream[Unit]) -> bool:
        """Hand ``unit`` to a worker; False when every worker of the model has stopped."""
        try:
            send.send_nowait(unit)  # a worker waits for it: no turn of the event loop per unit
            return True
        except anyio.WouldBlock:
            pass
        except anyio.BrokenResourceError:
            return False
        if self.spawned < self.most:
            self.spawn(unit)
            if self.spawned % SPAWN_BATCH == 0:
                await anyio.lowlevel.checkpoint()  # the started workers run to their first wait
            return True
        try:
            await send.send(unit)
        except anyio.BrokenResourceError:
            return False
        return True

    def __enter__(self) -> _Crew:
        return self

    def __exit__(self, *exc: object) -> None:
        self._receive.close()
