"""Accuracy confidence intervals: known values, cluster handling of repeats, coverage simulation."""

from __future__ import annotations

import random

import pytest

from harness.stats.intervals import accuracy_ci, wilson_interval


def test_wilson_known_values() -> None:
    # 8 of 10, 95%: the textbook Wilson score interval (0.4902, 0.9433).
    ci = accuracy_ci([(str(i), i < 8) for i in range(10)])
    assert ci is not None
    assert ci.method == "wilson"
    assert ci.accuracy == pytest.approx(0.8)
    assert ci.low == pytest.approx(0.49016, abs=1e-4)
    assert ci.high == pytest.approx(0.94331, abs=1e-4)
    assert (ci.n_items, ci.n_samples) == (10, 10)
    # 0 of 20 and 20 of 20 stay inside [0, 1] and are not degenerate.
    lo, hi = wilson_interval(0.0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.16113, abs=1e-4)
    lo, hi = wilson_interval(1.0, 20)
    assert lo == pytest.approx(0.83887, abs=1e-4) and hi == 1.0
    # 99% is wider than 95%.
    lo99, hi99 = wilson_interval(0.8, 10, 0.99)
    assert lo99 < 0.49016 and hi99 > 0.94331


def test_empty_and_bad_confidence() -> None:
    assert accuracy_ci([]) is None
    with pytest.raises(ValueError):
        accuracy_ci([("a", True)], confidence=1.0)


def test_consistent_repeats_add_nothing() -> None:
    """Repeats that always agree carry no new information: exactly the one-sample interval."""
    single = accuracy_ci([(str(i), i < 8) for i in range(10)])
    repeated = accuracy_ci([(str(i), i < 8) for i in range(10) for _ in range(5)])
    assert single is not None and repeated is not None
    assert repeated.method == "wilson-cluster"
    assert (repeated.n_items, repeated.n_samples) == (10, 50)
    assert repeated.n_effective == pytest.approx(10)
    assert (repeated.low, repeated.high) == pytest.approx((single.low, single.high))


def test_repeats_never_widen_and_narrow_when_they_vary() -> None:
    rng = random.Random(3)
    outcomes = [(str(i), rng.random() < 0.6) for i in range(40) for _ in range(4)]
    ci = accuracy_ci(outcomes)
    assert ci is not None
    # Same accuracy on one sample per item would give Wilson(n_items); repeats only narrow it.
    lo, hi = wilson_interval(ci.accuracy, ci.n_items)
    assert ci.high - ci.low <= hi - lo + 1e-12
    assert ci.n_items <= ci.n_effective <= ci.n_samples
    # Independent coin flips with the same p for every item: repeats count almost fully.
    assert ci.n_effective > 2 * ci.n_items


def test_naive_pooling_would_be_too_narrow() -> None:
    """Items that are either always right or always wrong: 50 samples are worth 10."""
    outcomes = [(str(i), i % 2 == 0) for i in range(10) for _ in range(5)]
    ci = accuracy_ci(outcomes)
    assert ci is not None
    naive_lo, naive_hi = wilson_interval(0.5, 50)
    assert ci.high - ci.low > (naive_hi - naive_lo) * 1.9


def test_accuracy_is_mean_of_item_means() -> None:
    # Item a: 1 of 1, item b: 1 of 3 -> (1 + 1/3) / 2, not 2/4.
    ci = accuracy_ci([("a", True), ("b", True), ("b", False), ("b", False)])
    assert ci is not None and ci.accuracy == pytest.approx(2 / 3)


def test_all_items_half_right() -> None:
    # Every item 1 of 2: no between-item variance, all variation within items.
    ci = accuracy_ci([(str(i), r == 0) for i in range(20) for r in range(2)])
    assert ci is not None and ci.n_effective == pytest.approx(40)
    assert 0.0 < ci.low < 0.5 < ci.high < 1.0


def _coverage(n_items: int, repeats: int, a: float, b: float, reps: int, seed: int) -> float:
    """Share of intervals that contain the true mean accuracy of an item population whose
    per-item accuracies are Beta(a, b) (b = 0: every item has accuracy a)."""
    rng = random.Random(seed)
    truth = a if b == 0 else a / (a + b)
    hits = 0
    for _ in range(reps):
        outcomes = []
        for i in range(n_items):
            p = truth if b == 0 else rng.betavariate(a, b)
            outcomes.extend((str(i), rng.random() < p) for _ in range(repeats))
        ci = accuracy_ci(outcomes)
        assert ci is not None
        hits += ci.low <= truth <= ci.high
    return hits / reps


@pytest.mark.parametrize(
    ("n_items", "repeats", "a", "b"),
    [
        (80, 1, 0.7, 0.0),  # one sample per item: Wilson
        (40, 5, 2.0, 1.0),  # repeats, items of varying difficulty (GPQA-like)
        (30, 10, 0.5, 0.5),  # AIME-like: items mostly always right or always wrong
    ],
)
def test_coverage_is_about_95_percent(n_items: int, repeats: int, a: float, b: float) -> None:
    coverage = _coverage(n_items, repeats, a, b, reps=400, seed=2024)
    # 400 reps: standard error ~1.1 points, so 0.92..0.98 is a 2.7-sigma band around 0.95.
    assert 0.92 <= coverage <= 0.98, coverage


def test_pooling_repeats_as_independent_undercovers() -> None:
    """The check has teeth: treating AIME-like repeats as independent samples covers far less."""
    rng = random.Random(7)
    hits = 0
    for _ in range(300):
        outcomes = []
        for _item in range(30):
            p = rng.betavariate(0.5, 0.5)
            outcomes.extend(rng.random() < p for _ in range(10))
        k = sum(outcomes)
        lo, hi = wilson_interval(k / len(outcomes), len(outcomes))
        hits += lo <= 0.5 <= hi
    assert hits / 300 < 0.85
