"""Seeded stratified sampling for --limit, and the seeded stratified order."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.stats.sampling import allocate, seeded_order, stratified_sample
from harness.suite import Item


def _items(sizes: dict[str, int]) -> list[Item]:
    # Sorted by stratum, as datasets usually are: a prefix would be badly biased.
    return [Item(f"{s}-{i}", "q", "a", s) for s, n in sizes.items() for i in range(n)]


SIZES = {"algebra": 60, "geometry": 25, "number_theory": 10, "precalculus": 5}


def test_allocation_is_proportional_largest_remainder() -> None:
    assert allocate(SIZES, 20) == {"algebra": 12, "geometry": 5, "number_theory": 2, "precalculus": 1}
    # 10 * (60, 25, 10, 5) / 100 = 6, 2.5, 1, 0.5 -> the two .5 remainders share the one left over.
    alloc = allocate(SIZES, 10, seed=3)
    assert alloc["algebra"] == 6 and alloc["number_theory"] == 1
    assert alloc["geometry"] + alloc["precalculus"] == 3
    assert {alloc["geometry"], alloc["precalculus"]} <= {0, 1, 2, 3}
    assert allocate({"a": 3, "b": 1}, 4) == {"a": 3, "b": 1}
    assert allocate({"a": 2, "b": 2, "c": 2}, 0) == {"a": 0, "b": 0, "c": 0}
    with pytest.raises(ValueError):
        allocate({"a": 1}, 2)


def test_largest_remainder_beats_floor() -> None:
    # 7 * (5, 3, 2) / 10 = 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6) + the largest remainder (a).
    assert allocate({"a": 5, "b": 3, "c": 2}, 7) == {"a": 4, "b": 2, "c": 1}


def test_stratified_sample_proportions() -> None:
    items = _items(SIZES)
    sample = stratified_sample(items, 20, seed=1)
    assert len(sample) == 20 and len({i.id for i in sample}) == 20
    assert Counter(i.stratum for i in sample) == {
        "algebra": 12,
        "geometry": 5,
        "number_theory": 2,
        "precalculus": 1,
    }


def test_stratified_sample_is_deterministic_and_seeded() -> None:
    items = _items(SIZES)
    a = stratified_sample(items, 30, seed=42)
    assert a == stratified_sample(items, 30, seed=42)
    assert a == stratified_sample(list(items), 30, seed=42)
    assert {i.id for i in a} != {i.id for i in stratified_sample(items, 30, seed=43)}
    # Random within strata, not the first items of each stratum.
    algebra = sorted(int(i.id.split("-")[1]) for i in a if i.stratum == "algebra")
    assert algebra != list(range(len(algebra)))


def test_stratified_sample_is_uniform_within_strata() -> None:
    items = _items({"a": 10, "b": 10})
    hits: Counter[str] = Counter()
    for seed in range(400):
        hits.update(i.id for i in stratified_sample(items, 4, seed))
    # Each item is drawn with probability 2/10: about 80 of 400 times.
    assert all(50 <= hits[i.id] <= 110 for i in items), hits


def test_n_at_least_len_returns_everything_in_seeded_order() -> None:
    items = _items(SIZES)
    for n in (100, 150):
        everything = stratified_sample(items, n, seed=5)
        assert sorted(i.id for i in everything) == sorted(i.id for i in items)
        assert everything == seeded_order(items, 5)
    assert stratified_sample(items, 0, seed=5) == []
    with pytest.raises(ValueError):
        stratified_sample(items, -1, seed=5)


def test_no_strata_is_a_simple_random_sample() -> None:
    items = [Item(str(i), "q", "a") for i in range(50)]
    sample = stratified_sample(items, 10, seed=7)
    assert len(sample) == 10
    assert [i.id for i in sample] != [str(i) for i in range(10)]


def test_seeded_order_prefixes_are_stratified() -> None:
    items = _items(SIZES)
    order = seeded_order(items, seed=11)
    assert sorted(i.id for i in order) == sorted(i.id for i in items)
    assert order == seeded_order(items, seed=11)
    assert order != seeded_order(items, seed=12)
    total = len(items)
    for m in range(1, total + 1):
        counts = Counter(i.stratum for i in order[:m])
        for stratum, size in SIZES.items():
            assert abs(counts[stratum] - m * size / total) <= 1.0 + 1e-9, (m, stratum)
