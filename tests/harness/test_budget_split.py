"""Splitting a budget across models, and leftover share flowing to the models still running."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.budget.split import ShareLedger, parse_split, split_budget
from harness.errors import ConfigError

MODELS = ["openai/o4-mini", "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"]


def test_equal_split_sums_exactly() -> None:
    shares = split_budget(10_000_000_001, MODELS)
    assert sum(shares.values()) == 10_000_000_001
    assert max(shares.values()) - min(shares.values()) <= 1
    assert list(shares) == MODELS


def test_named_fractions_and_the_rest_shared() -> None:
    split = parse_split("o4-mini=0.5,anthropic/claude-haiku-4-5=25%", MODELS)
    assert split == {"openai/o4-mini": Decimal("0.5"), "anthropic/claude-haiku-4-5": Decimal("0.25")}
    shares = split_budget(1000, MODELS, split)
    assert shares == {"openai/o4-mini": 500, "anthropic/claude-haiku-4-5": 250, "openai/gpt-4o-mini": 250}


def test_all_named_rounding_goes_to_the_first_models() -> None:
    split = parse_split("o4-mini=0.3333,claude-haiku-4-5=0.3333,gpt-4o-mini=0.3334", MODELS)
    shares = split_budget(10, MODELS, split)
    assert sum(shares.values()) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "MODEL=FRACTION pairs"),
        ("o4-mini", "is not MODEL=FRACTION"),
        ("o5=0.5", "is not one of the run's models"),
        ("o4-mini=abc", "not a fraction"),
        ("o4-mini=0", r"must be in \(0, 1\]"),
        ("o4-mini=1.5", r"must be in \(0, 1\]"),
        ("o4-mini=0.7,gpt-4o-mini=0.7", "more than 1"),
        ("o4-mini=0.2,o4-mini=0.2", "named twice"),
        ("o4-mini=0.2,claude-haiku-4-5=0.2,gpt-4o-mini=0.2", "must sum to 1"),
    ],
)
def test_split_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_split(text, MODELS)


def test_ambiguous_short_name() -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        parse_split("x=0.5", ["openai/x", "openai-responses/x"])


def test_model_stops_at_its_share_without_starving_others() -> None:
    ledger = ShareLedger(split_budget(300, ["a", "b", "c"]))
    assert ledger.reserve("a", 80)
    assert not ledger.reserve("a", 30)  # a's share is 100
    assert ledger.reserve("b", 100)
    assert ledger.reserve("c", 50)


def test_leftover_flows_to_models_still_running() -> None:
    ledger = ShareLedger({"a": 100, "b": 100, "c": 200})
    assert ledger.reserve("a", 60)
    ledger.settle("a", 60, 40)
    assert ledger.finish("a") == 60
    # Split 1:2 between b and c by their original shares.
    assert ledger.allowance("b") == 120 and ledger.allowance("c") == 240
    assert ledger.available("a") == 0 and not ledger.reserve("a", 1)
    assert ledger.reserve("b", 120)
    assert ledger.running() == ["b", "c"]


def test_late_settlement_of_a_finished_model_flows_too() -> None:
    ledger = ShareLedger({"a": 100, "b": 100})
    assert ledger.reserve("a", 90)
    assert ledger.finish("a") == 10  # stopped with a call in flight
    ledger.settle("a", 90, 30)  # the call cost less than reserved: 60 more for b
    assert ledger.allowance("b") == 170
    assert ledger.allowance("a") + ledger.allowance("b") == 200


def test_no_taker_keeps_the_leftover() -> None:
    ledger = ShareLedger({"a": 50})
    assert ledger.finish("a") == 0
    assert ledger.finish("a") == 0


def test_bad_amounts() -> None:
    ledger = ShareLedger({"a": 10})
    with pytest.raises(ValueError):
        ledger.can_reserve("a", -1)
    with pytest.raises(ValueError):
        ledger.settle("a", 5, 1)
    with pytest.raises(ValueError):
        ShareLedger({})
    with pytest.raises(ValueError):
        split_budget(10, [])
    with pytest.raises(ValueError):
        split_budget(10, ["a"], {"b": Decimal("0.5")})


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 10**6),
    n_models=st.integers(1, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["reserve", "settle", "finish"]), st.integers(0, 3), st.integers(0, 10**5)),
        max_size=60,
    ),
)
def test_allowances_never_exceed_the_total(
    total: int, n_models: int, ops: list[tuple[str, int, int]]
) -> None:
    models = [f"m{i}" for i in range(n_models)]
    ledger = ShareLedger(split_budget(total, models))
    open_: dict[str, list[int]] = {m: [] for m in models}
    for op, idx, amount in ops:
        m = models[idx % n_models]
        if op == "reserve":
            if ledger.reserve(m, amount):
                open_[m].append(amount)
        elif op == "settle" and open_[m]:
            reserved = open_[m].pop()
            ledger.settle(m, reserved, amount % (reserved + 1))
        elif op == "finish":
            ledger.finish(m)
        assert sum(ledger.allowance(x) for x in models) == total
        assert sum(ledger.committed(x) for x in models) <= total
        for x in models:
            assert ledger.committed(x) <= max(ledger.allowance(x), ledger.committed(x))
            if x in ledger.running():
                assert ledger.committed(x) <= ledger.allowance(x)
