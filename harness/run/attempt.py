"""One attempt at a provider call: reserved durably before it is sent, settled exactly once after.

:class:`Reservation` is one attempt (docs/design.md, invariants 1, 5 and 11). Entering it commits
the ``reserved`` call row (or raises :class:`~harness.errors.BudgetExhausted`); leaving it settles the
row exactly once, on every exit path (an answer, a provider error, a timeout, a cancellation, a bug),
shielded from cancellation, at the cost :func:`failure_charge` gives when no answer was recorded.

The charging rule (:func:`failure_charge`), the one place that decides what a failed attempt costs:

- an answer with known usage costs its price; an answer without usage costs its reservation;
- a :class:`~harness.errors.ProviderError` that the adapter proved free (an HTTP error status received
  before any output, or a request that provably never left: ``generation_started`` False) costs 0,
  as does :class:`~harness.errors.UnitLost` (the unit's lease ran out before it was sent);
- anything else once the request may have left the process (a timeout, a dropped connection, a
  cancellation, an unexpected exception) is usage-unknown and costs the full reservation, which stays
  an upper bound of what the provider can bill.

The reservation goes through :class:`~harness.budget.gate.BudgetGate`, which owns the run's cap and
its waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType

import anyio

from harness.budget.gate import BudgetGate
from harness.budget.ledger import CallEnd, CallStart
from harness.budget.shares import ShareHold
from harness.errors import ProviderError, UnitLost
from harness.pricing.money import usd_to_nano
from harness.run.cache import response_record
from harness.types import Completion

__all__ = ["Reservation", "failure_charge", "one_line"]


def failure_charge(
    exc: BaseException | None, reserved_nano: int, bound_charge: Callable[[int], int] | None = None
) -> int:
    """What an attempt that ended without a recorded answer is charged (the module's charging rule):
    nothing when proven free, else its reservation, or more when the output received before the
    failure could be billed more (``bound_charge`` of the error's ``output_bound``)."""
    if isinstance(exc, ProviderError) and not exc.generation_started:
        return 0
    if isinstance(exc, UnitLost):  # raised before the request was sent
        return 0
    if isinstance(exc, ProviderError) and bound_charge is not None and exc.output_bound:
        return max(reserved_nano, bound_charge(exc.output_bound))
    return reserved_nano


class Reservation:
    """One attempt: ``async with Reservation(gate, start) as attempt:`` reserves on entry and settles
    exactly once on exit.

    Inside the block, call :meth:`answered` with the completion and its cost once the answer is in.
    Leaving the block without it (any exception, or none) settles as a failure under
    :func:`failure_charge`. ``on_settled(cost_nano)`` is called once, after the settlement is queued.
    """

    def __init__(
        self,
        gate: BudgetGate,
        start: CallStart,
        *,
        hold: ShareHold | None = None,
        on_settled: Callable[[int], None] | None = None,
        bound_charge: Callable[[int], int] | None = None,
    ) -> None:
        self.gate = gate
        self.start = start
        self.hold = hold
        self.on_settled = on_settled
        self.bound_charge = bound_charge
        """Output tokens received -> what the attempt can be billed for them at worst (nano-USD)."""
        self._end: CallEnd | None = None
        self._t0 = 0.0
        self.settled: CallEnd | None = None

    @property
    def call_id(self) -> str:
        return self.start.call_id

    @property
    def reserved_nano(self) -> int:
        return self.start.reserved_nano

    async def __aenter__(self) -> Reservation:
        await self.gate.reserve(self.start)
        self._t0 = time.monotonic()
        return self

    def answered(
        self, completion: Completion, cost_nano: int, *, provider_cost_nano: int | None = None
    ) -> None:
        """Record the answer: the attempt settles ``ok`` at ``cost_nano`` (the provider's own figure,
        if it gave one, is stored beside it)."""
        self._end = CallEnd(
            call_id=self.call_id,
            status="ok",
            cost_nano=cost_nano,
            usage=completion.usage,
            usage_known=completion.usage_known,
            raw_usage=completion.raw_usage,
            request_id=completion.request_id,
            finish_reason=completion.raw_finish_reason or completion.finish_reason,
            error_type=None,
            error_message=None,
            http_status=200,
            ttft_ms=None if completion.ttft_s is None else int(completion.ttft_s * 1000),
            latency_ms=int(completion.latency_s * 1000),
            retry_wait_ms=0,
            finished_at=datetime.now(UTC),
            response=response_record(completion.text, completion.finish_reason),
            service_tier=completion.service_tier,
            provider_cost_nano=provider_cost_nano,
            output_bound=None if completion.usage_known else completion.output_bound,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = self._end if exc is None and self._end is not None else self._failure(exc)
        with anyio.CancelScope(shield=True):
            self.settled = end
            if self.hold is not None:
                self.hold.cost_nano = end.cost_nano
            await self.gate.settle(end)
            if self.on_settled is not None:
                self.on_settled(end.cost_nano)

    def _failure(self, exc: BaseException | None) -> CallEnd:
        cost = failure_charge(exc, self.reserved_nano, self.bound_charge)
        latency = int((time.monotonic() - self._t0) * 1000)
        now = datetime.now(UTC)
        if isinstance(exc, ProviderError):
            return CallEnd(
                call_id=self.call_id,
                status="error",
                cost_nano=cost,
                usage=exc.partial_usage,
                usage_known=False,
                raw_usage=None,
                request_id=exc.request_id,
                finish_reason=None,
                error_type=exc.error_type or type(exc).__name__,
                error_message=one_line(exc.message),
                http_status=exc.status_code,
                ttft_ms=None,
                latency_ms=latency,
                retry_wait_ms=0,
                finished_at=now,
                output_bound=exc.output_bound if exc.generation_started and exc.output_bound else None,
            )
        cancelled = exc is not None and isinstance(exc, anyio.get_cancelled_exc_class())
        message = "cancelled" if cancelled else one_line(str(exc)) if exc is not None else ""
        return CallEnd(
            call_id=self.call_id,
            status="interrupted" if cancelled else "error",
            cost_nano=cost,
            usage=None,
            usage_known=False,
            raw_usage=None,
            request_id=None,
            finish_reason=None,
            error_type=type(exc).__name__ if exc is not None else "NoOutcome",
            error_message=message or "the attempt ended without an answer",
            http_status=None,
            ttft_ms=None,
            latency_ms=latency,
            retry_wait_ms=0,
            finished_at=now,
        )


def one_line(text: str) -> str:
    """``text`` on one line, at most 500 characters (for stored error messages)."""
    return " ".join(text.split())[:500]


def provider_cost_nano(usd: str | None) -> int | None:
    """A provider-reported cost (a decimal string of dollars) in nano-dollars, or None."""
    if usd is None:
        return None
    try:
        return usd_to_nano(Decimal(usd))
    except (InvalidOperation, ValueError, ArithmeticError):
        return None
