"""Anytime-valid accuracy intervals, and the ``--target-ci`` stopping rule built on them.

A run that stops "as soon as the interval is narrow enough" looks at its interval after every item. A
fixed-n interval (Wilson, Wald) is only valid at one sample size chosen in advance; checked after
every item and reported at a data-dependent stop it covers the truth less often than it claims. A
**confidence sequence** is a sequence of intervals ``C_1, C_2, ...`` with
``P(true accuracy in C_t for every t) >= 1 - alpha``, so it stays valid at *any* stopping time,
whatever rule chose it (Ville's inequality on a nonnegative supermartingale).

This module implements the predictable-plug-in **empirical-Bernstein confidence sequence for sampling
without replacement** (Waudby-Smith and Ramdas, "Confidence sequences for sampling without
replacement", NeurIPS 2020; the supermartingale is Howard et al. 2021's, via Fan et al. 2015's
inequality). For a finite population of ``N`` item scores ``x_i`` in [0, 1] with mean ``mu``, drawn in
a uniformly random order ``X_1, X_2, ...`` and bets ``lambda_i`` in [0, 1) fixed before ``X_i`` is seen::

    w_i   = N / (N - i + 1)                 c_i = S_{i-1} / (N - i + 1)     (S = running sum)
    A_t   = sum lambda_i (X_i + c_i)        B_t = sum lambda_i w_i
    P_t   = sum psi(lambda_i) (X_i - m_{i-1})^2,   psi(l) = -log(1 - l) - l
    C_t   = [(A_t - P_t - L) / B_t, (A_t + P_t + L) / B_t],  L = log(2 / alpha)

intersected with the deterministic range ``[S_t / N, (S_t + N - t) / N]`` and with every earlier
interval (a running intersection of a confidence sequence is one too). ``m_{i-1}`` is a predictable
mean estimate. Without a population size (``N`` infinite) ``w_i = 1`` and ``c_i = 0``: the ordinary
empirical-Bernstein sequence. The bets are tuned to the target: ``lambda_i = h * w_i / s^2_{i-1}``
(``h`` the target half-width, ``s^2`` a predictable variance estimate), which minimises the width
at the time it reaches ``h`` and, through ``w_i``, gains the finite-population correction
``sqrt(1 - t / N)``. docs/forecast.md has the derivation and the coverage simulation.

Everything here is statistics on scores, not money: floats are fine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from harness.stats.betting import EARLY, MARGIN, ControlVariateCS, HorizonBettingCS, horizon

__all__ = ["CI_METHODS", "FALLBACK_SHARE", "ConfidenceSequence", "Interval", "TargetCI", "planned_items"]

#: ``--ci-method`` choices: the horizon-tuned betting sequence (default) and the empirical-Bernstein one.
CI_METHODS = ("betting", "eb")
#: With ``betting``: the share of alpha kept by the empirical-Bernstein sequence run beside the tickets.
FALLBACK_SHARE = 0.1

#: Largest bet: keeps ``psi`` small and every factor of the capital >= 1 - MAX_BET.
MAX_BET = 0.5
_VAR_FLOOR = 1e-4


@dataclass(frozen=True, slots=True)
class Interval:
    """An accuracy estimate with its anytime-valid interval (fractions in [0, 1])."""

    estimate: float
    """The sample mean of the observed item scores (0.0 before any)."""
    low: float
    high: float
    n: int
    """Items observed."""
    population: int | None
    """Items in the suite (None: treated as infinite)."""
    confidence: float

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-able form."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "half_width": self.half_width,
            "n": self.n,
            "population": self.population,
            "confidence": self.confidence,
        }


class ConfidenceSequence:
    """Empirical-Bernstein confidence sequence for the mean of [0, 1] scores, without replacement.

    Valid under optional stopping when the scores arrive in a uniformly random order of the population
    (``population`` items); without ``population``, for i.i.d. scores.
    """

    def __init__(
        self,
        confidence: float = 0.95,
        population: int | None = None,
        *,
        target_half_width: float | None = None,
    ) -> None:
        """Start an empty sequence.

        Args:
            confidence: ``1 - alpha``, in (0, 1).
            population: number of items in the finite population, or None for an infinite one.
            target_half_width: tune the bets to reach this half-width soonest (None: the
                predictable plug-in bets of Waudby-Smith and Ramdas, good at every sample size).

        Raises:
            ValueError: a parameter is out of range.
        """
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if population is not None and population < 1:
            raise ValueError("population must be at least 1")
        if target_half_width is not None and not 0.0 < target_half_width < 0.5:
            raise ValueError("the target half-width must be in (0, 0.5)")
        self.confidence = confidence
        self.population = population
        self.target_half_width = target_half_width
        self._log_term = math.log(2.0 / (1.0 - confidence))
        self.n = 0
        self._sum = 0.0
        self._a = 0.0
        self._b = 0.0
        self._penalty = 0.0
        self._sq = 0.0
        self.low = 0.0
        self.high = 1.0

    def update(self, x: float) -> None:
        """Add the next score (in the sampling order).

        Raises:
            ValueError: ``x`` is outside [0, 1], or the whole population was already observed.
        """
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"scores must be in [0, 1], got {x}")
        big_n = self.population
        t = self.n + 1
        if big_n is not None and t > big_n:
            raise ValueError(f"all {big_n} items of the population were already observed")
        if big_n is None:
            w, c = 1.0, 0.0
        else:
            remaining = big_n - t + 1
            w, c = big_n / remaining, self._sum / remaining
        mean_pred = (0.5 + self._sum) / t
        var_pred = max((0.25 + self._sq) / t, _VAR_FLOOR)
        if self.target_half_width is not None:
            lam = self.target_half_width * w / var_pred
        else:
            lam = w * math.sqrt(2.0 * self._log_term / (var_pred * t * math.log(t + 1.0)))
        lam = min(lam, MAX_BET)
        dev = x - mean_pred
        psi = -math.log1p(-lam) - lam
        self._a += lam * (x + c)
        self._b += lam * w
        self._penalty += psi * dev * dev
        self._sq += dev * dev
        self._sum += x
        self.n = t
        low = (self._a - self._penalty - self._log_term) / self._b
        high = (self._a + self._penalty + self._log_term) / self._b
        if big_n is not None:
            low = max(low, self._sum / big_n)
            high = min(high, (self._sum + big_n - t) / big_n)
        self.low = max(self.low, low, 0.0)
        self.high = min(self.high, high, 1.0)
        if self.low > self.high:  # only on a miss (probability <= alpha): keep a valid empty-free range
            mid = (self.low + self.high) / 2.0
            self.low = self.high = mid

    def extend(self, xs: Iterable[float]) -> None:
        """Add several scores in order."""
        for x in xs:
            self.update(x)

    @property
    def mean(self) -> float:
        """The sample mean of the scores so far (0.0 before any)."""
        return self._sum / self.n if self.n else 0.0

    def interval(self) -> Interval:
        """The current (running-intersection) interval."""
        return Interval(self.mean, self.low, self.high, self.n, self.population, self.confidence)


class TargetCI:
    """The ``--target-ci`` stopping rule for one model and suite.

    Feed it ``(item_id, correct)`` for every scored unit (``correct=None`` for an unusable answer or an
    error, which still completes that repeat). An item's observation is the mean over its scored
    repeats (items are the sampling unit); an item with no scored repeat contributes nothing.

    With ``order`` (the items' ids in the run's random stratified order), completed items are fed to
    the confidence sequence strictly in that order: under concurrency, easy items tend to finish
    first, and feeding them in completion order would bias an early stop. An item finished out of
    order waits until every item before it has finished.

    The interval (``method``):

    - ``betting`` (default): :class:`~harness.stats.betting.HorizonBettingCS` at ``alpha * 0.9``
      intersected with the empirical-Bernstein sequence at ``alpha * 0.1``. Needs 0/1 observations
      and a population: with ``repeats > 1`` or no population it falls back to ``eb``.
    - ``eb``: :class:`ConfidenceSequence` tuned to the target.
    - with ``control`` (a cheap model's score per item id, None = no usable answer, counted 0):
      :class:`~harness.stats.betting.ControlVariateCS` (``method`` is then ``control``).
    """

    def __init__(
        self,
        half_width: float,
        confidence: float = 0.95,
        population: int | None = None,
        *,
        order: Sequence[str] | None = None,
        repeats: int = 1,
        method: str = "betting",
        control: Mapping[str, float | None] | None = None,
    ) -> None:
        """Set the target.

        Args:
            half_width: stop once the interval is no wider than ``+-half_width`` (e.g. 0.02).
            confidence: the interval's coverage, 0.95 by default.
            population: items in the suite (defaults to ``len(order)``; None = infinite).
            order: item ids in the order the run draws them.
            repeats: scored units expected per item.
            method: ``betting`` or ``eb`` (see the class docstring).
            control: the control model's score of every item in ``order`` (needs ``order``).

        Raises:
            ValueError: a parameter is out of range, ``order`` repeats an id, or ``control`` lacks one.
        """
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        if method not in CI_METHODS:
            raise ValueError(f"unknown interval method {method!r} (choose from {', '.join(CI_METHODS)})")
        if order is not None and len(set(order)) != len(order):
            raise ValueError("order lists an item twice")
        if population is None and order is not None:
            population = len(order)
        self.half_width = half_width
        self.repeats = repeats
        self.confidence = confidence
        self._order = list(order) if order is not None else None
        self._index = {item: i for i, item in enumerate(self._order or ())}
        self._control: list[float] | None = None
        self._betting: HorizonBettingCS | None = None
        self._cv: ControlVariateCS | None = None
        self._eb: ConfidenceSequence | None = None
        if control is not None:
            if self._order is None:
                raise ValueError("a control variate needs the sampling order")
            missing = [i for i in self._order if i not in control]
            if missing:
                raise ValueError(f"the control has no score for item {missing[0]!r}")
            self._control = [float(control[i] or 0.0) for i in self._order]
            self._cv = ControlVariateCS(confidence, self._control, target_half_width=half_width)
            self.method = "control"
        elif method == "betting" and repeats == 1 and population is not None:
            alpha = 1.0 - confidence
            beside = ConfidenceSequence(
                1.0 - alpha * FALLBACK_SHARE, population, target_half_width=half_width
            )
            self._betting = HorizonBettingCS(
                1.0 - alpha * (1.0 - FALLBACK_SHARE), population, half_width, beside=beside
            )
            self.method = "betting"
        else:
            self._eb = ConfidenceSequence(confidence, population, target_half_width=half_width)
            self.method = "eb"
        self._population = population
        self._position = 0
        self._pending: dict[str, list[bool | None]] = {}
        self._completed: set[str] = set()
        self._fresh = True
        self.items_seen = 0
        """Items whose every repeat has arrived (observed or not)."""

    @property
    def population(self) -> int | None:
        """Items in the population (None = infinite)."""
        return self._cv.population if self._cv is not None else self._population

    def add(self, item_id: str, correct: bool | None) -> None:
        """Record one unit of ``item_id``: True/False when scored, None when unusable or failed.

        Raises:
            KeyError: ``item_id`` is not in ``order``.
            ValueError: more than ``repeats`` units arrived for the item.
        """
        if self._order is not None and item_id not in self._pending and item_id not in self._index:
            raise KeyError(f"item {item_id!r} is not in the sampling order")
        if item_id in self._completed or len(self._pending.get(item_id, ())) >= self.repeats:
            raise ValueError(f"item {item_id!r} already has {self.repeats} outcomes")
        self._pending.setdefault(item_id, []).append(correct)
        self._release()

    def _release(self) -> None:
        if self._order is None:
            for item_id in [k for k, v in self._pending.items() if len(v) >= self.repeats]:
                self._completed.add(item_id)
                self._observe(self._pending.pop(item_id), None)
            return
        while self._position < len(self._order):
            got = self._pending.get(self._order[self._position])
            if got is None or len(got) < self.repeats:
                return
            self._completed.add(self._order[self._position])
            self._observe(self._pending.pop(self._order[self._position]), self._position)
            self._position += 1

    def _observe(self, outcomes: list[bool | None], position: int | None) -> None:
        self.items_seen += 1
        scored = [o for o in outcomes if o is not None]
        if self._cv is not None:
            assert position is not None and self._control is not None
            if scored:
                self._cv.update(sum(scored) / len(scored), self._control[position])
            else:  # no usable answer: the item leaves the population the accuracy is about
                self._cv.skip(self._control[position])
            return
        if not scored:
            return
        x = sum(scored) / len(scored)
        if self._betting is not None:
            self._betting.update(x)
            self._fresh = False
        else:
            assert self._eb is not None
            self._eb.update(x)

    @property
    def n(self) -> int:
        """Items fed to the confidence sequence."""
        seq = self._cv or self._betting or self._eb
        assert seq is not None
        return seq.n

    def _bounds(self) -> tuple[float, float, float]:
        """(estimate, low, high) now."""
        if self._betting is not None:
            if not self._fresh:
                self._betting.refresh()
                self._fresh = True
            seq: HorizonBettingCS | ControlVariateCS | ConfidenceSequence = self._betting
        else:
            found = self._cv or self._eb
            assert found is not None
            seq = found
        return seq.mean, seq.low, seq.high

    @property
    def done(self) -> bool:
        """The interval is no wider than the target (or the whole population is known)."""
        if self.n == 0:
            return False
        population = self.population
        if population is not None and self.items_seen >= population:
            return True
        if self._betting is not None and self.n < 0.9 * self._betting.planned_size():
            # The tickets around the estimate are cashed at their horizons (rarely much before):
            # no need to scan the hypotheses yet.
            beside = self._betting.beside
            assert beside is not None
            return (beside.high - beside.low) / 2.0 <= self.half_width
        _, low, high = self._bounds()
        return (high - low) / 2.0 <= self.half_width

    def interval(self) -> Interval:
        """The current anytime-valid interval."""
        estimate, low, high = self._bounds()
        return Interval(estimate, low, high, self.n, self.population, self.confidence)

    def control_summary(self) -> dict[str, float | int | None] | None:
        """With a control: the correlation and the regression coefficient on the items seen."""
        if self._cv is None:
            return None
        return {"correlation": self._cv.correlation, "beta": self._cv.beta, "population": self._cv.population}


#: What the empirical-Bernstein sequences buy relative to ``2 log(2/alpha) sigma^2 / h^2`` with the
#: finite-population correction (the predictable variance and the running intersection do a little
#: better than the bound; measured by tests/benchmarks/bench_target_ci.py).
EB_FACTOR = 0.85


def planned_items(
    method: str,
    accuracy: float,
    half_width: float,
    population: int | None,
    *,
    confidence: float = 0.95,
    rho: float = 0.0,
) -> int | None:
    """About how many items ``--target-ci half_width`` buys at ``accuracy`` with each interval.

    ``betting``: where its tickets are cashed (the fixed-size size at ``z = 2.05``, finite-population
    corrected); ``eb``: where the tuned empirical-Bernstein bound reaches the width; ``control``: the
    same with the variance times ``1 - rho^2``; ``fixed``: the fixed-size Wilson sample (valid only at
    a size fixed in advance; for comparison). None for an unknown method. A forecast, not a promise.
    """
    alpha = 1.0 - confidence
    p = min(1.0, max(0.0, accuracy))
    var = max(p * (1.0 - p), 1e-4)
    if method == "betting":
        level = alpha * (1.0 - FALLBACK_SHARE) / 2.0 * EARLY
        z = NormalDist().inv_cdf(1.0 - level)
        h = half_width * (1.0 - MARGIN)
        return horizon(p - h, p + h, h, z, population)
    if method == "fixed":
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        return horizon(p - half_width, p + half_width, half_width, z, None)
    if method in ("eb", "control"):
        if method == "control":
            var *= max(1.0 - rho * rho, 0.0) + 1e-3
        n0 = EB_FACTOR * 2.0 * math.log(2.0 / alpha) * var / half_width**2
        n = n0 if population is None else n0 / (1.0 + n0 / population)
        return max(1, math.ceil(min(n, population or n)))
    return None
