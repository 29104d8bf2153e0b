"""The runner's workers start as units come for them (``harness.run.runner._Crew``): a unit goes to a
worker that waits for one, a new worker starts only when none waits (up to ``--concurrency``), and a
unit that must wait for a worker fails at once when every worker has stopped instead of waiting for
nobody. A stand-in runner records what its workers are handed; the task group and streams are real."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from harness.run.runner import _Crew

pytestmark = pytest.mark.anyio


class _Runner:
    """What ``_Crew`` uses of a runner: its shares (none) and its worker."""

    def __init__(self, stop_after: int | None = None, hold: anyio.Event | None = None) -> None:
        self._shares = None
        self.taken: list[tuple[int, Any]] = []
        self.started = 0
        self.stop_after = stop_after  # a worker ends after this many units (the model stopped)
        self.hold = hold  # workers wait on this before finishing each unit

    async def _worker(self, mp: Any, receive: MemoryObjectReceiveStream[int], first: int | None) -> None:
        me = self.started
        self.started += 1
        done = 0
        async with receive:
            units = [first] if first is not None else []
            while True:
                if units:
                    unit = units.pop()
                else:
                    try:
                        unit = await receive.receive()
                    except anyio.EndOfStream:
                        return
                self.taken.append((me, unit))
                if self.hold is not None:
                    await self.hold.wait()
                done += 1
                if self.stop_after is not None and done >= self.stop_after:
                    return


class _Model:
    class spec:  # the shape of ModelPlan.spec
        name = "m"


async def test_a_waiting_worker_takes_the_unit_and_no_new_one_starts() -> None:
    runner = _Runner()
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=0)
    async with anyio.create_task_group() as tg:
        crew = _Crew(runner, tg, _Model(), receive, most=8)  # type: ignore[arg-type]
        crew.spawn(None)
        await anyio.wait_all_tasks_blocked()  # the first worker waits for a unit
        with crew, send:
            for unit in range(5):
                assert await crew.give(unit, send)
                await anyio.wait_all_tasks_blocked()
    assert crew.spawned == 1  # every unit found the one worker waiting
    assert sorted(u for _, u in runner.taken) == [0, 1, 2, 3, 4]


async def test_workers_start_only_as_units_come_and_never_past_the_concurrency() -> None:
    hold = anyio.Event()
    runner = _Runner(hold=hold)
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=0)
    spawned_at: list[int] = []
    async with anyio.create_task_group() as tg:
        crew = _Crew(runner, tg, _Model(), receive, most=4)  # type: ignore[arg-type]

        async def hand_out() -> None:
            with crew, send:
                for unit in range(10):
                    assert await crew.give(unit, send)
                    spawned_at.append(crew.spawned)

        tg.start_soon(hand_out)
        await anyio.wait_all_tasks_blocked()
        # Every worker is busy with its unit: four started, the fifth unit waits for one of them.
        assert crew.spawned == 4 and spawned_at == [1, 2, 3, 4]
        assert len(runner.taken) == 4
        hold.set()
    assert crew.spawned == 4
    assert sorted(u for _, u in runner.taken) == list(range(10))


async def test_a_unit_waiting_for_a_worker_fails_at_once_when_every_worker_stopped() -> None:
    runner = _Runner(stop_after=1)  # each worker takes one unit, then its model stops
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=0)
    results: list[bool] = []
    with anyio.fail_after(5):  # the old failure: a send to a stream nobody will ever read
        async with anyio.create_task_group() as tg:
            crew = _Crew(runner, tg, _Model(), receive, most=2)  # type: ignore[arg-type]
            with crew, send:
                for unit in range(5):
                    ok = await crew.give(unit, send)
                    results.append(ok)
                    if not ok:
                        break
    assert crew.spawned == 2
    assert results[-1] is False and len(results) == 3  # two units taken, the third has nobody
