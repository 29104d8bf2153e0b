"""``run --batch``: eligible units through the providers' batch APIs at the batch price (docs/batch.md).

The driver takes a run's eligible units (single-turn suites, a model whose adapter has a batch API:
:func:`adapters.batch.batch_client`) away from the live workers and, per model:

1. reserves the worst case of each request *at the batch price* in the run's ledger, through the
   run's :class:`~harness.budget.gate.BudgetGate` (the same ``calls`` rows and cap as the live path);
   what does not fit waits for spend to come back, or the run stops at its budget (never over-commits);
2. records the batch ``submitting`` with every request's deterministic ``custom_id`` (run, unit,
   attempt) and call id (:mod:`harness.store.batches`), then creates it at the provider with metadata
   naming the run and the batch, then records the provider's batch id (``submitted``);
3. polls with backoff until it ends (progress: done, failed, expiring), cancelling at the deadline
   (``--batch-deadline``);
4. settles every result line exactly once (usage, cost at the batch price, answer, score); errored,
   expired and cancelled requests cost nothing and go again (a new batch or live: ``--batch-retry``).

``resume`` re-attaches: a ``submitted`` batch is polled again, a ``submitting`` one is looked for
among the provider's recent batches (OpenAI: by its metadata; Anthropic, whose batches have no
metadata: created after the record, with as many requests, not known to this database), and released
(its reservations given back) only when not found. Requests are never submitted twice.

Ctrl-C cancels the provider's batches, waits a short while for them to end, and settles what the
provider answered (and so charges); a batch that did not end in time stays ``cancelling`` with its
requests reserved at their worst case, for ``resume`` to settle.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from adapters.batch import BatchClient, BatchResult, BatchStatus, batch_client
from harness.budget.ledger import CallEnd, CallStart
from harness.errors import UnitLost
from harness.pricing.money import usd_to_nano
from harness.run.attempt import one_line
from harness.run.cache import canonical_request, request_key, response_record
from harness.run.plan import ModelPlan, Unit
from harness.store.batches import (
    BatchRecord,
    BatchRequestRecord,
    known_provider_ids,
    open_batches,
    record_batch,
    set_batch_state,
)
from harness.suite import JudgedSuite, Score, batchable
from harness.types import Request, UnitKey

if TYPE_CHECKING:
    from harness.run.runner import Runner

__all__ = ["BatchDriver", "BatchProgress", "custom_id", "eligible_suite"]

log = logging.getLogger("tollbench.batch")

#: Requests per batch: OpenAI takes 50,000 per file, Anthropic 100,000; Gemini's inline requests
#: must stay under 20 MB.
MAX_REQUESTS = {"openai": 50_000, "anthropic": 100_000, "google": 5_000}

RETRY_MODES = ("live", "batch", "none")


def eligible_suite(suite: Any) -> bool:
    """Whether a suite's units can go through a batch API (:func:`harness.suite.batchable`)."""
    return batchable(suite)


def custom_id(run_id: str, key: UnitKey, attempt: int, role: str = "target") -> str:
    """The request's deterministic id in a batch: the same (run, unit, attempt, role) always gives
    the same id (``tb_`` and 40 hex digits; both APIs accept it)."""
    parts = [run_id, key[0], key[1], key[2], str(key[3]), str(attempt)]
    text = "\x00".join(parts if role == "target" else [*parts, role])
    return "tb_" + hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass
class BatchProgress:
    """What the batch path did so far (the progress display and the report read it)."""

    submitted: int = 0
    """Batches created at a provider (this session), or re-attached."""
    requests: int = 0
    done: int = 0
    failed: int = 0
    expiring: int = 0
    """Requests not answered yet in the last 10% of their batch's window, or expired."""
    in_flight: dict[str, BatchStatus] = field(default_factory=dict)
    ended_done: int = 0
    """Requests answered by batches that have ended (no longer in ``in_flight``)."""
    ended_failed: int = 0
    settled_nano: int = 0
    requeued_live: int = 0
    requeued_batch: int = 0
    reattached: int = 0


@dataclass
class _JudgeJob:
    """An answer of a judged suite waiting for its judge (a judge batch's request)."""

    mp: ModelPlan
    """The plan of the model whose answer is judged."""
    unit: Unit
    text: str
    costs: list[int]
    """The answer's cost bought in this session (an answer bought before is in the unit's prior)."""
    last_call: list[str]


@dataclass
class _Model:
    mp: Any
    """The model's :class:`ModelPlan`, or the judge's :class:`JudgePlan` (``role`` judge)."""
    client: BatchClient
    role: str = "target"
    jobs: dict[UnitKey, _JudgeJob] = field(default_factory=dict)
    """``role`` judge: the answer each queued unit's judge request judges."""
    queue: list[Unit] = field(default_factory=list)
    tries: dict[UnitKey, int] = field(default_factory=dict)
    by_key: dict[UnitKey, Unit] = field(default_factory=dict)
    open: list[BatchRecord] = field(default_factory=list)
    mine: list[UnitKey] = field(default_factory=list)
    """The model's units this worker claimed."""
    direct: list[Unit] = field(default_factory=list)
    """Units of the model that run live (not eligible, or answered from the cache or the database)."""
    in_flight: int = 0
    live: int = 0
    """Units sent live by the batch path (a fallback) and not finished yet."""


class BatchDriver:
    """The batch path of one session of a run (see the module docstring)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        opts = runner.plan.options
        self.retry_mode = opts.batch_retry
        self.finish_live = opts.batch_finish_live
        self.poll_s = opts.batch_poll_s
        self.poll_max_s = max(opts.batch_poll_s, opts.batch_poll_max_s)
        self.cancel_wait_s = opts.batch_cancel_wait_s
        self.max_requests = opts.batch_max_requests
        self.deadline = None if opts.batch_deadline_s is None else time.monotonic() + opts.batch_deadline_s
        self.progress = BatchProgress()
        self.models: set[str] = set()
        """Models the batch path owns (no live workers are started for them; the driver buys their
        other units live itself)."""
        self._models: dict[str, _Model] = {}
        self._judge: _Model | None = None
        """The judge's batches (a judged suite's judge pass), when the judge has a batch API."""
        self._targets_running = 0
        self._settled: set[str] = set()
        self._tg: TaskGroup | None = None
        self._live_slots = anyio.CapacityLimiter(max(1, opts.concurrency))

    # -- before the workers start ------------------------------------------------------------

    async def prepare(self) -> None:
        """Take the models that have a batch API: claim their units (every one: this worker buys
        them), re-attach the run's open batches, and queue the eligible units; the others of those
        models are bought live by the driver itself (:meth:`_live`)."""
        from harness.run.prior import prior_units

        r = self.runner
        opened = await anyio.to_thread.run_sync(open_batches, r.store, r.run_id)
        claims = r._claims
        taken_any = False
        for name, mp in r.plan.models.items():
            client = batch_client(r._adapters[name])
            if client is None:
                continue
            m = _Model(mp, client, by_key={_key(u): u for u in mp.units})
            if claims is not None:
                mine: list[UnitKey] = []
                while True:
                    got = await claims.claim(name, 1000)
                    if not got:
                        break
                    mine.extend(key for key, _ in got)
                    taken_any = taken_any or any(t for _, t in got)
            else:
                mine = [_key(u) for u in mp.units]
            m.mine = mine
            self._models[name] = m
            self.models.add(name)
            if r._shares is not None:  # the driver is the model's worker (it keeps its share)
                r._shares.add_workers(name, 1)
        if taken_any:  # another worker held some: what did it buy before it went?
            r._prior.update(await anyio.to_thread.run_sync(prior_units, r.store, r.run_id))
        jp = r.plan.judge
        judge_client = batch_client(r.judge_adapter()) if jp is not None and self._models else None
        if jp is not None and judge_client is not None:
            self._judge = _Model(jp, judge_client, role="judge")
            self._judge.open = [b for b in opened if b.role == "judge"]
        attached: set[UnitKey] = set()  # units with a request in an open batch (never bought again)
        for b in opened:
            for q in b.requests:
                if q.call_status in (None, "reserved"):
                    attached.add((q.model, q.suite, q.item_id, q.repeat))
        if self._judge is not None:
            for b in self._judge.open:
                for q in b.requests:
                    key = (q.model, q.suite, q.item_id, q.repeat)
                    job = self._job_from_prior(key)
                    if job is not None:
                        self._judge.jobs[key] = job
                        self._judge.by_key[key] = job.unit
        for name, m in self._models.items():
            mine_set = set(m.mine)
            m.open = [b for b in opened if b.model == name and b.role == "target"]
            for key in m.mine:
                unit = m.by_key.get(key)
                prior = r._prior.get(key)
                if unit is None or key in r._done or (prior is not None and prior.done):
                    self._finished(key)
                    continue
                if key in attached:
                    continue
                eligible = eligible_suite(r.plan.suites[unit.suite])
                bought = prior is not None and prior.answer is not None  # re-scored from the database
                cached = bool(r._cache) and r.request_for(m.mp, unit)[2] in r._cache
                if eligible and not bought and not cached:
                    m.queue.append(unit)
                else:
                    m.direct.append(unit)
            del mine_set
        r.state.batch = self.progress

    def _job_from_prior(self, key: UnitKey) -> _JudgeJob | None:
        """The judge job of a unit whose answer an earlier session bought (a judge batch it left)."""
        r = self.runner
        prior = r._prior.get(key)
        mp = r.plan.models.get(key[0])
        if prior is None or prior.answer is None or mp is None:
            return None
        unit = next((u for u in mp.units if _key(u) == key), None)
        if unit is None:
            return None
        return _JudgeJob(mp, unit, prior.answer.text, [], [prior.answer.call_id])

    def _finished(self, key: UnitKey) -> None:
        claims = self.runner._claims
        if claims is not None:
            claims.finished(key)

    # -- the driver --------------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._targets_running = len(self._models)
            for m in self._models.values():
                tg.start_soon(self._model_loop, m)
            if self._judge is not None:
                tg.start_soon(self._model_batches, self._judge)

    async def _model_loop(self, m: _Model) -> None:
        try:
            async with self.runner._worker_life(m.mp.spec.name):
                await self._model_batches(m)
        finally:
            self._targets_running -= 1

    async def _model_batches(self, m: _Model) -> None:
        tg = self._tg
        assert tg is not None
        for rec in m.open:
            m.in_flight += 1
            tg.start_soon(self._reattach, m, rec)
        for unit in m.direct:
            m.live += 1
            tg.start_soon(self._live, m, unit)
        m.direct = []
        gate = self.runner.gate
        assert gate is not None
        name = m.mp.spec.name
        judge = m.role == "judge"
        while True:
            stopped = self.runner.state.run_stop if judge else self.runner.state.stop_of(name)
            if stopped is not None:
                return
            if m.queue and self._past_deadline():
                units, m.queue = m.queue, []
                for unit in units:
                    self._after_batch(m, unit, live=self.finish_live)
                continue
            if m.queue:
                chunk = await self._reserve_chunk(m)
                if chunk:
                    m.in_flight += 1
                    tg.start_soon(self._submit, m, chunk)
                    continue
                if gate.in_flight == 0:
                    # The last settle may have landed while that reservation was being tried: with
                    # nothing in flight nothing can change any more, so one more try is the answer.
                    chunk = await self._reserve_chunk(m)
                    if chunk:
                        m.in_flight += 1
                        tg.start_soon(self._submit, m, chunk)
                        continue
                    if gate.in_flight == 0:
                        gate.stop(self._reserve_nano(m, m.queue[0]))
                        return
            elif m.in_flight == 0 and m.live == 0 and not (judge and self._targets_running):
                return
            with anyio.move_on_after(1.0):  # a settle (anywhere in the run) wakes it; a second at most
                await gate.changed()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- reserving ----------------------------------------------------------------------------

    def _request(self, m: _Model, unit: Unit) -> tuple[Request, dict[str, Any], str, int, int]:
        """The request for ``unit`` in ``m``'s batches: (request, canonical form, cache key, prompt
        upper bound, output limit); for the judge, the judge's request for the unit's answer."""
        r = self.runner
        if m.role == "judge":
            from harness.run.judge import judge_request

            job = m.jobs[_key(unit)]
            suite = r.plan.suites[unit.suite]
            assert isinstance(suite, JudgedSuite)
            request, schema_bytes = judge_request(m.mp, suite, r.prompt_for(unit), job.text)
            canonical = canonical_request(
                m.mp.spec,
                request,
                repeat=unit.repeat,
                run_seed=r.plan.options.seed,
                endpoint=r.endpoint(m.mp.spec),
            )
            bound = r.judge_adapter().input_tokens_upper_bound(request) + schema_bytes
            return request, canonical, request_key(canonical), bound, request.max_output_tokens
        request, canonical, rkey = r.request_for(m.mp, unit)
        bound = r._adapters[m.mp.spec.name].input_tokens_upper_bound(request)
        return request, canonical, rkey, bound, m.mp.max_output_tokens

    def _reserve_nano(self, m: _Model, unit: Unit) -> int:
        _, _, _, bound, max_out = self._request(m, unit)
        return usd_to_nano(m.mp.price.worst_case(bound, max_out, batch=True))

    def _start(self, m: _Model, unit: Unit) -> CallStart:
        r = self.runner
        key = _key(unit)
        prior = r._prior.get(key)
        attempt = (prior.attempts if prior else 0) + m.tries.get(key, 0) + 1
        cid = custom_id(r.run_id, key, attempt, m.role)
        _, canonical, rkey, bound, max_out = self._request(m, unit)
        spec = m.mp.spec
        return CallStart(
            call_id=cid[3:35],
            run_id=r.run_id,
            model=unit.model,
            provider=spec.provider,
            api=spec.api,
            provider_model=spec.model,
            suite=unit.suite,
            item_id=unit.item.id,
            repeat=unit.repeat,
            attempt=attempt,
            role=m.role,
            reserved_nano=usd_to_nano(m.mp.price.worst_case(bound, max_out, batch=True)),
            price_id=m.mp.price.id,
            started_at=datetime.now(UTC),
            request_hash=rkey,
            request=canonical,
            sent_to=f"batch:{spec.provider}",
        )

    async def _reserve_chunk(self, m: _Model) -> list[tuple[Unit, CallStart]]:
        """Reserve as many queued requests as fit (up to a batch's size), durably, in one group
        commit; the rest stay queued."""
        gate = self.runner.gate
        assert gate is not None
        limit = min(self.max_requests, MAX_REQUESTS.get(m.client.provider, 50_000))
        take = m.queue[:limit]
        starts = [self._start(m, u) for u in take]
        admitted: list[bool] = [False] * len(take)

        async def one(i: int) -> None:
            admitted[i] = await gate.try_reserve(starts[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(take)):
                tg.start_soon(one, i)
        chunk = [(u, s) for u, s, ok in zip(take, starts, admitted, strict=True) if ok]
        left = [u for u, ok in zip(take, admitted, strict=True) if not ok]
        m.queue = left + m.queue[limit:]
        for u, _ in chunk:
            m.tries[_key(u)] = m.tries.get(_key(u), 0) + 1
        return chunk

    # -- one batch ----------------------------------------------------------------------------

    async def _submit(self, m: _Model, chunk: list[tuple[Unit, CallStart]]) -> None:
        r = self.runner
        spec = m.mp.spec
        try:
            batch_id = uuid.uuid4().hex
            reqs = tuple(
                BatchRequestRecord(
                    custom_id(r.run_id, _key(u), s.attempt, m.role),
                    s.call_id,
                    u.model,
                    u.suite,
                    u.item.id,
                    u.repeat,
                    s.attempt,
                    "reserved",
                )
                for u, s in chunk
            )
            reserved = sum(s.reserved_nano for _, s in chunk)
            created = await anyio.to_thread.run_sync(
                lambda: record_batch(
                    r.store,
                    batch_id=batch_id,
                    run_id=r.run_id,
                    model=spec.name,
                    provider=m.client.provider,
                    endpoint=m.client.endpoint,
                    reserved_nano=reserved,
                    requests=reqs,
                    role=m.role,
                )
            )
            rec = BatchRecord(
                batch_id,
                r.run_id,
                spec.name,
                m.client.provider,
                m.client.endpoint,
                "submitting",
                None,
                created,
                reserved,
                reqs,
                role=m.role,
            )
            lines = [
                m.client.line(self._request(m, u)[0], q.custom_id)
                for (u, _), q in zip(chunk, reqs, strict=True)
            ]
            metadata = {"tollbench_run": r.run_id, "tollbench_batch": batch_id}
            provider_id: str | None
            try:
                provider_id = await m.client.submit(lines, metadata)
            except Exception as exc:  # the batch may exist all the same (the answer was lost)
                log.warning(
                    "%s: creating batch %s failed (%s); looking for it",
                    spec.name,
                    batch_id,
                    one_line(str(exc)),
                )
                provider_id = await self._find(m, rec)
                if provider_id is None:
                    await self._abandon(m, rec, f"create failed: {one_line(str(exc))[:200]}")
                    return
            await anyio.to_thread.run_sync(
                lambda: set_batch_state(r.store, batch_id, "submitted", provider_batch_id=provider_id)
            )
            self.progress.submitted += 1
            self.progress.requests += len(reqs)
            await self._follow(m, replace(rec, state="submitted", provider_batch_id=provider_id))
        finally:
            m.in_flight -= 1

    async def _reattach(self, m: _Model, rec: BatchRecord) -> None:
        """A batch an earlier session recorded: find it if need be, then follow it to its end."""
        r = self.runner
        try:
            self.progress.reattached += 1
            pending = [q for q in rec.requests if q.call_status in (None, "reserved")]
            gate = r.gate
            assert gate is not None
            gate.adopt(len(pending))  # their reservations are this session's to settle now
            for q in rec.requests:
                key = (q.model, q.suite, q.item_id, q.repeat)
                m.tries[key] = m.tries.get(key, 0) + 1
            if rec.provider_batch_id is None:
                found = await self._find(m, rec)
                if found is None:
                    await self._abandon(m, rec, "never created (not found at the provider)")
                    return
                await anyio.to_thread.run_sync(
                    lambda: set_batch_state(r.store, rec.id, "submitted", provider_batch_id=found)
                )
                rec = replace(rec, provider_batch_id=found, state="submitted")
            self.progress.requests += len(pending)
            await self._follow(m, rec)
        finally:
            m.in_flight -= 1

    async def _find(self, m: _Model, rec: BatchRecord) -> str | None:
        """The provider's id of a batch recorded ``submitting`` whose create answer was lost."""
        r = self.runner
        known = await anyio.to_thread.run_sync(known_provider_ids, r.store, m.client.provider)
        since = rec.created_at.timestamp() - 5.0
        for wait in (0.0, 1.0, 3.0):
            if wait:
                await anyio.sleep(wait)
            try:
                recent = await m.client.recent()
            except Exception as exc:
                log.warning("%s: listing batches failed: %s", m.mp.spec.name, one_line(str(exc)))
                continue
            for st in sorted(recent, key=lambda s: s.created_at or 0.0):
                if st.provider_id in known:
                    continue
                meta = st.metadata or {}
                if meta:
                    if meta.get("tollbench_run") == rec.run_id and meta.get("tollbench_batch") == rec.id:
                        return st.provider_id
                    continue
                if (
                    m.client.provider == "anthropic"
                    and (st.created_at or 0.0) >= since
                    and st.total == len(rec.requests)
                ):
                    return st.provider_id
        return None

    async def _abandon(self, m: _Model, rec: BatchRecord, why: str) -> None:
        """The batch was never created: release its reservations and queue its units again."""
        r = self.runner
        gate = r.gate
        assert gate is not None
        now = datetime.now(UTC)
        for q in rec.requests:
            if q.call_status not in (None, "reserved"):
                continue
            await gate.settle(_end(q.call_id, "error", 0, "batch_not_created", why, now))
            unit = m.by_key.get((q.model, q.suite, q.item_id, q.repeat))
            if unit is not None:
                self._after_batch(m, unit, live=self.retry_mode != "batch")
        await anyio.to_thread.run_sync(
            lambda: set_batch_state(r.store, rec.id, "abandoned", status="not_created")
        )

    async def _follow(self, m: _Model, rec: BatchRecord) -> None:
        """Poll a created batch to its end (cancel at the deadline or on Ctrl-C), then settle it."""
        pid = rec.provider_batch_id
        assert pid is not None
        delay = self.poll_s
        cancelled = rec.state == "cancelling"
        status: BatchStatus | None = None
        try:
            while True:
                try:
                    status = await m.client.status(pid)
                except Exception as exc:  # a failed poll is retried, later
                    log.warning("%s: polling batch %s: %s", m.mp.spec.name, pid, one_line(str(exc)))
                    status = None
                if status is not None:
                    self.progress.in_flight[pid] = status
                    self._count()
                    if status.ended:
                        break
                if not cancelled and self._past_deadline():
                    cancelled = await self._cancel(m, rec)
                await anyio.sleep(delay)
                delay = min(delay * 1.5, self.poll_max_s)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._interrupted(m, rec)
            raise
        await self._harvest(m, rec, status, deadline_cancel=cancelled)

    async def _cancel(self, m: _Model, rec: BatchRecord) -> bool:
        pid = rec.provider_batch_id
        assert pid is not None
        try:
            await m.client.cancel(pid)
        except Exception as exc:
            log.warning("%s: cancelling batch %s: %s", m.mp.spec.name, pid, one_line(str(exc)))
            return False
        r = self.runner
        await anyio.to_thread.run_sync(lambda: set_batch_state(r.store, rec.id, "cancelling"))
        return True

    async def _interrupted(self, m: _Model, rec: BatchRecord) -> None:
        """Ctrl-C: cancel the provider batch, wait a little for it to end, settle what it answered."""
        if not await self._cancel(m, rec):
            return
        pid = rec.provider_batch_id
        assert pid is not None
        with anyio.move_on_after(self.cancel_wait_s):
            while True:
                try:
                    status = await m.client.status(pid)
                except Exception:
                    status = None
                if status is not None and status.ended:
                    await self._harvest(m, rec, status, deadline_cancel=False, requeue=False)
                    return
                await anyio.sleep(min(1.0, self.poll_s))
        log.warning(
            "%s: batch %s still cancelling; its requests stay reserved for `tollbench resume`",
            m.mp.spec.name,
            pid,
        )

    async def _harvest(
        self,
        m: _Model,
        rec: BatchRecord,
        status: BatchStatus | None,
        *,
        deadline_cancel: bool,
        requeue: bool = True,
    ) -> None:
        """Settle every request of an ended batch exactly once, score the answers, queue the rest."""
        r = self.runner
        pid = rec.provider_batch_id
        assert pid is not None
        results: list[BatchResult] | None = None
        for wait in (0.0, 1.0, 3.0):
            if wait:
                await anyio.sleep(wait)
            try:
                results = await m.client.results(pid)
                break
            except Exception as exc:
                log.warning("%s: reading results of %s: %s", m.mp.spec.name, pid, one_line(str(exc)))
        if results is None:
            return  # stays submitted: its reservations count until resume reads the results
        by_cid = {x.custom_id: x for x in results}
        gate = r.gate
        assert gate is not None
        spec = m.mp.spec
        judge = m.role == "judge"
        now = datetime.now(UTC)
        for q in rec.requests:
            if q.call_status not in (None, "reserved") or q.call_id in self._settled:
                continue
            self._settled.add(q.call_id)
            key = (q.model, q.suite, q.item_id, q.repeat)
            unit = m.by_key.get(key)
            got = by_cid.get(q.custom_id)
            reserved = self._reserve_nano(m, unit) if unit is not None else 0
            progress = r.state.per_model[q.model]
            r.state.calls += 1
            if not judge:
                progress.calls += 1
            if got is None or got.kind != "succeeded" or got.completion is None:
                kind = got.kind if got is not None else "missing"
                # Expired, cancelled and errored requests are not billed; a missing line is unknown.
                cost = reserved if got is None else 0
                message = (got.error_message if got is not None else "") or f"batch request {kind}"
                end = _end(
                    q.call_id, "error", cost, f"batch_{kind}", message, now, got.http_status if got else None
                )
                await gate.settle(end)
                self._settled_cost(cost)
                if kind == "errored":
                    if not judge:
                        progress.failed_calls += 1
                    who = f"judge {spec.name}" if judge else spec.name
                    r.state.errors[(who, end.error_type or "batch_errored", one_line(message)[:200])] += 1
                if unit is None or not requeue:
                    continue
                if kind in ("expired", "canceled") and deadline_cancel:
                    self._after_batch(m, unit, live=self.finish_live, give_up=not self.finish_live)
                else:
                    self._after_batch(
                        m, unit, live=self.retry_mode == "live", give_up=self.retry_mode == "none"
                    )
                continue
            c = got.completion
            if c.usage_known:
                cost = usd_to_nano(m.mp.price.cost(c.usage, service_tier=c.service_tier, batch=True))
            else:
                cost = reserved
            await gate.settle(
                CallEnd(
                    call_id=q.call_id,
                    status="ok",
                    cost_nano=cost,
                    usage=c.usage,
                    usage_known=c.usage_known,
                    raw_usage=c.raw_usage,
                    request_id=c.request_id,
                    finish_reason=c.raw_finish_reason or c.finish_reason,
                    error_type=None,
                    error_message=None,
                    http_status=200,
                    ttft_ms=None,
                    latency_ms=None,
                    retry_wait_ms=0,
                    finished_at=now,
                    response=response_record(c.text, c.finish_reason),
                    service_tier="batch",
                )
            )
            self._settled_cost(cost)
            if unit is None:
                continue
            if judge:
                job = m.jobs.pop(key)
                suite = r.plan.suites[unit.suite]
                assert isinstance(suite, JudgedSuite)
                await self._judged(job, suite.judged_score(r.prompt_for(unit), job.text, c.text), cost)
                continue
            if (
                self._judge is not None
                and r._judged(unit.suite)
                and c.text.strip()
                and c.finish_reason != "refusal"
            ):
                # the judge pass goes through the judge's batches too
                self._judge.jobs[key] = _JudgeJob(m.mp, unit, c.text, [cost], [q.call_id])
                self._judge.by_key[key] = unit
                self._judge.queue.append(unit)
                continue
            prompt = r.prompt_for(unit)
            await r._score_and_finish(m.mp, unit, prompt, c.text, c.finish_reason, [cost], [q.call_id])
            self._finished(key)
        ended = self.progress.in_flight.pop(pid, None)
        if ended is not None:  # its counts stay in the totals the display shows
            self.progress.ended_done += ended.done
            self.progress.ended_failed += ended.failed
            self._count()
        final = status.status if status is not None else None
        await anyio.to_thread.run_sync(lambda: set_batch_state(r.store, rec.id, "ended", status=final))

    def _settled_cost(self, cost: int) -> None:
        self.progress.settled_nano += cost
        projection = self.runner.state.projection
        if projection is not None:
            projection.call_settled(cost)

    async def _judged(self, job: _JudgeJob, score: Score, judge_cost: int | None) -> None:
        """Record a judged answer (what :meth:`Runner._score_and_finish` does after its judge)."""
        r = self.runner
        unit = job.unit
        costs = [*job.costs, *([judge_cost] if judge_cost is not None else [])]
        prompt = r.prompt_for(unit)
        if score.meta:
            prompt = replace(prompt, meta={**prompt.meta, **score.meta})
        progress = r.state.per_model[unit.model]
        progress.done += 1
        if score.status == "scored":
            progress.scored += 1
            progress.correct += int(bool(score.correct))
        await r._finish_item(
            unit,
            prompt,
            score.status,
            score.correct,
            score.extracted,
            job.text,
            score.reason,
            costs,
            job.last_call,
        )
        self._finished(_key(unit))

    async def _judge_live(self, m: _Model, job: _JudgeJob, give_up: bool) -> None:
        """A judge request the batch did not answer: judged live (the normal path), or unscored."""
        from harness.run.judge import judge_answer

        r = self.runner
        try:
            async with self._live_slots:
                suite = r.plan.suites[job.unit.suite]
                assert isinstance(suite, JudgedSuite)
                prompt = r.prompt_for(job.unit)
                if give_up:
                    await self._judged(job, suite.judged_score(prompt, job.text, None), None)
                    return
                costs = list(job.costs)
                score = await judge_answer(r, job.mp, job.unit, prompt, job.text, costs)
                if score is None:
                    return  # the budget stopped the run first: recorded not_run, kept for resume
                await self._judged(replace(job, costs=costs), score, None)
        finally:
            m.live -= 1

    def _after_batch(self, m: _Model, unit: Unit, *, live: bool, give_up: bool = False) -> None:
        """A unit the batch did not answer: again in a batch, live, or (out of tries) an error."""
        r = self.runner
        key = _key(unit)
        if m.role == "judge":
            job = m.jobs.pop(key, None)
            if job is None or self._tg is None:
                return
            m.live += 1
            out_of_tries = m.tries.get(key, 0) >= r.plan.options.retry.max_attempts
            self._tg.start_soon(self._judge_live, m, job, give_up or out_of_tries)
            return
        tries = m.tries.get(key, 0)
        if give_up or tries >= r.plan.options.retry.max_attempts:
            if self._tg is not None:
                self._tg.start_soon(self._give_up, m, unit)
            return
        if live:
            self.progress.requeued_live += 1
            assert self._tg is not None
            m.live += 1
            self._tg.start_soon(self._live, m, unit)
        else:
            self.progress.requeued_batch += 1
            m.queue.append(unit)

    async def _live(self, m: _Model, unit: Unit) -> None:
        """A unit the batch did not answer, bought live (the normal reservation path, its retries)."""
        r = self.runner
        key = _key(unit)
        try:
            async with self._live_slots:
                if r.state.stop_of(m.mp.spec.name) is not None:
                    return
                if r._claims is not None and not await r._claims.still_mine(key):
                    return
                try:
                    await r._process(m.mp, unit)
                except UnitLost:
                    return  # its lease ran out before the request was sent: another worker's now
                self._finished(key)
        finally:
            m.live -= 1

    async def _give_up(self, m: _Model, unit: Unit) -> None:
        r = self.runner
        progress = r.state.per_model[m.mp.spec.name]
        progress.errors += 1
        progress.done += 1
        await r._finish_item(unit, r.prompt_for(unit), "error", None, None, "", "batch_failed", [], [])
        self._finished(_key(unit))

    def _count(self) -> None:
        p = self.progress
        statuses = list(p.in_flight.values())
        p.done = p.ended_done + sum(s.done for s in statuses)
        p.failed = p.ended_failed + sum(s.failed for s in statuses)
        now = time.time()

        def expiring(s: BatchStatus) -> int:
            if s.expired:
                return s.expired
            if s.expires_at is None or s.created_at is None or s.ended:
                return 0
            near = now >= s.expires_at - 0.1 * (s.expires_at - s.created_at)  # the window's last 10%
            return max(0, s.total - s.done - s.failed) if near else 0

        p.expiring = sum(expiring(s) for s in statuses)


def _key(unit: Unit) -> UnitKey:
    return (unit.model, unit.suite, unit.item.id, unit.repeat)


def _end(
    call_id: str,
    status: Any,
    cost: int,
    error_type: str,
    message: str,
    now: datetime,
    http_status: int | None = None,
) -> CallEnd:
    return CallEnd(
        call_id=call_id,
        status=status,
        cost_nano=cost,
        usage=None,
        usage_known=False,
        raw_usage=None,
        request_id=None,
        finish_reason=None,
        error_type=error_type,
        error_message=one_line(message),
        http_status=http_status,
        ttft_ms=None,
        latency_ms=None,
        retry_wait_ms=0,
        finished_at=now,
        service_tier="batch",
    )


def batch_summary(paths: Mapping[str, Any]) -> str:
    """One line: how many calls and dollars went each way."""
    parts = []
    for path in ("batch", "live"):
        p = paths.get(path) or {}
        parts.append(f"{path}: {p.get('calls', 0)} calls ${p.get('usd', '0')}")
    return "; ".join(parts)
