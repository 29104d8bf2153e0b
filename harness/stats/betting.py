"""Tighter anytime-valid intervals: horizon-tuned betting, and a control variate from a cheap model.

Two confidence sequences for the accuracy of a finite population of ``N`` items drawn without
replacement in a random order (docs/statistics.md has the derivations, assumptions and figures).

:class:`HorizonBettingCS` (``--ci-method betting``, the default for ``--target-ci``)
    For 0/1 scores. Under the hypothesis "``K`` of the ``N`` items are right", the number right
    after ``t`` draws is hypergeometric, and so is what the remaining draws add: the hypothesis fixes
    the whole law. For each ``K`` and each side a gambler buys, at price ``q``, a ticket on the
    event ``A = {S_T >= b}`` (or ``{S_T <= a}``) for a horizon ``T(K)`` chosen *before* any data, and
    holds it. The ticket's value ``M_t = P_K(A | S_t) / q`` is a nonnegative martingale with
    ``M_0 = 1`` under ``K`` (in a two-outcome world every martingale is the wealth of a betting
    strategy: this is the one that replicates the fixed-horizon test), so by Ville's inequality
    ``P(sup_t M_t >= 1/alpha') <= alpha'``. ``K`` is excluded at time ``t`` once its ticket is worth
    ``1/alpha'``: at ``T`` that is exactly the exact (hypergeometric) fixed-size test, before ``T``
    only when the event is already near certain. ``T(K)`` is the size at which a fixed-size score
    interval with ``K/N`` as one endpoint would be ``2 * half-width`` wide, so the sequence is as
    narrow as a fixed-size test *at the size the target needs* (paying ``z = 2.05`` instead of 1.96)
    and gains the exact finite-population correction, instead of paying the ``2 log(2/alpha)`` of an
    exponential (empirical-Bernstein) martingale tuned to one time. A share of ``alpha`` keeps the
    empirical-Bernstein sequence of :mod:`harness.stats.sequential` running beside it, so the
    interval still narrows if the data drift away from the plan.

:class:`ControlVariateCS` (``--control MODEL``, ``--control history``)
    A cheap model's score ``c_i`` is known for every item before the expensive one is sampled. The
    predictable regression estimator ``u_i = y_i - beta_i (c_i - R_i)`` (``R_i`` the known mean of
    the control over the items not yet drawn, ``beta_i`` fitted on the earlier pairs) has the
    remaining mean of ``y`` as its conditional mean whatever the control. A capital process bets on
    ``u_i`` against it; each bet pays the exact penalty ``lambda d - log(1 + lambda d)`` of the
    deviation ``d`` that occurred (the factor is then ``exp(lambda (m - mu_i)) (1 + lambda d)``, of
    expectation <= 1), so the sequence pays for the residual's variance ``Var(y) (1 - rho^2)``, not
    for its range, and stays closed-form in ``mu``.

Everything here is statistics on scores, not money: floats are fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Protocol

__all__ = [
    "ControlVariateCS",
    "HorizonBettingCS",
    "horizon",
    "hypergeom_sf",
]

#: Largest bet of the empirical-Bernstein martingale (as in :mod:`harness.stats.sequential`).
MAX_BET = 0.5
#: A ticket is cashed before its horizon once its event has this conditional probability (its price
#: is set so that cashing at that point is worth exactly 1/alpha').
EARLY = 0.9
#: The horizon aims at this fraction of the target width (room for the estimate to move).
MARGIN = 0.04
_VAR_FLOOR = 1e-4
#: Largest bet of the control-variate martingale, as a share of the largest step its deviation can take.
CV_MAX_BET = 0.5
#: Largest regression coefficient of the control variate.
MAX_BETA = 2.0
_TAIL_SDS = 14.0


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_sf(k: int, population: int, successes: int, draws: int) -> float:
    """``P(Y >= k)`` for ``Y`` hypergeometric: ``draws`` from ``population`` holding ``successes``.

    Sums the exact probabilities of the shorter tail (terms fall off geometrically past the mode,
    the sum stops once they are negligible).
    """
    lo = max(0, draws - (population - successes))
    hi = min(draws, successes)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    log_total = _log_comb(population, draws)

    def log_pmf(y: int) -> float:
        return _log_comb(successes, y) + _log_comb(population - successes, draws - y) - log_total

    mean = draws * successes / population
    if k > mean:  # upper tail: y = k, k+1, ...
        return min(1.0, _tail(k, hi, 1, log_pmf, population, successes, draws))
    # 1 - P(Y <= k - 1): lower tail y = k-1, k-2, ...
    return max(0.0, 1.0 - _tail(k - 1, lo, -1, log_pmf, population, successes, draws))


def _tail(
    start: int, end: int, step: int, log_pmf: object, population: int, successes: int, draws: int
) -> float:
    """Sum pmf(start), pmf(start+step), ... up to ``end`` with the pmf ratio recurrence."""
    assert callable(log_pmf)
    p = math.exp(log_pmf(start))
    total = p
    y = start
    fail = population - successes
    while y != end:
        if step > 0:  # pmf(y+1)/pmf(y)
            ratio = (successes - y) * (draws - y) / ((y + 1) * (fail - draws + y + 1))
        else:  # pmf(y-1)/pmf(y)
            ratio = y * (fail - draws + y) / ((successes - y + 1) * (draws - y + 1))
        p *= ratio
        y += step
        total += p
        if p < total * 1e-13 or p == 0.0:
            break
    return total


def horizon(low: float, high: float, half_width: float, z: float, population: int | None) -> int:
    """Items at which a fixed-size score interval with endpoints ``low`` and ``high`` is that wide.

    Solves ``z (sigma(low) + sigma(high)) * sd = 2 * half_width`` for the sample size, where ``sd`` is
    the standard error of a mean of ``n`` draws without replacement, ``sqrt((N - n) / (n (N - 1)))``,
    and ``sigma(p) = sqrt(p (1 - p))``. This is the size a Wilson-type interval needs at that accuracy.
    """
    low, high = max(0.0, low), min(1.0, high)
    spread = math.sqrt(low * (1.0 - low)) + math.sqrt(high * (1.0 - high))
    kappa2 = (2.0 * half_width / (z * max(spread, 1e-9))) ** 2
    if population is None:
        return max(1, math.ceil(1.0 / kappa2))
    if population == 1:
        return 1
    n = population / (1.0 + (population - 1) * kappa2)
    return max(1, min(population, math.ceil(n)))


class _Ticket:
    """One side of the test of ``K`` right out of ``N``: the horizon, the event and its price."""

    __slots__ = ("bound", "horizon", "price", "upper")

    def __init__(self, k: int, big_n: int, horizon_t: int, upper: bool, level: float) -> None:
        self.horizon = horizon_t
        self.upper = upper
        # The event: S_T >= bound (upper) or S_T <= bound (lower), as likely as possible but <= level.
        # Search outward from the normal quantile; exact tails decide.
        mean = horizon_t * k / big_n
        var = horizon_t * (k / big_n) * (1 - k / big_n) * (big_n - horizon_t) / max(big_n - 1, 1)
        z = NormalDist().inv_cdf(1.0 - level)
        guess = round(mean + z * math.sqrt(var)) if upper else round(mean - z * math.sqrt(var))

        def prob(b: int) -> float:
            if upper:
                return hypergeom_sf(b, big_n, k, horizon_t)
            return 1.0 - hypergeom_sf(b + 1, big_n, k, horizon_t)

        step = 1 if upper else -1  # away from the mean: the event gets less likely
        b = guess
        if prob(b) <= level:  # move towards the mean while the event stays cheap enough
            while prob(b - step) <= level:
                b -= step
        else:
            while prob(b) > level:
                b += step
        self.bound = b
        self.price = prob(b)

    def value(self, s_t: int, t: int, k: int, big_n: int) -> float:
        """``P_K(A | S_t)``: the ticket's worth (times its price) after ``t`` draws with ``s_t`` right."""
        m = self.horizon - t
        if self.upper:
            return hypergeom_sf(self.bound - s_t, big_n - t, k - s_t, m)
        return 1.0 - hypergeom_sf(self.bound - s_t + 1, big_n - t, k - s_t, m)


class Bounds(Protocol):
    """Another confidence sequence run beside (its interval is intersected with this one's)."""

    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...
    def update(self, x: float) -> None: ...


class HorizonBettingCS:
    """Anytime-valid interval for the accuracy of ``population`` 0/1 items drawn without replacement.

    Valid under any stopping rule when the items arrive in a uniformly random order. Tuned so that
    it is ``+-target_half_width`` wide at about the size a fixed-size interval needs.
    """

    def __init__(
        self,
        confidence: float,
        population: int,
        target_half_width: float,
        *,
        beside: Bounds | None = None,
    ) -> None:
        """Start an empty sequence.

        Args:
            confidence: ``1 - alpha`` of the tickets alone.
            population: items in the population.
            target_half_width: the half-width the horizons are tuned to.
            beside: a confidence sequence fed the same scores and intersected with this one (the
                coverage is then ``1 - alpha - alpha_beside``).

        Raises:
            ValueError: a parameter is out of range.
        """
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if population < 1:
            raise ValueError("population must be at least 1")
        if not 0.0 < target_half_width < 0.5:
            raise ValueError("the target half-width must be in (0, 0.5)")
        alpha = 1.0 - confidence
        self.confidence = confidence
        self.population = population
        self.target_half_width = target_half_width
        self.beside = beside
        # Each side of every K: a ticket at level alpha_side, cashed at value 1/alpha_side.
        self._alpha_side = alpha / 2.0
        self._level = self._alpha_side * EARLY
        self._z = NormalDist().inv_cdf(1.0 - self._level)
        self._tickets: dict[tuple[int, bool], _Ticket] = {}
        self._sums: list[int] = [0]
        self.k_low = 0
        self.k_high = population

    @property
    def n(self) -> int:
        """Items observed."""
        return len(self._sums) - 1

    @property
    def mean(self) -> float:
        """The sample mean (0.0 before any)."""
        return self._sums[-1] / self.n if self.n else 0.0

    @property
    def low(self) -> float:
        return self.k_low / self.population

    @property
    def high(self) -> float:
        return self.k_high / self.population

    def _ticket(self, k: int, upper: bool) -> _Ticket:
        key = (k, upper)
        ticket = self._tickets.get(key)
        if ticket is None:
            big_n, h = self.population, self.target_half_width * (1.0 - MARGIN)
            mu = k / big_n
            # upper ticket rejects K when too many are right: K is the interval's low end
            ends = (mu, mu + 2 * h) if upper else (mu - 2 * h, mu)
            t = horizon(ends[0], ends[1], h, self._z, big_n)
            ticket = _Ticket(k, big_n, t, upper, self._level)
            self._tickets[key] = ticket
        return ticket

    def rejected(self, k: int, upper_first: bool = True) -> bool:
        """Whether the hypothesis "``k`` of the items are right" is excluded now (not counting the
        running intersection nor the empirical-Bernstein sequence). ``upper_first``: try the ticket
        on "too many right" first (the one that excludes a ``k`` below the estimate)."""
        t, s_t, big_n = self.n, self._sums[-1], self.population
        if k < s_t or k > s_t + big_n - t:
            return True
        for upper in (upper_first, not upper_first):
            ticket = self._ticket(k, upper)
            if ticket.price <= 0.0:
                continue
            if t >= ticket.horizon:
                s_h = self._sums[ticket.horizon]
                if s_h >= ticket.bound if upper else s_h <= ticket.bound:
                    return True
                continue
            if ticket.value(s_t, t, k, big_n) / ticket.price >= 1.0 / self._alpha_side:
                return True
        return False

    def update(self, x: float) -> None:
        """Add the next 0/1 score (in the sampling order) without recomputing the interval.

        Raises:
            ValueError: ``x`` is not 0 or 1, or every item was already observed.
        """
        if x not in (0.0, 1.0):
            raise ValueError(f"the betting sequence takes 0/1 scores, got {x}")
        if self.n >= self.population:
            raise ValueError(f"all {self.population} items of the population were already observed")
        if self.beside is not None:
            self.beside.update(x)
        self._sums.append(self._sums[-1] + int(x))

    def refresh(self) -> None:
        """Recompute the interval for the scores so far (the running intersection of all earlier
        ones). Checking only now and then is valid: the sequence holds at every time at once."""
        big_n = self.population
        k_low, k_high = self.k_low, self.k_high
        if self.beside is not None:
            k_low = max(k_low, math.floor(self.beside.low * big_n + 1e-9))
            k_high = min(k_high, math.ceil(self.beside.high * big_n - 1e-9))
        # what is certain: at least the s_t right seen, at most s_t plus every item not seen
        s_t, left = self._sums[-1], big_n - self.n
        k_low, k_high = max(k_low, s_t), min(k_high, s_t + left)
        if k_low > k_high:  # only after a miss (probability <= alpha): keep the certain range's nearest end
            k_low = k_high = min(max(self.k_low, s_t), s_t + left)
        centre = s_t * big_n / max(self.n, 1)
        while k_low < k_high and k_low < centre and self.rejected(k_low):
            k_low += 1
        while k_high > k_low and k_high > centre and self.rejected(k_high, upper_first=False):
            k_high -= 1
        self.k_low, self.k_high = k_low, k_high

    def planned_size(self) -> int:
        """Where the tickets around the current estimate are cashed: about where the run stops."""
        h = self.target_half_width * (1.0 - MARGIN)
        p = self.mean if self.n else 0.5
        return horizon(p - h, p + h, h, self._z, self.population)


class ControlVariateCS:
    """Anytime-valid interval for a model's accuracy using a cheap model's scores on every item.

    ``control`` holds the cheap model's score of every item of the population (fixed before the
    expensive model is sampled; any fixed values keep the interval valid, good ones narrow it). The
    expensive model's scores arrive with the item's control score, in a uniformly random order
    without replacement; scores in [0, 1].
    """

    def __init__(
        self,
        confidence: float,
        control: Sequence[float],
        target_half_width: float | None = None,
    ) -> None:
        """Start an empty sequence.

        Raises:
            ValueError: a parameter is out of range.
        """
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if not control:
            raise ValueError("the control needs a score for every item")
        if any(not 0.0 <= c <= 1.0 for c in control):
            raise ValueError("control scores must be in [0, 1]")
        if target_half_width is not None and not 0.0 < target_half_width < 0.5:
            raise ValueError("the target half-width must be in (0, 0.5)")
        self.confidence = confidence
        self.population = len(control)
        self.target_half_width = target_half_width
        self._log_term = math.log(2.0 / (1.0 - confidence))
        self._control_total = math.fsum(control)
        self._control_left = self._control_total
        self.n = 0
        self._sum_y = 0.0
        self._sum_c = 0.0
        self._sum_yc = 0.0
        self._sum_cc = 0.0
        self._sum_yy = 0.0
        self._a = 0.0
        self._b = 0.0
        self._penalty_low = 0.0
        self._penalty_high = 0.0
        self._sq = 0.0
        self._sum_u = 0.0
        self.low = 0.0
        self.high = 1.0

    @property
    def beta(self) -> float:
        """The regression coefficient of the expensive on the cheap scores so far, in [0, MAX_BETA].

        Above 1 when the control's scores are compressed (a history prediction); never negative (a
        control that disagrees is no help worth its noise)."""
        n = self.n
        if n < 10:
            return 0.0
        var_c = self._sum_cc / n - (self._sum_c / n) ** 2
        cov = self._sum_yc / n - (self._sum_y / n) * (self._sum_c / n)
        if var_c <= 1e-12:
            return 0.0
        return min(MAX_BETA, max(0.0, cov / var_c))

    @property
    def correlation(self) -> float | None:
        """The sample correlation of the two models' scores on the items seen (None: undefined)."""
        n = self.n
        if n < 2:
            return None
        var_c = self._sum_cc / n - (self._sum_c / n) ** 2
        var_y = self._sum_yy / n - (self._sum_y / n) ** 2
        cov = self._sum_yc / n - (self._sum_y / n) * (self._sum_c / n)
        if var_c <= 1e-12 or var_y <= 1e-12:
            return None
        return max(-1.0, min(1.0, cov / math.sqrt(var_c * var_y)))

    @property
    def mean(self) -> float:
        """The regression estimate of the accuracy so far (0.0 before any item)."""
        if not self.n:
            return 0.0
        n = self.n
        control_mean = self._control_total / self.population
        est = self._sum_y / n + self.beta * (control_mean - self._sum_c / n)
        return min(1.0, max(0.0, est))

    def skip(self, c: float) -> None:
        """Drop the next item (no usable expensive answer) from the population, with its control ``c``."""
        if self.population - self.n <= 1:
            raise ValueError("cannot drop the last item of the population")
        self.population -= 1
        self._control_total -= c
        self._control_left -= c

    def update(self, y: float, c: float) -> None:
        """Add the expensive model's score ``y`` on the next item, whose control score is ``c``.

        Raises:
            ValueError: a score is outside [0, 1], or every item was already observed.
        """
        if not 0.0 <= y <= 1.0 or not 0.0 <= c <= 1.0:
            raise ValueError(f"scores must be in [0, 1], got {y} and {c}")
        big_n, t = self.population, self.n + 1
        if t > big_n:
            raise ValueError(f"all {big_n} items of the population were already observed")
        remaining = big_n - t + 1
        w = big_n / remaining
        r = min(1.0, max(0.0, self._control_left / remaining))  # known control mean of the items left
        beta = self.beta  # fitted on the earlier pairs only: predictable
        # u has E[u | past] = w mu - S_y / remaining, whatever the control
        u = y - beta * (c - r)
        shift = self._sum_y / remaining
        mean_pred = (0.5 + self._sum_u) / t  # predictable estimate of E[u | past]
        var_pred = max((0.25 + self._sq) / t, _VAR_FLOOR)
        # the deviation u - mean_pred is bounded below by -lo_dev and above by hi_dev (predictable)
        lo_dev = max(mean_pred + beta * (1.0 - r), 1e-6)
        hi_dev = max(1.0 + beta * r - mean_pred, 1e-6)
        if self.target_half_width is not None:
            lam = self.target_half_width * w / var_pred
        else:
            lam = w * math.sqrt(2.0 * self._log_term / (var_pred * t * math.log(t + 1.0)))
        lam = min(lam, CV_MAX_BET / max(lo_dev, hi_dev))
        dev = u - mean_pred
        self._a += lam * (u + shift)
        self._b += lam * w
        # The exact penalty of this bet: exp(lam d - (lam d - log(1 + lam d))) = 1 + lam d for the
        # observed deviation d (Fan et al.'s psi_E(lam) d^2 bounds it for the worst d; docs/statistics.md)
        self._penalty_low += lam * dev - math.log1p(lam * dev)
        self._penalty_high += -lam * dev - math.log1p(-lam * dev)
        self._sq += dev * dev
        self._sum_u += u
        self._sum_y += y
        self._sum_c += c
        self._sum_yc += y * c
        self._sum_cc += c * c
        self._sum_yy += y * y
        self._control_left -= c
        self.n = t
        low = (self._a - self._penalty_low - self._log_term) / self._b
        high = (self._a + self._penalty_high + self._log_term) / self._b
        low = max(low, self._sum_y / big_n)
        high = min(high, (self._sum_y + big_n - t) / big_n)
        self.low = max(self.low, low, 0.0)
        self.high = min(self.high, high, 1.0)
        if self.low > self.high:  # only on a miss (probability <= alpha)
            mid = (self.low + self.high) / 2.0
            self.low = self.high = mid
