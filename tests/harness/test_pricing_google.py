"""The Gemini rows of the bundled price table: PRICING.md §6 test vectors and the >200k tier rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from harness.pricing.table import PriceTable
from harness.types import Usage


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(user_default=False)


def _cost(table: PriceTable, model: str, usage: Usage) -> Decimal:
    return table.lookup("google", model).cost(usage)


@pytest.mark.parametrize(
    ("prompt", "output", "expected"),
    [
        (150_000, 10_000, "0.2875"),  # 150k * 1.25 + 10k * 10
        (250_000, 10_000, "0.775"),  # > 200k: every token at 2.50 / 15
        (200_000, 0, "0.25"),  # exactly 200k stays at the base price (strictly more moves)
        (200_001, 0, "0.5000025"),
    ],
)
def test_gemini_2_5_pro_vectors(table: PriceTable, prompt: int, output: int, expected: str) -> None:
    assert _cost(table, "gemini-2.5-pro", Usage(input_uncached=prompt, output=output)) == Decimal(expected)


def test_cache_reads_count_towards_the_tier_and_are_priced_per_tier(table: PriceTable) -> None:
    # 60k fresh + 150k implicit cache hits = a 210k prompt: the tier's prices for all of it.
    u = Usage(input_uncached=60_000, cache_read=150_000, output=1_000, reasoning=400)
    assert _cost(table, "gemini-2.5-pro", u) == Decimal("0.15") + Decimal("0.0375") + Decimal("0.015")
    small = Usage(input_uncached=1_000, cache_read=9_000, output=100)
    expected = Decimal("0.00125") + Decimal("0.001125") + Decimal("0.001")
    assert _cost(table, "gemini-2.5-pro", small) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-2.5-flash", "2.80"),
        ("gemini-2.5-flash-lite", "0.50"),
        ("gemini-3-flash-preview", "3.50"),
        ("gemini-3.1-pro-preview", "14.00"),
        ("gemini-3-pro-preview", "14.00"),
    ],
)
def test_one_million_in_one_million_out(table: PriceTable, model: str, expected: str) -> None:
    # 1M prompt tokens would be in the >200k tier where there is one: use 200k x 5 requests' worth.
    per = Usage(input_uncached=200_000, output=200_000)
    assert _cost(table, model, per) * 5 == Decimal(expected)


def test_gemini_3_pro_long_context_tier(table: PriceTable) -> None:
    u = Usage(input_uncached=300_000, output=10_000)
    assert _cost(table, "gemini-3.1-pro-preview", u) == Decimal("1.2") + Decimal("0.18")
    assert table.lookup("google", "gemini-3.1-pro-preview-customtools").model == "gemini-3.1-pro-preview"


def test_flash_has_no_long_context_tier(table: PriceTable) -> None:
    u = Usage(input_uncached=300_000, output=10_000)
    assert _cost(table, "gemini-2.5-flash", u) == Decimal("0.09") + Decimal("0.025")


def test_batch_halves_input_and_output_but_not_cache_reads(table: PriceTable) -> None:
    row = table.lookup("google", "gemini-2.5-flash")
    u = Usage(input_uncached=1_000_000, cache_read=1_000_000, output=1_000_000)
    assert row.cost(u, batch=True) == Decimal("0.15") + Decimal("0.03") + Decimal("1.25")
