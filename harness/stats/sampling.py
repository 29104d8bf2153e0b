"""Seeded, stratified subsets of a suite's items (``--limit N``) and a seeded item order.

``--limit N`` must not mean "the first N": datasets are sorted by subject or year, so a prefix is a
biased sample. :func:`stratified_sample` draws ``N`` items with proportional allocation across the
items' strata (largest-remainder rounding) and a seeded random choice within each stratum.
:func:`seeded_order` orders all items so that every prefix is close to proportional across strata,
which is what sequential (budget-aware) sampling needs.

Everything here is a pure function of ``(items, n, seed)``: the same call always returns the same
items in the same order, on every platform (``random.Random`` with an integer seed is stable across
Python versions).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from harness.suite import Item

__all__ = ["allocate", "seeded_order", "stratified_sample"]


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator seeded from ``seed`` and a few labels (stable, unlike ``hash()``)."""
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _strata(items: Sequence[Item]) -> dict[str, list[int]]:
    """Item positions by stratum, strata sorted by name (so input order of strata does not matter)."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.stratum, []).append(i)
    return {k: groups[k] for k in sorted(groups)}


def allocate(sizes: dict[str, int], n: int, seed: int = 0) -> dict[str, int]:
    """Proportional allocation of ``n`` draws across strata by the largest-remainder method.

    Each stratum gets ``floor(n * size / total)``; the draws left over go to the strata with the
    largest fractional remainders (ties broken by a seeded shuffle). No stratum gets more than its
    size.

    Args:
        sizes: Items per stratum.
        n: Total draws, ``0 <= n <= sum(sizes)``.
        seed: Breaks ties between equal remainders.

    Returns:
        Draws per stratum, summing to ``n``.
    """
    total = sum(sizes.values())
    if not 0 <= n <= total:
        raise ValueError(f"cannot allocate {n} draws over {total} items")
    if total == 0:
        return dict.fromkeys(sizes, 0)
    alloc = {k: (n * s) // total for k, s in sizes.items()}
    left = n - sum(alloc.values())
    names = list(sizes)
    _rng(seed, "allocate").shuffle(names)
    # Remainder n*s mod total, compared exactly in integers.
    names.sort(key=lambda k: (n * sizes[k]) % total, reverse=True)
    for k in names:
        if left == 0:
            break
        if alloc[k] < sizes[k]:
            alloc[k] += 1
            left -= 1
    return alloc


def _order_positions(items: Sequence[Item], seed: int) -> list[int]:
    """Positions of ``items`` in the order :func:`seeded_order` returns them."""
    keyed: list[tuple[float, float, int]] = []
    for stratum, positions in _strata(items).items():
        rng = _rng(seed, "order", stratum)
        shuffled = positions[:]
        rng.shuffle(shuffled)
        size = len(shuffled)
        offset = rng.random()
        for j, pos in enumerate(shuffled):
            keyed.append(((j + offset) / size, rng.random(), pos))
    keyed.sort()
    return [pos for _, _, pos in keyed]


def seeded_order(items: Sequence[Item], seed: int) -> list[Item]:
    """All items in a random, stratified, interleaved order.

    Items are shuffled within each stratum; then the ``j``-th item (0-based) of a stratum of size
    ``s`` is placed at position key ``(j + u) / s`` with a seeded ``u`` in [0, 1) per stratum, and
    all items are sorted by key. Every prefix of the result therefore holds each stratum in close to
    its proportion (within one item), which lets a run stop early and still have a stratified sample.

    Args:
        items: The suite's items.
        seed: The run's seed.

    Returns:
        A new list with every item exactly once.
    """
    return [items[pos] for pos in _order_positions(items, seed)]


def stratified_sample(items: Sequence[Item], n: int, seed: int) -> list[Item]:
    """A seeded, stratified random sample of ``n`` items.

    Allocation across strata is proportional (largest remainder, see :func:`allocate`); within a
    stratum the items are drawn uniformly at random. The result is returned in the order of
    :func:`seeded_order` for the same seed. With ``n >= len(items)`` every item is returned (in that
    seeded order).

    Args:
        items: The suite's items (``Item.stratum`` groups them; empty stratum = one group).
        n: How many items to draw (``--limit``); must not be negative.
        seed: The run's seed.

    Returns:
        The sampled items.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    order = _order_positions(items, seed)
    if n >= len(items):
        return [items[pos] for pos in order]
    strata = _strata(items)
    alloc = allocate({k: len(v) for k, v in strata.items()}, n, seed)
    chosen: set[int] = set()
    for stratum, positions in strata.items():
        chosen.update(_rng(seed, "sample", stratum).sample(positions, alloc[stratum]))
    return [items[pos] for pos in order if pos in chosen]
