"""The projected final cost of a run while it runs, with an interval, and the partial-run summary.

:class:`Projection` is fed by the runner: every settled call (its cost) and every finished unit (the
cost of all its attempts). The projection is::

    projected = spent + remaining_units * m
    m         = (k * prior_mean + sum of finished units' costs) / (k + n)      (shrunk to the forecast)
    interval  = projected +- z * sqrt(R * s^2 + R^2 * s^2 / (n + k))           (R = remaining units)

``s`` is the finished units' standard deviation (the forecast's per-unit sd before there are two), the
first term is the noise of the ``R`` units still to run and the second the uncertainty of ``m``. ``k``
is the weight of the forecast's prior (a few units' worth). Spend of units still in flight is already
in ``spent`` and those units are also in ``R``, so the projection leans slightly high. The interval
is clipped below at ``spent`` (money already gone) and above at ``spent + R * worst case``
when the per-unit worst case is known.

Amounts are integer nano-dollars; the statistics (means, standard deviations) use Decimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from harness.pricing.money import format_usd, usd_str
from harness.stats.sequential import Interval, TargetCI

__all__ = ["PartialSummary", "Projection", "ProjectionEstimate", "summarize_partial"]

_Z95 = Decimal("1.959963984540054")


def _ceil(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_CEILING))


def _floor(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class ProjectionEstimate:
    """The projected final cost of the planned work (nano-dollars)."""

    spent_nano: int
    projected_nano: int
    low_nano: int
    high_nano: int
    units_done: int
    units_remaining: int

    def text(self) -> str:
        """One line for the progress display: ``projected $1.23 (95%: $1.10-$1.40)``."""
        return (
            f"projected {format_usd(self.projected_nano)} "
            f"(95%: {format_usd(self.low_nano)}-{format_usd(self.high_nano)})"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; amounts as decimal strings."""
        return {
            "spent_usd": usd_str(self.spent_nano),
            "projected_usd": usd_str(self.projected_nano),
            "low_usd": usd_str(self.low_nano),
            "high_usd": usd_str(self.high_nano),
            "units_done": self.units_done,
            "units_remaining": self.units_remaining,
        }


class Projection:
    """Projected final cost of ``total_units`` units, updated as calls settle and units finish."""

    def __init__(
        self,
        total_units: int,
        *,
        prior_mean_nano: int | None = None,
        prior_sd_nano: int | None = None,
        prior_weight: int = 5,
        worst_case_unit_nano: int | None = None,
    ) -> None:
        """Start a projection.

        Args:
            total_units: units planned (models x items x repeats).
            prior_mean_nano: the forecast's expected cost per unit (e.g. ``expected / calls``).
            prior_sd_nano: the forecast's per-unit standard deviation.
            prior_weight: how many finished units the prior counts as.
            worst_case_unit_nano: one unit's reservation, to cap the upper end.

        Raises:
            ValueError: negative counts.
        """
        if total_units < 0 or prior_weight < 0:
            raise ValueError("counts must not be negative")
        self.total_units = total_units
        self.prior_mean = None if prior_mean_nano is None else Decimal(prior_mean_nano)
        self.prior_sd = None if prior_sd_nano is None else Decimal(prior_sd_nano)
        self.prior_weight = prior_weight if prior_mean_nano is not None else 0
        self.worst_case_unit_nano = worst_case_unit_nano
        self.spent_nano = 0
        self.units_done = 0
        self.units_dropped = 0
        self._sum = 0
        self._sumsq = 0

    @property
    def units_remaining(self) -> int:
        """Units neither finished nor dropped."""
        return max(0, self.total_units - self.units_done - self.units_dropped)

    def call_settled(self, cost_nano: int) -> None:
        """A call (attempt) settled at ``cost_nano``."""
        if cost_nano < 0:
            raise ValueError("a cost must not be negative")
        self.spent_nano += cost_nano

    def unit_done(self, cost_nano: int) -> None:
        """A unit finished; ``cost_nano`` is the cost of all its attempts (already passed to
        :meth:`call_settled`)."""
        if cost_nano < 0:
            raise ValueError("a cost must not be negative")
        self.units_done += 1
        self._sum += cost_nano
        self._sumsq += cost_nano * cost_nano

    def units_skipped(self, n: int) -> None:
        """``n`` units will not run (a model stopped, a target interval was reached)."""
        if n < 0:
            raise ValueError("n must not be negative")
        self.units_dropped += n

    def set_remaining(self, remaining: int) -> None:
        """Set the units still to run directly (the rest of the plan counts as dropped)."""
        if remaining < 0:
            raise ValueError("remaining must not be negative")
        self.units_dropped = max(0, self.total_units - self.units_done - remaining)

    def per_unit(self) -> tuple[Decimal, Decimal] | None:
        """Estimated per-unit mean and standard deviation (nano-dollars), or None with no data."""
        n = self.units_done
        k = self.prior_weight
        if n == 0 and self.prior_mean is None:
            return None
        prior = self.prior_mean or Decimal(0)
        mean = (k * prior + self._sum) / Decimal(k + n) if k + n else prior
        if n >= 2:
            var = (Decimal(self._sumsq) - Decimal(self._sum) ** 2 / n) / (n - 1)
            sd = max(var, Decimal(0)).sqrt()
        elif self.prior_sd is not None:
            sd = self.prior_sd
        else:
            sd = mean  # one observation, no prior: a coefficient of variation of 1
        return mean, sd

    def estimate(self) -> ProjectionEstimate:
        """The projected final cost and its 95% interval."""
        r = self.units_remaining
        stats = self.per_unit()
        if stats is None or r == 0:
            s = self.spent_nano
            return ProjectionEstimate(s, s, s, s, self.units_done, r)
        mean, sd = stats
        effective = Decimal(self.units_done + self.prior_weight) or Decimal(1)
        var = r * sd * sd + Decimal(r) ** 2 * sd * sd / effective
        half = _Z95 * var.sqrt()
        centre = Decimal(self.spent_nano) + r * mean
        low = max(self.spent_nano, _floor(centre - half))
        high = _ceil(centre + half)
        if self.worst_case_unit_nano is not None:
            high = min(high, self.spent_nano + r * self.worst_case_unit_nano)
        projected = min(max(_ceil(centre), low), max(high, low))
        return ProjectionEstimate(self.spent_nano, projected, low, max(high, low), self.units_done, r)


@dataclass(frozen=True, slots=True)
class PartialSummary:
    """What a ``--target-ci`` run reports for one model and suite."""

    model: str
    suite: str
    n_items: int
    population: int | None
    interval: Interval
    target_half_width: float
    reached: bool
    spent_nano: int
    full_run: ProjectionEstimate
    """The projected cost of running every planned unit (the interval is on that total)."""

    def line(self) -> str:
        """One line: ``model x suite: 2,410 of 12,000 items, accuracy 0.781 (95% CS 0.761-0.801) ...``."""
        pop = f"{self.population:,}" if self.population is not None else "?"
        iv = self.interval
        status = "target reached" if self.reached else "target not reached"
        return (
            f"{self.model} x {self.suite}: {self.n_items:,} of {pop} items, accuracy {iv.estimate:.3f} "
            f"({iv.confidence:.0%} CS {iv.low:.3f}-{iv.high:.3f}, +-{iv.half_width:.3f}; {status}); "
            f"spent {format_usd(self.spent_nano)}, full run {self.full_run.text()}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; amounts as decimal strings."""
        return {
            "model": self.model,
            "suite": self.suite,
            "n_items": self.n_items,
            "population": self.population,
            "interval": self.interval.as_dict(),
            "target_half_width": self.target_half_width,
            "reached": self.reached,
            "spent_usd": usd_str(self.spent_nano),
            "full_run_projected_usd": usd_str(self.full_run.projected_nano),
            "full_run_low_usd": usd_str(self.full_run.low_nano),
            "full_run_high_usd": usd_str(self.full_run.high_nano),
        }


def summarize_partial(
    *,
    model: str,
    suite: str,
    target: TargetCI,
    unit_costs_nano: Sequence[int],
    spent_nano: int,
    full_units: int,
    worst_case_unit_nano: int | None = None,
) -> PartialSummary:
    """Summarise a model and suite that stopped at its target interval (or its budget).

    Args:
        model: the model's name.
        suite: the suite's name.
        target: the stopping rule that was fed the run's outcomes.
        unit_costs_nano: the cost of every finished unit (all attempts), e.g. ``item_results.cost_nano``.
        spent_nano: everything this model spent on this suite (failed attempts included).
        full_units: units a full run would have (items x repeats).
        worst_case_unit_nano: one unit's reservation, to cap the projection.

    Returns:
        n of N items, the interval, the spend, and the projected cost of the full run.
    """
    proj = Projection(full_units, worst_case_unit_nano=worst_case_unit_nano)
    proj.call_settled(spent_nano)
    for c in unit_costs_nano:
        proj.unit_done(c)
    iv = target.interval()
    if math.isnan(iv.low) or math.isnan(iv.high):  # pragma: no cover - defensive
        raise ValueError("interval is not a number")
    return PartialSummary(
        model=model,
        suite=suite,
        n_items=iv.n,
        population=target.population,
        interval=iv,
        target_half_width=target.half_width,
        reached=target.done,
        spent_nano=spent_nano,
        full_run=proj.estimate(),
    )
