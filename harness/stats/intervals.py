"""Accuracy with a confidence interval, with benchmark items as the unit of sampling.

A run scores every item once, or several times (``--repeats K``). Repeats of one item are not
independent evidence about the suite: a model that always fails a hard question fails it on every
repeat. Treating ``items x repeats`` samples as independent Bernoulli trials would therefore make the
interval too narrow. :func:`accuracy_ci` treats items as clusters:

- every item has exactly one scored sample: the **Wilson score interval** on ``correct / n``
  (``method="wilson"``);
- some item has several samples: accuracy is the mean of the per-item mean accuracies (pass@1
  averaged over repeats, as the leaderboards report it), its variance is the between-item
  (cluster-robust) variance of those item means, and the interval is the Wilson score interval
  evaluated at the **effective sample size** ``n_eff = p(1-p) / Var(p)`` (Kish's design effect, as
  Korn and Graubard do for clustered survey proportions; ``method="wilson-cluster"``).

``n_eff`` lies between the number of items (repeats that always agree add nothing) and the number of
samples (repeats that vary as much as fresh items count fully), so repeats never widen the interval
and only narrow it as far as the data justify. docs/statistics.md explains the choice and the
coverage simulation that checks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["AccuracyCI", "accuracy_ci", "wilson_interval"]


@dataclass(frozen=True)
class AccuracyCI:
    """Accuracy and its confidence interval (all as fractions in [0, 1])."""

    accuracy: float
    low: float
    high: float
    n_items: int
    """Distinct items with at least one scored sample."""
    n_samples: int
    """Scored samples (items x repeats when every repeat was scored)."""
    method: str
    """``wilson`` (one sample per item) or ``wilson-cluster`` (repeats; items as clusters)."""
    confidence: float = 0.95
    n_effective: float = 0.0
    """The sample size the interval was computed with (``n_items`` .. ``n_samples``)."""


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``p`` observed on ``n`` trials.

    ``n`` may be fractional (an effective sample size).

    Args:
        p: Observed proportion in [0, 1].
        n: Number of trials (> 0).
        confidence: Two-sided confidence level.

    Returns:
        ``(low, high)``, clipped to [0, 1].
    """
    if n <= 0:
        raise ValueError("n must be positive")
    z = _z(confidence)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(max(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_ci(outcomes: Sequence[tuple[str, bool]], confidence: float = 0.95) -> AccuracyCI | None:
    """Accuracy and a confidence interval from every scored sample of a suite.

    Args:
        outcomes: ``(item_id, correct)`` for every scored sample; repeats of an item give several
            entries with the same id. Unusable answers (empty, truncated, refused) are not outcomes.
        confidence: Two-sided confidence level, 0.95 by default.

    Returns:
        The estimate, or None when there is no scored sample.
    """
    if not outcomes:
        return None
    per_item: dict[str, list[int]] = {}
    for item_id, correct in outcomes:
        counts = per_item.setdefault(item_id, [0, 0])
        counts[0] += 1 if correct else 0
        counts[1] += 1
    n_items = len(per_item)
    n_samples = len(outcomes)
    if n_samples == n_items:
        k = sum(c for c, _ in per_item.values())
        p = k / n_items
        low, high = wilson_interval(p, n_items, confidence)
        return AccuracyCI(p, low, high, n_items, n_samples, "wilson", confidence, float(n_items))

    means = [c / t for c, t in per_item.values()]
    p = math.fsum(means) / n_items
    # Cluster-robust variance of the mean of item means (divisor n, so that one sample per item
    # gives exactly p(1-p)/n and the Wilson interval above).
    var = math.fsum((m - p) ** 2 for m in means) / (n_items * n_items)
    if p <= 0.0 or p >= 1.0:
        # Every sample agrees: the repeats carry no information beyond one sample per item.
        n_eff = float(n_items)
    elif var <= 0.0:
        # Every item has the same mean: all the variation is within items, as for fresh items.
        n_eff = float(n_samples)
    else:
        n_eff = min(max(p * (1.0 - p) / var, float(n_items)), float(n_samples))
    low, high = wilson_interval(p, n_eff, confidence)
    return AccuracyCI(p, low, high, n_items, n_samples, "wilson-cluster", confidence, n_eff)
