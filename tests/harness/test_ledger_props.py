"""Property tests of the ledger on a real SQLite file: random reserve / settle / fail / crash sequences.

At every observed instant (read by an independent connection): ``committed = spent + open
reservations <= budget`` and ``spent = sum of call costs``; every reservation granted is durable when
``reserve()`` returns; every answer is the one an exact model of the budget predicts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import assert_consistent, end, new_run, raw_state, start

from harness.budget.ledger import Ledger
from harness.store.engine import Store

amount = st.integers(min_value=0, max_value=400)
op = st.one_of(
    st.tuples(st.just("reserve"), amount),
    st.tuples(st.just("burst"), st.lists(amount, min_size=2, max_size=6)),
    st.tuples(st.just("edge"), st.integers(-1, 1)),  # the room left, give or take one nano-dollar
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 100)),
    st.tuples(st.just("fail"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("crash")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("add_budget"), st.integers(0, 300)),
)


class Model:
    """What the database must say, computed independently."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.committed = 0
        self.open: dict[str, int] = {}  # granted, not settled by us

    def fits(self, reserved: int) -> bool:
        return self.committed + reserved <= self.budget


async def scenario(path: Path, budget: int, ops: list[tuple[Any, ...]], window: float) -> None:
    store = Store.open(str(path))
    run_id = new_run(store, budget)
    model = Model(budget)
    ledger = await Ledger(store, run_id, batch_window_s=window).__aenter__()

    def check() -> None:
        state = raw_state(path, run_id)
        assert_consistent(state)
        assert state["committed"] <= state["budget"]

    async def reserve(reserved: int, out: dict[int, bool], key: int) -> None:
        s = start(run_id, reserved)
        granted = await ledger.reserve(s)
        out[key] = granted
        if granted:
            model.open[s.call_id] = reserved

    for step in ops:
        kind = step[0]
        if kind == "edge":
            step = ("reserve", max(0, model.budget - model.committed + step[1]))
            kind = "reserve"
        if kind == "reserve":
            expected = model.fits(step[1])
            model.committed += step[1] if expected else 0
            result: dict[int, bool] = {}
            rows_before = raw_state(path, run_id)["rows"]
            await reserve(step[1], result, 0)
            assert result[0] is expected
            assert raw_state(path, run_id)["rows"] == rows_before + expected  # durable on return
        elif kind == "burst":
            expect = []
            for value in step[1]:
                fits = model.fits(value)
                model.committed += value if fits else 0
                expect.append(fits)
            result = {}
            async with anyio.create_task_group() as tg:
                for i, value in enumerate(step[1]):
                    tg.start_soon(reserve, value, result, i)
            assert [result[i] for i in range(len(step[1]))] == expect
        elif kind in ("settle", "fail") and model.open:
            call_id = sorted(model.open)[step[1] % len(model.open)]
            reserved = model.open.pop(call_id)
            if kind == "settle":
                cost = reserved * step[2] // 100
                await ledger.settle(end(call_id, cost))
            else:
                cost = reserved if step[2] else 0
                await ledger.settle(end(call_id, cost, status="error"))
            model.committed += cost - reserved
        elif kind == "flush":
            await ledger.flush()
        elif kind == "add_budget":
            await ledger.add_budget(step[1])
            model.budget += step[1]
        elif kind == "crash":
            ledger._simulate_crash()
            await ledger.__aexit__(None, None, None)
            store.close()
            store = Store.open(str(path))  # a new process: resync what survived
            state = raw_state(path, run_id)
            model.committed = state["committed"]
            model.open = {r["id"]: r["reserved_nano"] for r in store.open_reservations(run_id)}
            ledger = await Ledger(store, run_id, batch_window_s=window).__aenter__()
            assert ledger.committed_nano == model.committed
        check()
    await ledger.__aexit__(None, None, None)
    state = raw_state(path, run_id)
    assert_consistent(state)
    assert (state["committed"], state["budget"]) == (model.committed, model.budget)
    assert state["open"] == sum(model.open.values())
    store.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.integers(min_value=0, max_value=1500),
    ops=st.lists(op, max_size=25),
    window=st.sampled_from([0.0, 0.001]),
)
def test_ledger_invariants_hold_for_any_interleaving(
    budget: int, ops: list[tuple[Any, ...]], window: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(scenario, Path(tmp) / "runs.db", budget, ops, window)
