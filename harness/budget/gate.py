"""The run's hard cap in this process, and the rule that ends every wait for it (docs/design.md,
invariants 1 and 9).

A reservation that does not fit while calls of this process are in flight (or being reserved) waits for
one of them to settle and tries again; only when the next call does not fit with nothing of this process
in flight does the run stop, with :class:`~harness.errors.BudgetExhausted`. Every settlement wakes the
waiters, and the last refused reservation with nothing in flight stops the run and wakes them all, so
every wait ends. The durable admission itself is the ledger's transaction (:mod:`harness.budget.ledger`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import anyio

from harness.budget.ledger import CallEnd, CallStart
from harness.errors import BudgetExhausted

__all__ = ["BudgetGate", "LedgerLike"]


class LedgerLike(Protocol):
    """What the gate needs of :class:`~harness.budget.ledger.Ledger`."""

    @property
    def budget_nano(self) -> int: ...

    @property
    def committed_nano(self) -> int: ...

    @property
    def spent_nano(self) -> int: ...

    async def reserve(self, start: CallStart) -> bool: ...

    async def settle(self, end: CallEnd) -> None: ...


class BudgetGate:
    """The run's hard cap in this process, with the rule that ends every wait for it."""

    def __init__(self, ledger: LedgerLike) -> None:
        self.ledger = ledger
        self._pending = 0
        self._holding = 0
        self._changed = anyio.Event()
        self.stopped: BudgetExhausted | None = None
        """Set once the run stopped at its budget; every later reservation raises it."""
        self.on_stop: Callable[[BudgetExhausted], None] | None = None
        """Called once when the gate stops the run (the runner stops the shares' waiters with it)."""

    @property
    def in_flight(self) -> int:
        """Reservations of this process admitted and not yet settled."""
        return self._holding

    async def reserve(self, start: CallStart) -> None:
        """Commit ``start``'s reservation, waiting while calls of this process may still free budget.

        Raises:
            BudgetExhausted: the run is stopped, or this reservation does not fit with nothing of this
                process in flight (then the run stops).
            StorageError: the database could not record the reservation.
        """
        while True:
            if self.stopped is not None:
                raise self.stopped
            self._pending += 1
            try:
                admitted = await self.ledger.reserve(start)
            finally:
                self._pending -= 1
            if admitted:
                self._holding += 1
                return
            if self._holding + self._pending == 0:
                self.stop(start.reserved_nano)
                assert self.stopped is not None
                raise self.stopped
            changed = self._changed
            await changed.wait()

    async def try_reserve(self, start: CallStart) -> bool:
        """Commit ``start``'s reservation if it fits now, without waiting (the batch path reserves a
        whole batch this way and decides itself what to do with what does not fit).

        Raises:
            BudgetExhausted: the run is stopped.
            StorageError: the database could not record the reservation.
        """
        if self.stopped is not None:
            raise self.stopped
        self._pending += 1
        try:
            admitted = await self.ledger.reserve(start)
        finally:
            self._pending -= 1
        if admitted:
            self._holding += 1
        return admitted

    def adopt(self, count: int) -> None:
        """Count ``count`` reservations an earlier session admitted as this process's to settle
        (the requests of a batch that ``resume`` re-attaches to)."""
        self._holding += count

    async def changed(self) -> None:
        """Wait for the next settlement or stop (callers bound the wait themselves)."""
        await self._changed.wait()

    def stop(self, attempted_nano: int = 0) -> None:
        """Stop the run at its budget: no reservation is admitted from now on."""
        if self.stopped is not None:
            return
        ledger = self.ledger
        books = getattr(ledger, "pool_books", None)
        fits_run = ledger.committed_nano + attempted_nano <= ledger.budget_nano
        if books is not None and fits_run and books[1] + attempted_nano > books[0]:
            # The run's own budget had room: its pool is what ran out.
            self.stopped = BudgetExhausted(
                spent=books[2],
                reserved=books[1] - books[2],
                limit=books[0],
                attempted=attempted_nano,
                what=f"pool {getattr(ledger, 'pool', '')}",
            )
        else:
            self.stopped = BudgetExhausted(
                spent=ledger.spent_nano,
                reserved=ledger.committed_nano - ledger.spent_nano,
                limit=ledger.budget_nano,
                attempted=attempted_nano,
            )
        self._notify()
        if self.on_stop is not None:
            self.on_stop(self.stopped)

    async def settle(self, end: CallEnd) -> None:
        """Settle one admitted reservation (queued in the ledger) and wake the waiters."""
        try:
            await self.ledger.settle(end)
        finally:
            self._holding -= 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
