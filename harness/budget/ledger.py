"""The budget ledger: the hard cap of docs/design.md invariants 1 and 2, kept by the database.

Every call is *reserved* at its worst-case cost before it is sent and *settled* at its real cost after.
The run row's ``committed_nano`` (settled spend + open reservations) only ever changes in the same
transaction that writes the call rows, and a reservation is admitted only if ``committed_nano +
reserved_nano <= budget_nano`` as read under the database's write lock (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``SELECT ... FOR UPDATE`` on the run row). So the cap holds across tasks *and* processes, and
after a crash an unsettled reservation still counts at its worst case.

One writer task owns the database: :meth:`Ledger.reserve`, :meth:`Ledger.settle` and
:meth:`Ledger.record_item` queue operations, and the writer applies everything queued in one
transaction per batch (group commit) in a worker thread. ``reserve()`` returns only after its batch is
committed; settles and item results are applied in the next batch, and :meth:`Ledger.flush` waits for
them. If the database fails, ``reserve()`` raises :class:`~harness.errors.StorageError`, and queued
settles stay queued and are retried; if they still cannot be written when the ledger closes, the close
raises (their reservations stay counted at the worst case in the database, which is safe).

Every wait ends (docs/design.md invariant 9): each ``reserve()``, ``flush()`` and ``add_budget()`` is
woken by the batch it is in, committed or failed, and each batch takes new operations however many
retried writes are pending (see :meth:`Ledger._take_batch`), so a full disk ends a run with its error
instead of hanging it.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import anyio
import sqlalchemy as sa
from anyio.abc import TaskGroup

from harness.budget import pools
from harness.errors import StorageError
from harness.store.engine import Store, _json_dumps, calls_table, item_results_table, runs_table
from harness.store.workers import DONE_STATUSES, unit_claims_table
from harness.types import Usage

__all__ = ["ITEM_STATUSES", "CachedCall", "CallEnd", "CallStart", "ItemResult", "Ledger", "item_row"]

log = logging.getLogger("tollbench.ledger")

ITEM_STATUSES = ("scored", "unusable", "not_run", "error")


@dataclass(frozen=True, slots=True)
class CallStart:
    """Everything known about a call before it is sent; becomes a ``reserved`` call row."""

    call_id: str
    run_id: str
    model: str
    provider: str
    api: str
    provider_model: str
    suite: str
    item_id: str
    repeat: int
    attempt: int
    role: str
    reserved_nano: int
    price_id: str
    started_at: datetime
    request_hash: str | None = None
    """The response-cache key of the request (:func:`harness.run.cache.request_key`)."""
    request: Mapping[str, Any] | None = None
    """The canonical request (stored redacted)."""
    sent_to: str | None = None
    """Where the request goes (``sim:<instance>`` for the simulator), for ``reconcile``."""


@dataclass(frozen=True, slots=True)
class CallEnd:
    """How a reserved call ended; ``cost_nano`` is what it is charged (the reservation if unknown)."""

    call_id: str
    status: Literal["ok", "error", "interrupted"]
    cost_nano: int
    usage: Usage | None
    usage_known: bool
    raw_usage: Mapping[str, Any] | None
    request_id: str | None
    finish_reason: str | None
    error_type: str | None
    error_message: str | None
    http_status: int | None
    ttft_ms: int | None
    latency_ms: int | None
    retry_wait_ms: int
    finished_at: datetime
    response: Mapping[str, Any] | None = None
    """``{"text", "finish_reason"}`` of an answered call (stored redacted), for resume and the cache."""
    service_tier: str | None = None
    """The service tier the provider reported (the call was priced at it)."""
    provider_cost_nano: int | None = None
    """What the provider itself reported the call cost (stored beside ``cost_nano``)."""
    output_bound: int | None = None
    """For a usage-unknown call: an upper bound of the output tokens received."""


@dataclass(frozen=True, slots=True)
class CachedCall:
    """A call answered from the response cache: nothing is sent and nothing is charged to this run."""

    start: CallStart
    """Describes the request (``reserved_nano`` must be 0)."""
    source_call_id: str
    reproduce_nano: int
    """What the reused answer cost when it was bought."""
    response: Mapping[str, Any]
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one item repeat for one model (upserted on run, model, suite, item, repeat)."""

    run_id: str
    model: str
    suite: str
    item_id: str
    repeat: int
    status: str
    """One of ``scored``, ``unusable``, ``not_run``, ``error``."""
    correct: bool | None
    extracted: str | None
    answer_text: str | None
    target: str | None
    reason: str | None
    meta: Mapping[str, Any]
    cost_nano: int
    attempts: int
    final_call_id: str | None


@dataclass(eq=False, slots=True)
class _Reserve:
    start: CallStart
    done: anyio.Event = field(default_factory=anyio.Event)
    admitted: bool = False
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class _Settle:
    end: CallEnd
    release: bool = False
    """Internal: undo a reservation whose caller was cancelled before it learned the answer."""


@dataclass(eq=False, slots=True)
class _Item:
    result: ItemResult


@dataclass(eq=False, slots=True)
class _Cached:
    call: CachedCall


@dataclass(eq=False, slots=True)
class _Waitable:
    kind: Literal["flush", "budget"]
    extra_nano: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


_Op = _Reserve | _Settle | _Item | _Cached | _Waitable


@dataclass(slots=True)
class _Outcome:
    budget: int
    committed: int
    spent: int
    admitted: set[int]
    problems: list[str]
    pool_books: tuple[int, int, int] | None = None


class Ledger:
    """The hard budget cap of one run, shared safely by many tasks and processes.

    Use as ``async with Ledger(store, run_id) as ledger:``; leaving the block writes everything
    queued (shielded from cancellation) and stops the writer task.

    Args:
        store: An open :class:`~harness.store.engine.Store`.
        run_id: The run whose budget this ledger enforces (it must exist).
        batch_window_s: How long the writer waits after the first queued operation to gather a batch.
        max_batch: The most operations in one transaction.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        batch_window_s: float = 0.002,
        max_batch: int = 512,
        claims: bool = False,
    ) -> None:
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_batch must be >= 1 and batch_window_s >= 0")
        self._store = store
        self.run_id = run_id
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self._queue: deque[_Op] = deque()
        self._pending: list[_Op] = []  # settles and items of a failed batch, retried first
        self._wakeup = anyio.Event()
        self._tg: TaskGroup | None = None
        self._closing = False
        self._closed = False
        self._crashed = False
        self._budget = self._committed = self._spent = 0
        self.problems: list[str] = []
        """Settles that could not apply (unknown call, already settled); logged as warnings."""
        self.batches = 0
        """Transactions committed so far (for measurements)."""
        self._last_error: StorageError | None = None
        self._claims = claims
        """The run's units are claimed (:mod:`harness.store.workers`): an item result that finishes a
        unit marks its claim ``done`` in the same transaction."""
        self.pool: str | None = None
        """The budget pool the run also draws from (:mod:`harness.budget.pools`), read on entry."""
        self.pool_books: tuple[int, int, int] | None = None
        """The pool's (budget, committed, spent) as of the last committed batch."""

    # -- lifecycle ------------------------------------------------------------------------------------

    async def __aenter__(self) -> Ledger:
        run = await anyio.to_thread.run_sync(self._read_books)
        if run is None:
            raise StorageError(
                f"{self._store.label}: no run {self.run_id!r}; list runs with `tollbench runs`"
            )
        self._budget, self._committed, self._spent = run
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._writer)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None, "Ledger used without entering it"
        self._closing = True
        self._wakeup.set()
        try:
            # The writer stops by itself once closing and drained; the body's exception is not passed
            # in, so it propagates as it is instead of wrapped in an ExceptionGroup.
            await self._tg.__aexit__(None, None, None)
        finally:
            self._closed = True
            if not self._crashed:
                with anyio.CancelScope(shield=True):
                    await self._final_drain()

    def _read_books(self) -> tuple[int, int, int] | None:
        """The run's budget, committed and spent (only the ledger's columns: any schema version)."""
        r = runs_table
        with self._store.begin_read("reading a run") as conn:
            row = conn.execute(
                sa.select(r.c.budget_nano, r.c.committed_nano, r.c.spent_nano).where(r.c.id == self.run_id)
            ).one_or_none()
            self.pool = pools.pool_of_run(conn, self.run_id) if row is not None else None
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def _simulate_crash(self) -> None:
        """Test hook: stop like a killed process, dropping everything not yet committed."""
        self._crashed = True
        for op in [*self._pending, *self._queue]:
            if isinstance(op, _Reserve | _Waitable):
                op.error = StorageError("ledger crashed")
                op.done.set()
        self._pending.clear()
        self._queue.clear()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- the API --------------------------------------------------------------------------------------

    @property
    def budget_nano(self) -> int:
        """The run's budget as of the last committed batch."""
        return self._budget

    @property
    def committed_nano(self) -> int:
        """Settled spend + open reservations as of the last committed batch (all processes)."""
        return self._committed

    @property
    def spent_nano(self) -> int:
        """Settled spend as of the last committed batch (all processes)."""
        return self._spent

    async def reserve(self, start: CallStart) -> bool:
        """Reserve a call's worst-case cost; True only once its ``reserved`` row is committed.

        Returns:
            True if the reservation fits the budget and is durable (the call may be sent); False if
            ``committed + reserved > budget`` (nothing was written; start no new call).

        Raises:
            StorageError: The database could not record the reservation (do not send the call).
        """
        if start.run_id != self.run_id:
            raise ValueError(f"call {start.call_id} belongs to run {start.run_id}, not {self.run_id}")
        if start.reserved_nano < 0:
            raise ValueError("reserved_nano must be >= 0")
        if start.started_at.tzinfo is None:
            raise ValueError("started_at must be an aware datetime")
        op = _Reserve(start)
        self._enqueue(op)
        try:
            await op.done.wait()
        except anyio.get_cancelled_exc_class():
            if not op.done.is_set() or op.admitted:
                # The caller will never send this call; give the reservation back (ignored if it was
                # never admitted). FIFO order puts the release after the reservation.
                self._enqueue(_Settle(_release_end(start.call_id), release=True), force=True)
            raise
        if op.error is not None:
            raise op.error
        return op.admitted

    async def settle(self, end: CallEnd) -> None:
        """Queue the real cost of a reserved call (applied in the next batch; see :meth:`flush`).

        Until it is committed the database keeps counting the full reservation. A cost above the
        reservation is recorded as it is (never clamped) and logged: it means the worst case was wrong.
        """
        if end.cost_nano < 0:
            raise ValueError("cost_nano must be >= 0")
        if end.finished_at.tzinfo is None:
            raise ValueError("finished_at must be an aware datetime")
        self._enqueue(_Settle(end))

    async def record_item(self, result: ItemResult) -> None:
        """Queue an item result (upserted on run, model, suite, item, repeat)."""
        if result.run_id != self.run_id:
            raise ValueError(f"item result belongs to run {result.run_id}, not {self.run_id}")
        if result.status not in ITEM_STATUSES:
            expected = ", ".join(ITEM_STATUSES)
            raise ValueError(f"unknown item status {result.status!r}; expected one of {expected}")
        _json_dumps(dict(result.meta))  # fail now, in the caller, if meta cannot be stored
        self._enqueue(_Item(result))

    async def record_cached(self, call: CachedCall) -> None:
        """Queue a ``cached`` call row (settled at cost 0; applied in the next batch, see :meth:`flush`)."""
        if call.start.run_id != self.run_id:
            raise ValueError(
                f"call {call.start.call_id} belongs to run {call.start.run_id}, not {self.run_id}"
            )
        if call.start.reserved_nano != 0 or call.reproduce_nano < 0:
            raise ValueError("a cached call reserves nothing and reproduce_nano must be >= 0")
        self._enqueue(_Cached(call))

    async def flush(self) -> None:
        """Wait until everything queued so far is committed.

        Raises:
            StorageError: The batch could not be written (queued settles are kept and retried).
        """
        await self._wait(_Waitable("flush"))

    async def add_budget(self, extra_nano: int) -> None:
        """Raise the run's budget by ``extra_nano`` (committed before this returns)."""
        if extra_nano < 0:
            raise ValueError("extra_nano must be >= 0")
        await self._wait(_Waitable("budget", extra_nano))

    async def _wait(self, op: _Waitable) -> None:
        self._enqueue(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error

    def _enqueue(self, op: _Op, *, force: bool = False) -> None:
        if (self._closed or self._crashed) and not force:
            raise RuntimeError("the ledger is closed")
        if self._tg is None:
            raise RuntimeError("use the ledger inside `async with`")
        self._queue.append(op)
        self._wakeup.set()

    # -- the writer -----------------------------------------------------------------------------------

    async def _writer(self) -> None:
        backoff = 0.0
        while True:
            while not self._queue and (not self._pending or self._closing):
                if self._closing:
                    return
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            if backoff:
                await anyio.sleep(backoff)
            elif self.batch_window_s and len(self._queue) < self.max_batch and not self._closing:
                await anyio.sleep(self.batch_window_s)
            with anyio.CancelScope(shield=True):
                ok = await self._run_batch()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.05), 1.0)

    def _take_batch(self) -> list[_Op]:
        """The retried writes of failed batches, then up to ``max_batch`` new operations.

        The new operations are never crowded out by the retried ones: with ``max_batch`` or more
        writes pending behind a failing database (a full disk), a flush, budget raise or reservation
        queued behind them still gets into a batch, and fails with that batch's error instead of
        waiting forever (docs/design.md invariant 9). A failed batch fails every waiter in it and keeps its
        writes pending, so each round moves the queue forward by up to ``max_batch`` operations.
        """
        batch, self._pending = self._pending, []
        taken = 0
        while self._queue and taken < self.max_batch:
            batch.append(self._queue.popleft())
            taken += 1
        return batch

    async def _run_batch(self) -> bool:
        batch = self._take_batch()
        if not batch:
            return True
        try:
            outcome = await anyio.to_thread.run_sync(self._apply, batch)
        except Exception as exc:
            error = exc if isinstance(exc, StorageError) else StorageError(f"{self._store.label}: {exc!r}")
            log.error("ledger batch of %d operations failed: %s", len(batch), error)
            self._last_error = error
            self._fail(batch, error)
            return False
        self._deliver(batch, outcome)
        return True

    def _fail(self, batch: list[_Op], error: StorageError) -> None:
        for op in batch:
            if isinstance(op, _Reserve | _Waitable):
                op.error = error
                op.done.set()
            else:
                self._pending.append(op)  # never dropped: retried in the next batch

    def _deliver(self, batch: list[_Op], outcome: _Outcome) -> None:
        self.batches += 1
        self._budget, self._committed, self._spent = outcome.budget, outcome.committed, outcome.spent
        self.pool_books = outcome.pool_books
        for problem in outcome.problems:
            log.warning("%s", problem)
        self.problems.extend(outcome.problems)
        for op in batch:
            if isinstance(op, _Reserve):
                op.admitted = id(op) in outcome.admitted
                op.done.set()
            elif isinstance(op, _Waitable):
                op.done.set()

    async def _final_drain(self) -> None:
        error: StorageError | None = None
        while self._pending or self._queue:
            if not await self._run_batch():
                label = self._store.label
                cause = str(self._last_error or "").removeprefix(f"{label}: ")
                error = StorageError(
                    f"{label}: {cause}; {len(self._pending)} call settlements or item results could not "
                    "be written: their reservations stay counted at the worst case (see `tollbench show`)"
                )
                break
        if error is not None:
            self._fail(list(self._queue), error)
            self._queue.clear()
            raise error

    # -- one transaction (runs in a worker thread) ----------------------------------------------------

    def _apply(self, batch: list[_Op]) -> _Outcome:
        r, c = runs_table, calls_table
        red = self._store.redactor
        now = datetime.now(UTC)
        problems: list[str] = []
        admitted: set[int] = set()
        with self._store.begin_write("recording calls") as conn:
            row = conn.execute(
                sa.select(r.c.budget_nano, r.c.committed_nano, r.c.spent_nano)
                .where(r.c.id == self.run_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise StorageError(f"{self._store.label}: run {self.run_id!r} is missing from the database")
            budget, committed, spent = int(row[0]), int(row[1]), int(row[2])
            # The pool's row is locked after the run's, in every transaction (no deadlock between runs);
            # its totals move by exactly what the run's move by.
            pool = self.pool
            p_budget, p_committed, p_spent = pools.lock_pool(conn, pool) if pool else (0, 0, 0)
            p_start = (p_committed, p_spent)
            known: dict[str, tuple[int, str, str]] = {}  # call id -> (reserved, status, run id)
            ids = list({op.end.call_id for op in batch if isinstance(op, _Settle)})
            for i in range(0, len(ids), 500):
                sel = sa.select(c.c.id, c.c.reserved_nano, c.c.status, c.c.run_id).where(
                    c.c.id.in_(ids[i : i + 500])
                )
                known.update({x.id: (int(x.reserved_nano), x.status, x.run_id) for x in conn.execute(sel)})
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            items: dict[tuple[str, str, str, int], dict[str, Any]] = {}
            for op in batch:
                if isinstance(op, _Reserve):
                    s = op.start
                    fits_pool = pool is None or p_committed + s.reserved_nano <= p_budget
                    if committed + s.reserved_nano <= budget and fits_pool:
                        committed += s.reserved_nano
                        p_committed += s.reserved_nano
                        admitted.add(id(op))
                        known[s.call_id] = (s.reserved_nano, "reserved", s.run_id)
                        inserts.append(_call_row(s, red.json))
                elif isinstance(op, _Settle):
                    e = op.end
                    info = known.get(e.call_id)
                    if info is None or info[2] != self.run_id or info[1] != "reserved":
                        if not op.release:
                            what = (
                                "unknown call"
                                if info is None or info[2] != self.run_id
                                else "already settled"
                            )
                            problems.append(f"settle ignored for {e.call_id}: {what}")
                        continue
                    reserved = info[0]
                    if e.cost_nano > reserved:
                        problems.append(
                            f"call {e.call_id} cost {e.cost_nano} > its reservation {reserved} nano-USD"
                        )
                    spent += e.cost_nano
                    committed += e.cost_nano - reserved
                    p_spent += e.cost_nano
                    p_committed += e.cost_nano - reserved
                    known[e.call_id] = (reserved, e.status, self.run_id)
                    updates.append(_settle_row(e, red.text, red.json))
                elif isinstance(op, _Cached):
                    inserts.append(_cached_row(op.call, red.text, red.json))
                elif isinstance(op, _Item):
                    res = op.result
                    items[(res.model, res.suite, res.item_id, res.repeat)] = item_row(
                        res, now, red.text, red.json
                    )
                elif op.kind == "budget":
                    budget += op.extra_nano
            # Rows are grouped by their columns: the optional ones (request, response, ...) are only
            # written when set, so a ledger without them works on any schema version.
            for group in _by_columns(inserts):
                conn.execute(sa.insert(c), group)
            for group in _by_columns(updates):
                conn.execute(_settle_stmt(tuple(k[2:] for k in group[0] if k != "b_id")), group)
            if items:
                conn.execute(self._upsert_items(), list(items.values()))
                done = [
                    {"b_model": k[0], "b_suite": k[1], "b_item_id": k[2], "b_repeat": k[3]}
                    for k, v in items.items()
                    if v["status"] in DONE_STATUSES
                ]
                if self._claims and done:
                    u = unit_claims_table
                    conn.execute(
                        sa.update(u)
                        .where(
                            u.c.run_id == self.run_id,
                            *(
                                u.c[n] == sa.bindparam(f"b_{n}")
                                for n in ("model", "suite", "item_id", "repeat")
                            ),
                        )
                        .values(state="done", lease_until=None),
                        done,
                    )
            if pool and (p_committed, p_spent) != p_start:
                pools.write_pool(conn, pool, p_committed, p_spent)
            conn.execute(
                sa.update(r)
                .where(r.c.id == self.run_id)
                .values(budget_nano=budget, committed_nano=committed, spent_nano=spent, heartbeat_at=now)
            )
        books = (p_budget, p_committed, p_spent) if pool else None
        return _Outcome(budget, committed, spent, admitted, problems, books)

    def _upsert_items(self) -> Any:
        t = item_results_table
        if self._store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(t)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(t)
        keys = ("run_id", "model", "suite", "item_id", "repeat")
        return stmt.on_conflict_do_update(
            index_elements=[t.c[k] for k in keys],
            set_={col.name: stmt.excluded[col.name] for col in t.c if col.name not in (*keys, "created_at")},
        )


def _release_end(call_id: str) -> CallEnd:
    return CallEnd(
        call_id=call_id,
        status="interrupted",
        cost_nano=0,
        usage=None,
        usage_known=True,
        raw_usage=None,
        request_id=None,
        finish_reason=None,
        error_type="Cancelled",
        error_message="cancelled before the request was sent",
        http_status=None,
        ttft_ms=None,
        latency_ms=None,
        retry_wait_ms=0,
        finished_at=datetime.now(UTC),
    )


def _call_row(s: CallStart, js: Any = None) -> dict[str, Any]:
    request = dict(s.request) if s.request is not None else None
    if request is not None and js is not None:
        request = js(request)
    return {
        "id": s.call_id,
        "run_id": s.run_id,
        "model": s.model,
        "provider": s.provider,
        "api": s.api,
        "provider_model": s.provider_model,
        "suite": s.suite,
        "item_id": s.item_id,
        "repeat": s.repeat,
        "attempt": s.attempt,
        "role": s.role,
        "status": "reserved",
        "reserved_nano": s.reserved_nano,
        "price_id": s.price_id,
        "started_at": s.started_at,
        "cached": False,
        **{
            k: v
            for k, v in (("request_hash", s.request_hash), ("request", request), ("sent_to", s.sent_to))
            if v is not None
        },
    }


def _cached_row(call: CachedCall, text: Any, js: Any) -> dict[str, Any]:
    row = _call_row(call.start, js)
    row.update(
        status="cached",
        cost_nano=0,
        usage_known=True,
        finish_reason=text(call.finish_reason),
        finished_at=call.start.started_at,
        latency_ms=0,
        retry_wait_ms=0,
        cached=True,
        response=js(dict(call.response)),
        source_call_id=call.source_call_id,
        reproduce_nano=call.reproduce_nano,
    )
    return row


@functools.cache
def _settle_stmt(columns: tuple[str, ...]) -> Any:
    """The executemany UPDATE that settles calls, setting ``columns`` (the keys of a settle row)."""
    return (
        sa.update(calls_table)
        .where(calls_table.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in columns})
    )


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


def _settle_row(e: CallEnd, text: Any, js: Any) -> dict[str, Any]:
    u = e.usage
    tokens: dict[str, int | None] = {
        "input_uncached": u.input_uncached if u else None,
        "cache_read": u.cache_read if u else None,
        "cache_write_5m": u.cache_write_5m if u else None,
        "cache_write_1h": u.cache_write_1h if u else None,
        "output_tokens": u.output if u else None,
        "reasoning_tokens": u.reasoning if u else None,
    }
    values: dict[str, Any] = {
        "status": e.status,
        "cost_nano": e.cost_nano,
        "usage_known": e.usage_known,
        **tokens,
        "raw_usage": js(dict(e.raw_usage)) if e.raw_usage is not None else None,
        "request_id": text(e.request_id),
        "finish_reason": text(e.finish_reason),
        "error_type": text(e.error_type),
        "error_message": text(e.error_message),
        "http_status": e.http_status,
        "finished_at": e.finished_at,
        "ttft_ms": e.ttft_ms,
        "latency_ms": e.latency_ms,
        "retry_wait_ms": e.retry_wait_ms,
    }
    if e.response is not None:
        values["response"] = js(dict(e.response))
    if e.service_tier is not None:
        values["service_tier"] = text(e.service_tier)
    if e.provider_cost_nano is not None:
        values["provider_cost_nano"] = e.provider_cost_nano
    if e.output_bound is not None:
        values["output_bound"] = e.output_bound
    return {"b_id": e.call_id, **{f"b_{k}": v for k, v in values.items()}}


def item_row(res: ItemResult, now: datetime, text: Any, js: Any) -> dict[str, Any]:
    return {
        "run_id": res.run_id,
        "model": res.model,
        "suite": res.suite,
        "item_id": res.item_id,
        "repeat": res.repeat,
        "status": res.status,
        "correct": res.correct,
        "extracted": text(res.extracted),
        "answer_text": text(res.answer_text),
        "target": res.target,
        "reason": text(res.reason),
        "meta": js(dict(res.meta)),
        "cost_nano": res.cost_nano,
        "attempts": res.attempts,
        "final_call_id": res.final_call_id,
        "created_at": now,
    }
