"""Cross-check of the bundled price table against genai-prices 0.2.3 (PRICING.md §7, point 4).

For every model row of ours (each id and alias), a fixed matrix of usages, timestamps and processing
modes is priced by both calculators. They must agree exactly, except where an entry of
:data:`KNOWN_DIFFERENCES` explains the gap (PRICING.md §1.7). Every entry must still be needed, so
the list cannot silently rot when the oracle is bumped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from harness.pricing.table import Price, PriceTable
from harness.types import Usage

genai_prices: Any = pytest.importorskip(
    "genai_prices",
    reason="genai-prices (the dev-only price oracle) is not installed: pip install -e '.[test]'",
)
ORACLE_VERSION = "0.2.3"
if genai_prices.__version__ != ORACLE_VERSION:  # pragma: no cover - depends on the environment
    pytest.skip(
        f"the allow-list is written for genai-prices {ORACLE_VERSION}, found {genai_prices.__version__}",
        allow_module_level=True,
    )

USAGES = {
    "plain_1M": Usage(input_uncached=1_000_000, output=1_000_000),
    "cache_mix": Usage(
        input_uncached=10_000,
        cache_read=50_000,
        cache_write_5m=5_000,
        cache_write_1h=2_000,
        output=3_000,
        reasoning=1_000,
    ),
    "cache_read": Usage(input_uncached=20_000, cache_read=80_000, output=5_000, reasoning=4_000),
    "tier_by_cache": Usage(input_uncached=60_000, cache_read=150_000, output=1_000),
    "exactly_200k": Usage(input_uncached=200_000),
    "long_300k": Usage(input_uncached=300_000, output=10_000),
}
TIMES = [
    datetime(2025, 1, 15, tzinfo=UTC),
    datetime(2025, 5, 1, tzinfo=UTC),
    datetime(2025, 5, 1, 12, tzinfo=UTC),  # inside DeepSeek's standard window (00:30-16:30 UTC)
    datetime(2025, 7, 1, tzinfo=UTC),
]
TIMES.append(datetime(2026, 11, 20, tzinfo=UTC))  # after genai-prices' 2026-10-12/14 variant gates
MODES: dict[str, tuple[str | None, bool, dict[str, str] | None]] = {
    "base": (None, False, None),
    "batch": (None, True, {"processing": "batch"}),
    "flex": ("flex", False, {"service_tier": "flex"}),
    "priority": ("priority", False, {"service_tier": "priority"}),
}


@dataclass(frozen=True)
class Case:
    row: Price
    name: str
    when: datetime
    usage_name: str
    mode: str

    @property
    def usage(self) -> Usage:
        return USAGES[self.usage_name]


#: genai-prices' provider ids where they differ from ours.
ORACLE_PROVIDER = {"xai": "x-ai"}


@dataclass(frozen=True)
class KnownDifference:
    reason: str
    applies: Callable[[Case], bool]


# Batch variants genai-prices 0.2.3 leaves out entirely: it models batch only for the models in
# Anthropic's / OpenAI's batch tables as of 2026-10-14, and these were retired by then.
_NO_ORACLE_BATCH = {
    "anthropic/claude-3-opus-latest",
    "anthropic/claude-3-5-sonnet-latest",
    "anthropic/claude-3-7-sonnet-latest",
    "anthropic/claude-sonnet-4-0",
    "anthropic/claude-opus-4-0",
    "anthropic/claude-opus-4-1",
    "anthropic/claude-3-5-haiku-latest",
    "openai/gpt-4.5-preview",
    "google/gemini-3-pro-preview",  # shut down 2026-03-09
}

KNOWN_DIFFERENCES: dict[str, KnownDifference] = {
    "sonnet-4-long-context": KnownDifference(
        "genai-prices lacks Sonnet 4's >200k tier ($6/$22.50, 1M beta); PRICING.md §1.7 #1",
        lambda c: c.row.key == "anthropic/claude-sonnet-4-0" and c.usage.input_total > 200_000,
    ),
    "batch-gated-2026-10-14": KnownDifference(
        "genai-prices gates every batch variant at 2026-10-14, though batch was 50% long before; §1.7 #2",
        lambda c: c.mode == "batch" and c.when.date() < date(2026, 10, 14),
    ),
    "service-tier-gated-2026-10-12": KnownDifference(
        "genai-prices gates flex/priority variants at 2026-10-12 (its verification date)",
        lambda c: c.mode in ("flex", "priority") and c.when.date() < date(2026, 10, 12),
    ),
    "batch-of-retired-models": KnownDifference(
        "genai-prices has no batch variant for models retired before 2026-10-14; batch was 50% for them",
        lambda c: c.mode == "batch" and c.row.key in _NO_ORACLE_BATCH,
    ),
    "o3-cached-before-cut": KnownDifference(
        "o3 cached input before 2025-06-10 is $2.50 (25% of $10), genai-prices says $0.50; §1.7 #4",
        lambda c: c.row.key == "openai/o3" and c.when.date() < date(2025, 6, 10) and c.usage.cache_read > 0,
    ),
    "deepseek-off-peak-not-modelled": KnownDifference(
        "genai-prices prices DeepSeek's 2025 off-peak window (UTC 16:30-00:30, 50-75% off); ours meters "
        "the standard price, an upper bound (harness/data/prices/deepseek.toml)",
        lambda c: (
            c.row.provider == "deepseek"
            and c.when.date() < date(2025, 9, 5)
            and not (0 <= c.when.hour * 60 + c.when.minute - 30 < 16 * 60)
        ),
    ),
    "deepseek-v3.1-and-v3.2": KnownDifference(
        "genai-prices models only DeepSeek's first two price rows (PRICING.md §4.4): not V3.1 (from "
        "2025-09-05) nor V3.2",
        lambda c: c.row.provider == "deepseek" and c.when.date() >= date(2025, 9, 5),
    ),
    "o1-mini-launch-price": KnownDifference(
        "o1-mini cost $3/$1.50/$12 until its cut (2025-01-31, unverified); genai-prices has no history "
        "(§1.7 #5)",
        lambda c: c.row.key == "openai/o1-mini" and c.when.date() < date(2025, 1, 31),
    ),
}


def oracle(case: Case) -> Decimal | str:
    u = case.usage
    usage = genai_prices.Usage(
        input_tokens=u.input_total,  # genai-prices' input is the whole prompt, cache included
        cache_read_tokens=u.cache_read,
        cache_write_tokens=u.cache_write,
        cache_write_1h_tokens=u.cache_write_1h,
        output_tokens=u.output,
        output_reasoning_tokens=u.reasoning,
    )
    try:
        result = genai_prices.calc_price(
            usage,
            case.name,
            provider_id=ORACLE_PROVIDER.get(case.row.provider, case.row.provider),
            genai_request_timestamp=case.when,
            price_context=MODES[case.mode][2],
        )
    except LookupError as exc:
        return f"genai-prices cannot price it: {exc}"
    total = result.total_price
    assert isinstance(total, Decimal)
    return total


def ours(case: Case) -> Decimal:
    tier, batch, _ = MODES[case.mode]
    return case.row.cost(case.usage, service_tier=tier, batch=batch)


@dataclass
class Outcome:
    compared: int
    agreed: int
    explained: Counter[str]
    unexplained: list[str]
    base_compared: int = 0
    base_agreed: int = 0


def _cases(row: Price) -> list[Case]:
    return [
        Case(row, name, when, usage_name, mode)
        for name in (row.model, *row.aliases)
        for when in TIMES
        if row.applies_on(when.date())
        for usage_name in USAGES
        for mode in MODES
    ]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    table = PriceTable.load(user_default=False)
    results: dict[str, Outcome] = {}
    for row in table.rows(history=True):
        outcome = results.setdefault(row.key, Outcome(0, 0, Counter(), []))
        for case in _cases(row):
            outcome.compared += 1
            mine, theirs = ours(case), oracle(case)
            outcome.base_compared += case.mode == "base"
            if mine == theirs:
                outcome.agreed += 1
                outcome.base_agreed += case.mode == "base"
                continue
            reasons = [key for key, known in KNOWN_DIFFERENCES.items() if known.applies(case)]
            if reasons and isinstance(theirs, Decimal):
                outcome.explained.update(reasons[:1])
            else:
                outcome.unexplained.append(
                    f"{case.row.provider}/{case.name} at {case.when.date()} {case.mode} {case.usage_name}: "
                    f"ours {mine} vs genai-prices {theirs}"
                )
    return results


MODEL_KEYS = sorted({row.key for row in PriceTable.load(user_default=False, bundled=True).rows(history=True)})


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_agrees_with_genai_prices_except_known_differences(outcomes: dict[str, Outcome], key: str) -> None:
    outcome = outcomes[key]
    assert outcome.compared > 0
    assert not outcome.unexplained, "\n".join(outcome.unexplained[:20])
    # Plain requests at the present price must always agree: differences are only the §1.7 corners.
    assert outcome.agreed > 0


def test_every_known_difference_is_still_needed(outcomes: dict[str, Outcome]) -> None:
    used: Counter[str] = Counter()
    for outcome in outcomes.values():
        used.update(outcome.explained)
    unused = sorted(set(KNOWN_DIFFERENCES) - set(used))
    assert not unused, f"allow-list entries no longer needed (genai-prices fixed them?): {unused}"


def test_matrix_size(outcomes: dict[str, Outcome]) -> None:
    compared = sum(o.compared for o in outcomes.values())
    agreed = sum(o.agreed for o in outcomes.values())
    assert compared >= 4_000
    # Most gaps are genai-prices' 2026-10 gates on variants; at the standard price almost all agree.
    assert agreed / compared > 0.6
    base_compared = sum(o.base_compared for o in outcomes.values())
    base_agreed = sum(o.base_agreed for o in outcomes.values())
    assert base_agreed / base_compared > 0.95
