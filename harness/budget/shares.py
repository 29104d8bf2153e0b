"""Per-model shares of a run's budget, with the waiting and the rule that ends every wait.

The one owner of "a model that reaches its share stops without starving the others, and no model waits
forever" (docs/design.md, invariants 1 and 9). :class:`Shares` holds the numbers (a
:class:`~harness.budget.split.ShareLedger`), the workers of each model, the tasks waiting for share, and
the rule that ends every wait:

- a task whose next reservation does not fit its model's share waits while share may come back: the
  model has a call in flight (its settlement returns what the worst case over-reserved), or another
  model is still working (when it finishes its unspent share flows to the models still running);
- when every model still running is *stuck* (all its workers wait for share, none holds one), nothing
  can free budget: the model with the largest shortfall stops (its waiters raise
  :class:`~harness.errors.ShareExhausted`) and its unspent share flows to the others, which try again.

Every change of the numbers (a hold taken or released, a worker gone, a model stopped) wakes every
waiter, and a waiter evaluates the rule before it sleeps, so the last task to get stuck is the one that
breaks the deadlock: no wait depends on a timer or on another task's goodwill.

All methods are synchronous between awaits, so they are atomic between anyio tasks. Amounts are integer
nano-dollars.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from harness.budget.split import ShareLedger
from harness.errors import ShareExhausted

__all__ = ["ShareHold", "Shares"]


@dataclass(slots=True)
class ShareHold:
    """A reservation of share for one attempt; set :attr:`cost_nano` to what the attempt was charged
    before the hold is released (0 when it never reached the provider)."""

    model: str
    reserved_nano: int
    cost_nano: int = 0


@dataclass(slots=True)
class _Model:
    workers: int = 0
    holding: int = 0
    needs: list[int] = field(default_factory=list)
    """What each waiting task needs beyond the model's available share."""
    stopped: bool = False


class Shares:
    """The shares of a run's budget among its models, and every wait for them.

    Use :meth:`add_workers` before the model's workers start, :meth:`worker` around each worker's life,
    and ``async with shares.hold(model, amount) as hold`` around each attempt.
    """

    def __init__(self, shares: Mapping[str, int]) -> None:
        self._ledger = ShareLedger(shares)
        self._models = {m: _Model() for m in shares}
        self._changed = anyio.Event()
        self._version = 0
        self.stops: list[str] = []
        """Models stopped because their share ran out, in the order they stopped."""

    # -- numbers (read-only views) -------------------------------------------------------------------

    def allowance(self, model: str) -> int:
        return self._ledger.allowance(model)

    def committed(self, model: str) -> int:
        return self._ledger.committed(model)

    def available(self, model: str) -> int:
        return self._ledger.available(model)

    @property
    def total_nano(self) -> int:
        return self._ledger.total_nano

    def committed_total(self) -> int:
        return sum(self._ledger.committed(m) for m in self._models)

    def waiting(self, model: str) -> int:
        return len(self._models[model].needs)

    def stopped(self, model: str) -> bool:
        return self._models[model].stopped

    # -- workers -------------------------------------------------------------------------------------

    def add_workers(self, model: str, count: int) -> None:
        """Announce ``count`` workers of ``model`` (synchronously, before any of them runs, so that a
        model still starting never looks stuck to the others)."""
        self._models[model].workers += count

    @asynccontextmanager
    async def worker(self, model: str) -> AsyncIterator[None]:
        """One worker's life (announced by :meth:`add_workers`). When the model's last worker ends, the
        model is finished and its unspent share flows to the models still running."""
        try:
            yield
        finally:
            m = self._models[model]
            m.workers -= 1
            if m.workers == 0:
                self._ledger.finish(model)
            self._notify()

    def stop(self, model: str) -> None:
        """Stop ``model`` now (its waiters raise); its unspent share flows to the others."""
        m = self._models[model]
        if not m.stopped:
            m.stopped = True
            self._ledger.finish(model)
            self._notify()

    def stop_all(self) -> None:
        """The run stops: every waiter raises, nothing flows."""
        for model in self._models:
            self.stop(model)

    # -- holds ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, model: str, amount_nano: int) -> AsyncIterator[ShareHold]:
        """Reserve ``amount_nano`` of the model's share for one attempt, waiting while share may still
        come back or flow in; release it at ``hold.cost_nano`` on exit.

        Raises:
            ShareExhausted: the model is stopped, or the stop rule stopped it while it waited.
        """
        await self._acquire(model, amount_nano)
        hold = ShareHold(model, amount_nano)
        try:
            yield hold
        finally:
            self._models[model].holding -= 1
            self._ledger.settle(model, amount_nano, hold.cost_nano)
            self._notify()

    async def _acquire(self, model: str, amount: int) -> None:
        m = self._models[model]
        while True:
            if m.stopped:
                raise self._exhausted(model, amount)
            if self._ledger.reserve(model, amount):
                m.holding += 1
                self._notify()
                return
            need = amount - self._ledger.available(model)
            m.needs.append(need)
            try:
                version = self._version
                self._break_deadlock()
                if self._version != version:
                    continue  # something changed (a model stopped, share flowed): look again
                changed = self._changed
                await changed.wait()
            finally:
                m.needs.remove(need)

    def _stuck(self, m: _Model) -> bool:
        return m.holding == 0 and m.workers > 0 and len(m.needs) >= m.workers

    def _break_deadlock(self) -> None:
        """The rule that ends every wait: when every running model is stuck, stop the one with the
        largest shortfall (the first such in the run's order on a tie)."""
        running = [name for name in self._ledger.running() if not self._models[name].stopped]
        if not running or not all(self._stuck(self._models[name]) for name in running):
            return
        worst = max(running, key=lambda name: max(self._models[name].needs))
        self.stops.append(worst)
        self.stop(worst)

    def _notify(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = anyio.Event()

    def _exhausted(self, model: str, amount: int) -> ShareExhausted:
        return ShareExhausted(
            model=model,
            spent=self._ledger.committed(model),
            reserved=0,
            limit=self._ledger.allowance(model),
            attempted=amount,
        )
