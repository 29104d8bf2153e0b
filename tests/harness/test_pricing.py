"""The price table and the cost calculator: hand-computed cases for every rule (PRICING.md §4–§6)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError, PricingMissing
from harness.pricing.cost import COMPONENTS, Price, Tier, Variant, cost, cost_breakdown, decimal_str
from harness.pricing.money import usd_to_nano
from harness.pricing.table import ENV_VAR, PriceTable
from harness.types import Usage

D = Decimal
M = 1_000_000


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may see the developer's own ~/.config/tollbench/prices.toml or $TOLLBENCH_PRICES."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return home


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(user_default=False)


def at(y: int, m: int, d: int, hh: int = 12) -> datetime:
    return datetime(y, m, d, hh, tzinfo=UTC)


# ------------------------------------------------------------------------------- coverage and data


# Every model the issue lists, by the ids and aliases users type.
REQUIRED = {
    "openai": [
        "o1", "o1-2024-12-17", "o1-mini", "o1-pro", "o3-mini", "o3-mini-2025-01-31", "o3", "o3-2025-04-16",
        "o4-mini", "gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "gpt-4o-2024-05-13", "gpt-4o-mini",
        "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-pro",
        "gpt-5.1", "gpt-5.2",
    ],
    "anthropic": [
        "claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219", "claude-sonnet-4-0",
        "claude-sonnet-4-20250514", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-opus-4-0",
        "claude-opus-4-20250514", "claude-opus-4-1", "claude-opus-4-1-20250805", "claude-3-5-haiku-latest",
        "claude-3-5-haiku-20241022", "claude-haiku-4-5", "claude-haiku-4-5-20251001",
    ],
}  # fmt: skip


@pytest.mark.parametrize(("provider", "model"), [(p, m) for p, models in REQUIRED.items() for m in models])
def test_every_issue_model_has_a_price_now(table: PriceTable, provider: str, model: str) -> None:
    assert table.has(provider, model)
    price = table.lookup(provider, model)
    assert price.provider == provider
    assert price.input > 0 and price.output > 0
    assert model == price.model or model in price.aliases


# Rows PRICING.md did not verify (single source, or genai-prices only); every other row was verified.
UNVERIFIED = {
    ("openai/o1-mini", date(2025, 1, 31)),  # launch price, cut date unverified (§1.7 #5)
    ("openai/o3", date(2025, 6, 10)),  # launch cached price unverified (§1.7 #4)
    ("openai/gpt-4.1-mini", None),
    ("openai/gpt-4.1-nano", None),
    ("deepseek/deepseek-chat", date(2025, 9, 29)),  # V3.1: DeepSeek's own page only
    ("deepseek/deepseek-reasoner", date(2025, 9, 29)),
    ("openrouter/deepseek/deepseek-r1", None),  # openrouter.ai via genai-prices only
    ("openrouter/openai/gpt-oss-120b", None),
    ("together/meta-llama/Llama-3.3-70B-Instruct-Turbo", None),  # together.ai via genai-prices only
    ("together/openai/gpt-oss-120b", None),
}

#: The days the bundled rows were checked (PRICING.md's research; the 2026-12 providers of issue 11).
VERIFIED_ON = {date(2026, 11, 28), date(2026, 12, 2)}


def test_every_row_has_provenance(table: PriceTable) -> None:
    unverified = set()
    for p in table.rows(history=True):
        assert p.source_url, p.key
        if p.verified_on is None:
            unverified.add((p.key, p.effective_to))
            assert any(k in p.notes for k in ("verified", "genai-prices only", "One source")) or (
                "genai-prices" in p.source_url and " via " in p.source_url
            ), p.key
        else:
            assert p.verified_on in VERIFIED_ON, p.key
    assert unverified == UNVERIFIED


def test_dated_snapshot_of_gpt4o_is_its_own_row(table: PriceTable) -> None:
    old = table.lookup("openai", "gpt-4o-2024-05-13")
    new = table.lookup("openai", "gpt-4o-2024-08-06")
    assert (old.model, old.input, old.output, old.cached_input) == ("gpt-4o-2024-05-13", D(5), D(15), None)
    assert (new.model, new.input, new.output) == ("gpt-4o", D("2.5"), D(10))


def test_lookup_is_exact_never_fuzzy(table: PriceTable) -> None:
    for near_miss in ("gpt-4o-2024-08", "GPT-4o", "gpt-4o ", "claude-sonnet-4-5-2025", "o3-mini-high"):
        assert not table.has("openai", near_miss)
    assert not table.has("anthropic", "gpt-4o")  # wrong provider


def test_unknown_model_error_names_the_fix(table: PriceTable) -> None:
    with pytest.raises(PricingMissing) as info:
        table.lookup("anthropic", "claude-foo")
    assert str(info.value) == (
        "No price for anthropic/claude-foo. Add one with --prices FILE (see docs/pricing.md) "
        "or to ~/.config/tollbench/prices.toml."
    )
    assert isinstance(info.value, ConfigError)  # the CLI's exit-2 family


def test_date_before_first_row_is_missing(table: PriceTable) -> None:
    with pytest.raises(PricingMissing, match=r"openai/o3 on 2025-01-01 .*2025-04-16") as info:
        table.lookup("openai", "o3", at(2025, 1, 1))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- §6 test vectors


VECTORS = [
    # (provider, model, when, usage, kwargs, expected USD)
    ("openai", "gpt-4o", None, Usage(input_uncached=600_000, cache_read=400_000, output=100_000), {}, "3.00"),
    ("openai", "gpt-4o", None, Usage(input_uncached=M, output=M), {"batch": True}, "6.25"),
    ("openai", "o3", at(2025, 5, 1), Usage(input_uncached=M, output=M), {}, "50.00"),
    ("openai", "o3", at(2025, 7, 1), Usage(input_uncached=M, output=M), {}, "10.00"),
    ("openai", "gpt-5", None, Usage(input_uncached=M, output=M), {"service_tier": "flex"}, "5.625"),
    (
        "anthropic",
        "claude-3-7-sonnet-20250219",
        None,
        Usage(
            input_uncached=10_000, cache_write_5m=5_000, cache_write_1h=2_000, cache_read=50_000, output=3_000
        ),
        {},
        "0.12075",
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        None,
        Usage(input_uncached=60_000, cache_read=150_000, output=1_000),
        {},
        "0.4725",
    ),
    ("anthropic", "claude-sonnet-4-0", None, Usage(input_uncached=300_000, output=10_000), {}, "2.025"),
    ("anthropic", "claude-sonnet-4-5", None, Usage(input_uncached=300_000, output=10_000), {}, "2.025"),
]


@pytest.mark.parametrize(("provider", "model", "when", "usage", "kwargs", "expected"), VECTORS)
def test_pricing_md_vectors(
    table: PriceTable,
    provider: str,
    model: str,
    when: datetime | None,
    usage: Usage,
    kwargs: dict[str, object],
    expected: str,
) -> None:
    price = table.lookup(provider, model, when)
    assert price.cost(usage, **kwargs) == D(expected)  # type: ignore[arg-type]
    assert cost(price, usage, **kwargs) == D(expected)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- one rule at a time


def test_components_are_disjoint_and_priced_separately(table: PriceTable) -> None:
    haiku = table.lookup("anthropic", "claude-haiku-4-5")  # 1.00 in, 0.10 read, 1.25 5m, 2.00 1h, 5.00 out
    assert haiku.cost(Usage(input_uncached=M)) == D("1.00")
    assert haiku.cost(Usage(cache_read=M)) == D("0.10")
    assert haiku.cost(Usage(cache_write_5m=M)) == D("1.25")
    assert haiku.cost(Usage(cache_write_1h=M)) == D("2.00")
    assert haiku.cost(Usage(output=M)) == D("5.00")
    usage = Usage(input_uncached=1234, cache_read=5678, cache_write_5m=910, cache_write_1h=1112, output=1314)
    parts = haiku.cost_breakdown(usage)
    assert list(parts) == list(COMPONENTS)
    assert parts == {
        "input_uncached": D("0.001234"),
        "cache_read": D("0.0005678"),
        "cache_write_5m": D("0.0011375"),
        "cache_write_1h": D("0.002224"),
        "output": D("0.00657"),
    }
    assert sum(parts.values()) == haiku.cost(usage) == D("0.0117333")


def test_reasoning_is_inside_output_at_the_output_rate(table: PriceTable) -> None:
    o3mini = table.lookup("openai", "o3-mini")
    with_reasoning = Usage(input_uncached=1000, output=5000, reasoning=4500)
    assert o3mini.cost(with_reasoning) == o3mini.cost(Usage(input_uncached=1000, output=5000))
    assert o3mini.cost(with_reasoning) == D("0.0011") + D("0.022")
    with pytest.raises(ValueError, match="reasoning"):
        o3mini.cost(Usage(output=10, reasoning=11))
    with pytest.raises(ValueError, match="negative"):
        o3mini.cost(Usage(input_uncached=-1))


def test_missing_cache_prices_mean_no_discount(table: PriceTable) -> None:
    old = table.lookup("openai", "gpt-4o-2024-05-13")  # no cached_input: cached tokens at input ($5)
    assert old.cost(Usage(cache_read=M)) == D("5.00")
    pro = table.lookup("openai", "gpt-5-pro")
    assert pro.cost(Usage(cache_read=M, output=M)) == D("135.00")
    gpt4o = table.lookup("openai", "gpt-4o")  # OpenAI bills no cache writes: at input
    assert gpt4o.cost(Usage(cache_write_5m=M, cache_write_1h=M)) == D("5.00")
    rates = gpt4o.unit_prices(0)
    assert (rates.cached_input, rates.cache_write_5m, rates.cache_write_1h) == (D("1.25"), D("2.5"), D("2.5"))


def test_long_context_cliff_is_strictly_above_200k(table: PriceTable) -> None:
    s45 = table.lookup("anthropic", "claude-sonnet-4-5")
    exact = Usage(input_uncached=150_000, cache_read=50_000, output=1_000)  # exactly 200,000: base
    assert exact.input_total == 200_000
    assert s45.cost(exact) == D("0.45") + D("0.015") + D("0.015")
    over = Usage(input_uncached=150_001, cache_read=50_000, output=1_000)  # 200,001: all tokens tiered
    assert s45.cost_breakdown(over) == {
        "input_uncached": D("0.900006"),  # 150,001 x $6
        "cache_read": D("0.03"),  # 50,000 x $0.60
        "cache_write_5m": D(0),
        "cache_write_1h": D(0),
        "output": D("0.0225"),  # 1,000 x $22.50
    }
    # Cache writes count toward the threshold and move to the tier too.
    writes = Usage(input_uncached=100_000, cache_write_5m=50_001, cache_write_1h=50_000)
    assert s45.cost(writes) == D("0.6") + D("0.3750075") + D("0.6")
    # Sonnet 4 (1M beta) has the same tier; genai-prices 0.2.3 does not (PRICING.md §1.7 #1).
    s4 = table.lookup("anthropic", "claude-sonnet-4-20250514")
    assert s4.cost(Usage(input_uncached=200_000)) == D("0.60")
    assert s4.cost(Usage(input_uncached=200_001)) == D("1.200006")


def test_models_without_tiers_never_cliff(table: PriceTable) -> None:
    gpt41 = table.lookup("openai", "gpt-4.1")
    assert gpt41.cost(Usage(input_uncached=900_000, output=M)) == D("1.8") + D("8")


def test_anthropic_batch_halves_everything_and_stacks(table: PriceTable) -> None:
    s45 = table.lookup("anthropic", "claude-sonnet-4-5")
    usage = Usage(
        input_uncached=10_000, cache_read=20_000, cache_write_5m=4_000, cache_write_1h=2_000, output=1_000
    )
    full = s45.cost(usage)
    assert full == D("0.03") + D("0.006") + D("0.015") + D("0.012") + D("0.015")
    assert s45.cost(usage, batch=True) == full / 2
    # The batch discount stacks with the tier: 300k in / 10k out at $3 / $11.25.
    assert s45.cost(Usage(input_uncached=300_000, output=10_000), batch=True) == D("1.0125")
    # Anthropic echoes service_tier "batch" inside message batches.
    assert s45.cost(usage, service_tier="batch") == full / 2
    rates = s45.unit_prices(0, batch=True)
    assert rates.to_dict() == {
        "input": "1.5",
        "cached_input": "0.15",
        "cache_write_5m": "1.875",
        "cache_write_1h": "3",
        "output": "7.5",
    }


def test_openai_batch_keeps_the_standard_cached_rate(table: PriceTable) -> None:
    gpt4o = table.lookup("openai", "gpt-4o")
    usage = Usage(input_uncached=600_000, cache_read=400_000, output=100_000)
    assert gpt4o.cost(usage, batch=True) == D("0.75") + D("0.5") + D("0.5")
    gpt5 = table.lookup("openai", "gpt-5")  # the gpt-5 family has a batch cached rate
    assert gpt5.cost(Usage(cache_read=M), batch=True) == D("0.0625")
    # o1-mini has no batch variant: batch prices at base.
    o1mini = table.lookup("openai", "o1-mini")
    assert o1mini.cost(Usage(input_uncached=M, output=M), batch=True) == D("5.50")


@pytest.mark.parametrize("tier", [None, "default", "standard", "auto", "DEFAULT", " ", "scale"])
def test_base_service_tiers(table: PriceTable, tier: str | None) -> None:
    gpt5 = table.lookup("openai", "gpt-5")
    assert gpt5.cost(Usage(input_uncached=M, output=M), service_tier=tier) == D("11.25")


def test_flex_and_priority(table: PriceTable) -> None:
    one = Usage(input_uncached=M, cache_read=M, output=M)
    gpt5 = table.lookup("openai", "gpt-5")
    assert gpt5.cost(one, service_tier="flex") == D("0.625") + D("0.0625") + D("5")
    assert gpt5.cost(one, service_tier="priority") == D("2.5") + D("0.25") + D("20")
    o3 = table.lookup("openai", "o3")
    assert o3.cost(one, service_tier="flex") == D("1") + D("0.25") + D("4")
    # batch wins over a service tier.
    assert gpt5.cost(one, service_tier="priority", batch=True) == gpt5.cost(one, service_tier="flex")
    # A row without the variant prices at base (gpt-5-pro has no flex; Anthropic has no flex/priority).
    pro = table.lookup("openai", "gpt-5-pro")
    assert pro.cost(one, service_tier="flex") == pro.cost(one)
    haiku = table.lookup("anthropic", "claude-haiku-4-5")
    assert haiku.cost(one, service_tier="priority") == haiku.cost(one)


def test_effective_dates_switch_at_utc_midnight(table: PriceTable) -> None:
    one = Usage(input_uncached=M, cache_read=M, output=M)
    before = table.lookup("openai", "o3", datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC))
    after = table.lookup("openai", "o3", datetime(2025, 6, 10, 0, 0, tzinfo=UTC))
    assert before.cost(one) == D("10") + D("2.5") + D("40")
    assert after.cost(one) == D("2") + D("0.5") + D("8")
    assert before.id != after.id
    # 01:00 at UTC+2 on the 10th is still the 9th in UTC; a naive datetime is taken as UTC.
    plus2 = timezone(timedelta(hours=2))
    assert table.lookup("openai", "o3", datetime(2025, 6, 10, 1, 0, tzinfo=plus2)) == before
    assert table.lookup("openai", "o3", datetime(2025, 6, 10, 0, 30)) == after
    assert table.lookup("openai", "o3") == after  # now
    # o1-mini launch price until 2025-01-31 (PRICING.md §1.7 #5).
    assert table.lookup("openai", "o1-mini", at(2025, 1, 30)).input == D("3.00")
    assert table.lookup("openai", "o1-mini", at(2025, 1, 31)).input == D("1.10")


# ------------------------------------------------------------------------------- rows, ids, listing


def test_row_id_is_a_stable_content_hash(table: PriceTable) -> None:
    p = table.lookup("openai", "gpt-4o")
    assert len(p.id) == 64 and p.id == table.lookup("openai", "gpt-4o-2024-11-20").id
    assert Price.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert Price.from_dict(p.to_dict()).id == p.id
    # Trailing zeros do not matter; a changed price does.
    same = Price(provider="x", model="m", input=D("2.50"), output=D("10"))
    assert same.id == Price(provider="x", model="m", input=D("2.5"), output=D("10.000")).id
    assert same.id != Price(provider="x", model="m", input=D("2.51"), output=D("10")).id
    assert decimal_str(D("1E+1")) == "10" and decimal_str(D("0.000")) == "0"
    d = p.to_dict()
    assert d["input"] == "2.5" and d["variants"]["batch"]["input"] == "1.25"
    json.dumps(d)  # JSON-able


def test_rows_and_find(table: PriceTable) -> None:
    now_rows = table.rows()
    assert len({p.key for p in now_rows}) == len(now_rows)  # one row per model in effect now
    history = table.rows(history=True)
    # o3 and o1-mini launch prices; DeepSeek's R1/V3 and V3.1 rows of both its models
    assert len(history) == len(now_rows) + 6
    assert [p.input for p in table.rows(at(2025, 5, 1)) if p.model == "o3"] == [D("10.00")]
    sonnets = {p.model for p in table.find("sonnet")}
    assert {"claude-3-7-sonnet-latest", "claude-sonnet-4-0", "claude-sonnet-4-5"} <= sonnets
    assert [p.model for p in table.find("anthropic/20250929")] == ["claude-sonnet-4-5"]  # via an alias
    gpt5 = {p.model for p in table.find("openai/gpt-5")}
    assert gpt5 == {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-pro", "gpt-5.1", "gpt-5.2"}
    assert table.find("anthropic/gpt-5") == []
    assert len(table.find("o3", history=True)) == len(table.find("o3")) + 1
    assert table.providers() == [
        "anthropic", "deepseek", "google", "openai", "openrouter", "together", "xai"
    ]  # fmt: skip


# ------------------------------------------------------------------------------- worst case


def test_worst_case_hand_computed(table: PriceTable) -> None:
    gpt4o = table.lookup("openai", "gpt-4o")
    # The provider may report priority for a request that asked for nothing ($4.25 in / $17 out).
    assert gpt4o.worst_case(10_000, 1_000) == D("0.0425") + D("0.017")
    assert gpt4o.worst_case(10_000, 1_000, reported_tiers=()) == D("0.025") + D("0.01")
    s45 = table.lookup("anthropic", "claude-sonnet-4-5")
    # Up to 200k the bound stays in the base tier, at the 1h-write rate ($6 = 2x input).
    assert s45.worst_case(200_000, 1_000) == D("1.2") + D("0.015")
    # Above it the tier is reachable: $12 (tier 1h write) and $22.50 out.
    assert s45.worst_case(300_000, 10_000) == D("3.6") + D("0.225")
    assert s45.worst_case(300_000, 10_000, batch=True) == D("1.8") + D("0.1125")
    assert gpt4o.worst_case(0, 0) == 0
    with pytest.raises(ValueError):
        gpt4o.worst_case(-1, 0)


def test_worst_case_covers_a_prompt_written_to_the_1h_cache(table: PriceTable) -> None:
    opus = table.lookup("anthropic", "claude-opus-4-1")
    bound = opus.worst_case(50_000, 2_000)
    assert opus.cost(Usage(cache_write_1h=50_000, output=2_000)) == bound
    # The naive formula (input price) would be below the real cost.
    assert 50_000 * opus.input / M + 2_000 * opus.output / M < bound


_ALL_ROWS = PriceTable.load(user_default=False, bundled=True).rows(history=True)
_MODES = [(None, False), ("flex", False), ("priority", False), (None, True)]


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    row=st.sampled_from(_ALL_ROWS),
    mode=st.sampled_from(_MODES),
    input_ub=st.integers(0, 1_200_000),
    max_out=st.integers(0, 200_000),
    data=st.data(),
)
def test_worst_case_bounds_every_usage_within_the_limits(
    row: Price, mode: tuple[str | None, bool], input_ub: int, max_out: int, data: st.DataObject
) -> None:
    service_tier, batch = mode
    total = data.draw(st.integers(0, input_ub), label="input_total")
    read = data.draw(st.integers(0, total), label="cache_read")
    w5 = data.draw(st.integers(0, total - read), label="cache_write_5m")
    w1 = data.draw(st.integers(0, total - read - w5), label="cache_write_1h")
    out = data.draw(st.integers(0, max_out), label="output")
    reasoning = data.draw(st.integers(0, out), label="reasoning")
    usage = Usage(
        input_uncached=total - read - w5 - w1,
        cache_read=read,
        cache_write_5m=w5,
        cache_write_1h=w1,
        output=out,
        reasoning=reasoning,
    )
    bound = row.worst_case(input_ub, max_out, service_tier=service_tier, batch=batch)
    actual = row.cost(usage, service_tier=service_tier, batch=batch)
    assert actual <= bound
    assert usd_to_nano(actual) <= usd_to_nano(bound)


def test_worst_case_survives_a_tier_cheaper_than_base() -> None:
    # A (hypothetical) volume discount above 100k: the bound must still cover a 100k prompt at base.
    odd = Price(
        provider="x",
        model="m",
        input=D("4"),
        output=D("4"),
        tiers=(Tier(threshold=100_000, input=D("1"), output=D("1")),),
    )
    assert odd.worst_case(150_000, 0) >= odd.cost(Usage(input_uncached=100_000))


# ------------------------------------------------------------------------------- the pure function


def test_cost_is_pure_and_exact() -> None:
    p = Price(
        provider="x",
        model="m",
        input=D("0.1"),
        output=D("0.3"),
        variants={"batch": Variant(multiplier=D("0.5"))},
    )
    u = Usage(input_uncached=3, output=7)
    # 3 x 0.1 + 7 x 0.3 = 2.4 per million, exactly (no binary float drift).
    assert cost(p, u) == D("0.0000024")
    assert cost(p, u) == cost(p, u) == p.cost(u)
    assert cost_breakdown(p, u, batch=True) == {
        "input_uncached": D("0.00000015"),
        "cache_read": D(0),
        "cache_write_5m": D(0),
        "cache_write_1h": D(0),
        "output": D("0.00000105"),
    }
    huge = Usage(input_uncached=10**15, output=10**15 - 1)
    assert cost(p, huge) == D("399999999.9999997")


def test_variant_overrides_apply_after_the_multiplier() -> None:
    p = Price(
        provider="x",
        model="m",
        input=D("10"),
        cached_input=D("1"),
        output=D("20"),
        tiers=(Tier(threshold=10, input=D("100"), output=D("200")),),
        variants={
            "flex": Variant(multiplier=D("0.5"), output=D("3")),
            "priority": Variant(input=D("30"), tiers=()),
        },
    )
    small = Usage(input_uncached=1, cache_read=1, output=1)
    assert p.unit_prices(2, service_tier="flex").to_dict() == {
        "input": "5",
        "cached_input": "0.5",
        "cache_write_5m": "5",
        "cache_write_1h": "5",
        "output": "3",
    }
    assert p.unit_prices(11, service_tier="flex").input == D("50")  # tiers scaled too
    assert p.unit_prices(11, service_tier="flex").cached_input == D("50")  # tier has no cached price
    assert p.unit_prices(11, service_tier="priority").input == D("30")  # tiers replaced by none
    assert p.cost(small, service_tier="priority") == D("51") / M
