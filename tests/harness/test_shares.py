"""The shares, the run's budget gate and the rule that ends every wait (harness.budget.shares,
harness.budget.gate, harness.run.attempt).

The unit tests drive the real :class:`Shares`, :class:`BudgetGate` and :class:`Reservation` against an
in-memory ledger with the real one's contract (admit iff committed + reserved <= budget; settles apply
before later reservations). End-to-end regressions through the simulator are in test_stop_rule.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.budget.gate import BudgetGate
from harness.budget.ledger import CallEnd, CallStart
from harness.budget.shares import Shares
from harness.budget.split import split_budget
from harness.errors import BudgetExhausted, CallTimeout, RateLimited, ShareExhausted, UnitLost
from harness.run.attempt import Reservation, failure_charge
from harness.types import Completion, RetryDecision, Usage

pytestmark = pytest.mark.anyio


@dataclass
class MemoryLedger:
    """The ledger's contract in memory: the admission rule, FIFO settles, and a record of every step."""

    budget_nano: int
    committed_nano: int = 0
    spent_nano: int = 0
    open: dict[str, int] = field(default_factory=dict)
    max_committed: int = 0

    async def reserve(self, start: CallStart) -> bool:
        await checkpoint()
        if self.committed_nano + start.reserved_nano > self.budget_nano:
            return False
        self.committed_nano += start.reserved_nano
        self.open[start.call_id] = start.reserved_nano
        self.max_committed = max(self.max_committed, self.committed_nano)
        assert self.committed_nano <= self.budget_nano
        return True

    async def settle(self, end: CallEnd) -> None:
        reserved = self.open.pop(end.call_id)
        self.committed_nano += end.cost_nano - reserved
        self.spent_nano += end.cost_nano


_ids = iter(range(10**9))


def start_for(model: str, reserved: int) -> CallStart:
    return CallStart(
        call_id=f"c{next(_ids)}",
        run_id="r",
        model=model,
        provider="p",
        api="a",
        provider_model=model,
        suite="s",
        item_id="i",
        repeat=0,
        attempt=1,
        role="target",
        reserved_nano=reserved,
        price_id="x",
        started_at=datetime.now(UTC),
    )


def completion() -> Completion:
    return Completion(
        text="ok",
        usage=Usage(),
        usage_known=True,
        finish_reason="stop",
        raw_finish_reason="stop",
        raw_usage=None,
        request_id=None,
        response_model=None,
    )


async def run_workload(
    budget: int,
    work: dict[str, list[tuple[int, int, int]]],
    concurrency: int,
) -> tuple[MemoryLedger, dict[str, str], int]:
    """Run ``work`` (per model: units of (reservation, cost, latency in checkpoints)) the way the runner
    does: workers per model, a share hold (when several models), the gate, one Reservation per call.
    Returns the ledger, each model's end ("done" / "share" / "budget") and the number of calls."""
    ledger = MemoryLedger(budget)
    gate = BudgetGate(ledger)
    shares = Shares(split_budget(budget, list(work))) if len(work) > 1 else None
    if shares is not None:
        gate.on_stop = lambda _stop: shares.stop_all()
    ends: dict[str, str] = {}
    calls = 0

    async def worker(model: str, queue: list[tuple[int, int, int]]) -> None:
        nonlocal calls
        try:
            while queue:
                reserved, cost, latency = queue.pop(0)
                try:
                    if shares is not None:
                        async with shares.hold(model, reserved) as hold:
                            async with Reservation(gate, start_for(model, reserved), hold=hold) as attempt:
                                calls += 1
                                for _ in range(latency):
                                    await checkpoint()
                                attempt.answered(completion(), cost)
                    else:
                        async with Reservation(gate, start_for(model, reserved)) as attempt:
                            calls += 1
                            for _ in range(latency):
                                await checkpoint()
                            attempt.answered(completion(), cost)
                except ShareExhausted:
                    ends[model] = "share"
                    return
                except BudgetExhausted:
                    ends[model] = "budget"
                    return
            ends.setdefault(model, "done")
        finally:
            if shares is not None:
                async with shares.worker(model):
                    pass

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for model, units in work.items():
                queue = list(units)
                workers = max(1, min(concurrency, len(units)))
                if shares is not None:
                    shares.add_workers(model, workers)
                for _ in range(workers):
                    tg.start_soon(worker, model, queue)
    return ledger, ends, calls


# -- the charging rule ---------------------------------------------------------------------------------


def test_only_a_provider_refusal_before_output_is_free() -> None:
    refused = RateLimited("429", provider="p", retry=RetryDecision.transient(), status_code=429)
    cut = CallTimeout("stall", provider="p", retry=RetryDecision.transient(), generation_started=True)
    assert failure_charge(refused, 70) == 0
    assert failure_charge(cut, 70) == 70
    assert failure_charge(TimeoutError(), 70) == 70
    assert failure_charge(RuntimeError("bug"), 70) == 70
    assert failure_charge(None, 70) == 70
    # Reserved, then found its unit's lease gone before sending (harness.run.claims): never sent.
    assert failure_charge(UnitLost("lease lost"), 70) == 0


async def test_a_reservation_settles_exactly_once_on_every_exit_path() -> None:
    ledger = MemoryLedger(1000)
    gate = BudgetGate(ledger)
    # An answer: its cost.
    async with Reservation(gate, start_for("m", 100)) as attempt:
        attempt.answered(completion(), 30)
    assert (ledger.spent_nano, ledger.committed_nano, gate.in_flight) == (30, 30, 0)
    # A provider refusal: free, and the exception goes on.
    with pytest.raises(RateLimited):
        async with Reservation(gate, start_for("m", 100)):
            raise RateLimited("429", provider="p", retry=RetryDecision.transient(), status_code=429)
    assert (ledger.spent_nano, ledger.committed_nano) == (30, 30)
    # A bug, or a block left without an answer: the reservation.
    with pytest.raises(ZeroDivisionError):
        async with Reservation(gate, start_for("m", 100)):
            _ = 1 / 0
    async with Reservation(gate, start_for("m", 100)):
        pass
    assert (ledger.spent_nano, ledger.committed_nano) == (230, 230)
    # A cancellation: settled (shielded) at the reservation, status interrupted.
    with anyio.CancelScope() as scope:
        async with Reservation(gate, start_for("m", 100)) as attempt:
            scope.cancel()
            await anyio.sleep(1)
    assert scope.cancelled_caught
    assert attempt.settled is not None and attempt.settled.status == "interrupted"
    assert (ledger.spent_nano, ledger.committed_nano, ledger.open, gate.in_flight) == (330, 330, {}, 0)


# -- the gate: wait while in flight, stop only with nothing in flight ----------------------------------


async def test_the_gate_waits_for_in_flight_calls_instead_of_stopping() -> None:
    """Issue 10 defect 4: a refusal while other calls are in flight waits for them to settle."""
    ledger = MemoryLedger(250)
    gate = BudgetGate(ledger)
    release = anyio.Event()
    order: list[str] = []

    async def first() -> None:
        async with Reservation(gate, start_for("m", 200)) as attempt:
            await release.wait()
            attempt.answered(completion(), 20)
        order.append("first settled")

    async def second() -> None:
        async with Reservation(gate, start_for("m", 200)) as attempt:
            order.append("second admitted")
            attempt.answered(completion(), 20)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await wait_all_tasks_blocked()
        tg.start_soon(second)
        await wait_all_tasks_blocked()
        assert gate.stopped is None and order == []  # waiting, not stopped
        release.set()
    assert order == ["first settled", "second admitted"]
    assert ledger.spent_nano == 40


async def test_the_gate_stops_when_nothing_is_in_flight_and_wakes_every_waiter() -> None:
    ledger = MemoryLedger(250)
    gate = BudgetGate(ledger)
    release = anyio.Event()
    outcomes: list[str] = []

    async def holder() -> None:
        async with Reservation(gate, start_for("m", 200)) as attempt:
            await release.wait()
            attempt.answered(completion(), 200)

    async def waiter() -> None:
        try:
            async with Reservation(gate, start_for("m", 100)):
                outcomes.append("admitted")
        except BudgetExhausted:
            outcomes.append("stopped")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await wait_all_tasks_blocked()
        for _ in range(3):
            tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert outcomes == []
        release.set()
    assert outcomes == ["stopped"] * 3
    assert gate.stopped is not None


# -- the shares' wait rule -----------------------------------------------------------------------------


async def test_models_whose_next_call_fits_no_share_do_not_hang() -> None:
    """Issue 10 defect 1: two models, neither call fits its half; the largest shortfall stops and its
    share flows to the other, which runs. Today's runner waited forever."""
    budget = 20_000
    work = {"a": [(17_000, 5_000, 2)] * 4, "b": [(19_000, 5_000, 2)] * 4}
    ledger, ends, calls = await run_workload(budget, work, concurrency=4)
    assert ends["b"] == "share"  # shortfall 9,000 > 7,000
    assert ends["a"] in ("share", "budget")
    assert calls >= 1 and ledger.spent_nano <= budget


async def test_a_stuck_model_waits_while_another_model_works_then_gets_its_share() -> None:
    shares = Shares({"a": 100, "b": 100})
    shares.add_workers("a", 1)
    shares.add_workers("b", 1)
    got: list[str] = []
    b_done = anyio.Event()

    async def a_worker() -> None:
        async with shares.worker("a"), shares.hold("a", 150) as hold:
            got.append(f"a admitted with allowance {shares.allowance('a')}")
            hold.cost_nano = 150

    async def b_worker() -> None:
        async with shares.worker("b"):
            async with shares.hold("b", 40) as hold:
                hold.cost_nano = 40
            await b_done.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(b_worker)
        tg.start_soon(a_worker)
        await wait_all_tasks_blocked()
        assert got == [] and shares.waiting("a") == 1  # b still works: a waits, nobody stopped
        b_done.set()
    assert got == ["a admitted with allowance 160"]
    assert shares.stops == []


# -- the property: every run ends, the cap holds, concurrency does not waste the budget ----------------

unit = st.tuples(
    st.integers(1, 5_000),  # reservation
    st.floats(0, 1),  # cost as a fraction of it
    st.integers(0, 6),  # latency in scheduler turns
).map(lambda t: (t[0], int(t[0] * t[1]), t[2]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.integers(0, 60_000),
    work=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.lists(unit, max_size=25), min_size=1),
    concurrency=st.integers(2, 8),
)
def test_every_run_terminates_within_the_cap(
    budget: int, work: dict[str, list[tuple[int, int, int]]], concurrency: int
) -> None:
    ledger, ends, _ = anyio.run(run_workload, budget, work, concurrency)
    assert ledger.max_committed <= budget
    assert ledger.spent_nano <= budget and ledger.open == {}
    assert set(ends) == set(work)
    # Whatever stopped, the run stopped only when the next call could not fit.
    for model, end in ends.items():
        if end != "done":
            assert work[model], model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    work=st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.lists(unit, min_size=1, max_size=40), min_size=1, max_size=3
    ),
    concurrency=st.integers(2, 16),
    budget_factor=st.integers(10, 40),
)
def test_concurrency_spends_at_least_90_percent_of_what_one_worker_spends(
    work: dict[str, list[tuple[int, int, int]]], concurrency: int, budget_factor: int
) -> None:
    """A capped run with concurrency > 1 spends at least 90% of what the same run spends at concurrency
    1 (for budgets of at least 10 of the largest reservations: below that a single call's worst case is
    a tenth of the budget, and no schedule can promise to use the rest)."""
    largest = max(r for units in work.values() for r, _, _ in units)
    budget = budget_factor * largest
    total_cost = sum(c for units in work.values() for _, c, _ in units)
    serial, _, _ = anyio.run(run_workload, budget, work, 1)
    parallel, ends, _ = anyio.run(run_workload, budget, work, concurrency)
    assert parallel.max_committed <= budget
    assert parallel.spent_nano >= 0.9 * serial.spent_nano or parallel.spent_nano == total_cost, (
        serial.spent_nano,
        parallel.spent_nano,
        ends,
    )
