"""Price rows and the cost calculator: a pure function of (usage, price).

A :class:`Price` is one row of the price table (PRICING.md §7): the unit prices of one model over one
span of dates, in USD per million tokens, with its long-context tiers, its batch / flex / priority
variants and its provenance. :func:`cost` turns a normalised :class:`~harness.types.Usage` into exact
dollars::

    prompt_total = input_uncached + cache_read + cache_write_5m + cache_write_1h
    rates        = the variant's prices (batch / flex / priority, else base), at the highest tier whose
                   threshold prompt_total exceeds (strict >), else the base tier
    cost         = input_uncached * rates.input + cache_read * rates.cached_input
                 + cache_write_5m * rates.cache_write_5m + cache_write_1h * rates.cache_write_1h
                 + output * rates.output                      # reasoning is inside output
                 all divided by 1,000,000

A cached-input or cache-write price the row leaves out means the provider gives no discount: those
tokens are priced at the (tier's, variant's) ``input`` rate. Everything is :class:`~decimal.Decimal`;
nothing is quantised here (the meter rounds up once, with :func:`harness.pricing.money.usd_to_nano`).
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from harness.types import Usage

__all__ = [
    "BASE_TIERS",
    "COMPONENTS",
    "VARIANT_NAMES",
    "Price",
    "Tier",
    "UnitPrices",
    "Variant",
    "cost",
    "cost_breakdown",
    "decimal_str",
    "variant_for",
]

#: ``service_tier`` values that mean "the standard price" (OpenAI echoes ``default``/``auto``,
#: Anthropic ``standard``).
BASE_TIERS = frozenset({"default", "standard", "auto"})

#: Variant names a price row may carry.
VARIANT_NAMES = ("batch", "flex", "priority")

#: The keys of :func:`cost_breakdown`, one per disjoint usage component.
COMPONENTS = ("input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output")

_PER = 6  # prices are per 10**6 tokens
# Wide enough that no product of a token count and a price is ever rounded.
_CTX = decimal.Context(prec=80, rounding=decimal.ROUND_CEILING, Emax=10**6, Emin=-(10**6))


def decimal_str(value: Decimal) -> str:
    """Canonical plain string of a Decimal: ``Decimal("2.50")`` -> ``"2.5"``, ``"1E+1"`` -> ``"10"``."""
    text = format(value.normalize(_CTX), "f")
    return "0" if text in ("-0", "0") else text


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else decimal_str(value)


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Fully resolved USD-per-million-token rates for one request (tier and variant applied)."""

    input: Decimal
    cached_input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal

    def to_dict(self) -> dict[str, str]:
        """JSON-able form, decimals as canonical strings."""
        return {
            "input": decimal_str(self.input),
            "cached_input": decimal_str(self.cached_input),
            "cache_write_5m": decimal_str(self.cache_write_5m),
            "cache_write_1h": decimal_str(self.cache_write_1h),
            "output": decimal_str(self.output),
        }

    def max_input(self) -> Decimal:
        """The dearest rate any prompt token can be billed at (cache writes can cost more than input)."""
        return max(self.input, self.cached_input, self.cache_write_5m, self.cache_write_1h)


@dataclass(frozen=True, slots=True)
class Tier:
    """A long-context cliff: when the whole prompt is *more than* ``threshold`` tokens, every token of
    the request (input, cache and output) is billed at these prices instead of the base ones."""

    threshold: int
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, decimals as canonical strings."""
        return {
            "threshold": self.threshold,
            "input": decimal_str(self.input),
            "cached_input": _opt(self.cached_input),
            "cache_write_5m": _opt(self.cache_write_5m),
            "cache_write_1h": _opt(self.cache_write_1h),
            "output": decimal_str(self.output),
        }

    def scaled(self, factor: Decimal) -> Tier:
        """This tier with every price multiplied by ``factor``."""
        return Tier(
            threshold=self.threshold,
            input=_CTX.multiply(self.input, factor),
            output=_CTX.multiply(self.output, factor),
            cached_input=_mul(self.cached_input, factor),
            cache_write_5m=_mul(self.cache_write_5m, factor),
            cache_write_1h=_mul(self.cache_write_1h, factor),
        )


def _mul(value: Decimal | None, factor: Decimal) -> Decimal | None:
    return None if value is None else _CTX.multiply(value, factor)


@dataclass(frozen=True, slots=True)
class Variant:
    """Prices under a processing mode or service tier (``batch``, ``flex``, ``priority``).

    ``multiplier`` scales every price of the row, tiers and cache rates included (Anthropic batch is
    ``0.5`` and stacks with the cache multipliers). Then each price set here replaces the (scaled)
    base price; ``tiers``, when given, replaces the row's tiers. A price not set keeps the base row's
    (OpenAI's batch table lists no cached-input rate, so cached input stays at the standard price).
    """

    multiplier: Decimal | None = None
    input: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None
    output: Decimal | None = None
    tiers: tuple[Tier, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, decimals as canonical strings."""
        return {
            "multiplier": _opt(self.multiplier),
            "input": _opt(self.input),
            "cached_input": _opt(self.cached_input),
            "cache_write_5m": _opt(self.cache_write_5m),
            "cache_write_1h": _opt(self.cache_write_1h),
            "output": _opt(self.output),
            "tiers": None if self.tiers is None else [t.to_dict() for t in self.tiers],
        }


def variant_for(service_tier: str | None, batch: bool) -> str | None:
    """The variant name a request's processing mode selects, or None for the base price.

    ``batch=True`` (or an echoed ``service_tier`` of ``"batch"``, as Anthropic reports inside a
    message batch) wins over any service tier. ``None``, ``default``, ``standard`` and ``auto`` are the
    base price. Any other tier name is returned as is; a row without that variant prices at base.
    """
    if batch:
        return "batch"
    if service_tier is None:
        return None
    tier = service_tier.strip().lower()
    if not tier or tier in BASE_TIERS:
        return None
    return tier


#: Results a :class:`Price` remembers (then it starts again; worst cases differ by prompt size).
_MEMO_MOST = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """One row of the price table: a model's prices (USD per 1M tokens) over a span of dates."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    aliases: tuple[str, ...] = ()
    effective_from: date | None = None
    """First UTC day the row applies (None: since the model existed)."""
    effective_to: date | None = None
    """First UTC day the row no longer applies (exclusive; None: still in effect)."""
    cached_input: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    """Long-context cliff tiers, by ascending threshold on ``usage.input_total`` (strict >)."""
    variants: Mapping[str, Variant] = field(default_factory=lambda: MappingProxyType({}))
    source_url: str = ""
    verified_on: date | None = None
    notes: str = ""
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)
    """:attr:`id` and :meth:`worst_case` results (pure functions of the row, asked once per call)."""

    def __post_init__(self) -> None:
        # Keep the row immutable and the tiers ordered, whatever the caller passed.
        object.__setattr__(self, "tiers", tuple(sorted(self.tiers, key=lambda t: t.threshold)))
        object.__setattr__(self, "variants", MappingProxyType(dict(sorted(self.variants.items()))))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def __hash__(self) -> int:
        # The variants mapping is not hashable; these fields are enough (equal rows hash equal).
        return hash((self.provider, self.model, self.effective_from, self.input, self.output, self.tiers))

    @property
    def key(self) -> str:
        """``provider/model``, as users and the CLI name it."""
        return f"{self.provider}/{self.model}"

    @property
    def id(self) -> str:
        """SHA-256 hex of the row's canonical JSON: stable across processes, stored with each call."""
        got = self._memo.get("id")
        if got is None:
            got = self._memo["id"] = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()
        return str(got)

    def canonical_json(self) -> str:
        """The row as sorted, compact JSON (what :attr:`id` hashes)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, decimals as canonical strings and dates as ISO strings."""
        return {
            "provider": self.provider,
            "model": self.model,
            "aliases": list(self.aliases),
            "effective_from": None if self.effective_from is None else self.effective_from.isoformat(),
            "effective_to": None if self.effective_to is None else self.effective_to.isoformat(),
            "input": decimal_str(self.input),
            "cached_input": _opt(self.cached_input),
            "cache_write_5m": _opt(self.cache_write_5m),
            "cache_write_1h": _opt(self.cache_write_1h),
            "output": decimal_str(self.output),
            "tiers": [t.to_dict() for t in self.tiers],
            "variants": {name: v.to_dict() for name, v in self.variants.items()},
            "source_url": self.source_url,
            "verified_on": None if self.verified_on is None else self.verified_on.isoformat(),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Price:
        """Rebuild a row from :meth:`to_dict` output (for example a stored price snapshot).

        Raises:
            ValueError: a field is missing or malformed.
        """
        try:
            return cls(
                provider=str(data["provider"]),
                model=str(data["model"]),
                aliases=tuple(str(a) for a in data.get("aliases", ())),
                effective_from=_date_or_none(data.get("effective_from")),
                effective_to=_date_or_none(data.get("effective_to")),
                input=_dec(data["input"]),
                cached_input=_dec_or_none(data.get("cached_input")),
                cache_write_5m=_dec_or_none(data.get("cache_write_5m")),
                cache_write_1h=_dec_or_none(data.get("cache_write_1h")),
                output=_dec(data["output"]),
                tiers=tuple(_tier_from_dict(t) for t in data.get("tiers", ())),
                variants={
                    name: Variant(
                        multiplier=_dec_or_none(v.get("multiplier")),
                        input=_dec_or_none(v.get("input")),
                        cached_input=_dec_or_none(v.get("cached_input")),
                        cache_write_5m=_dec_or_none(v.get("cache_write_5m")),
                        cache_write_1h=_dec_or_none(v.get("cache_write_1h")),
                        output=_dec_or_none(v.get("output")),
                        tiers=None
                        if v.get("tiers") is None
                        else tuple(_tier_from_dict(t) for t in v["tiers"]),
                    )
                    for name, v in dict(data.get("variants", {})).items()
                },
                source_url=str(data.get("source_url", "")),
                verified_on=_date_or_none(data.get("verified_on")),
                notes=str(data.get("notes", "")),
            )
        except (KeyError, TypeError, AttributeError, decimal.InvalidOperation) as exc:
            raise ValueError(f"not a price row: {exc!r}") from None

    def applies_on(self, day: date) -> bool:
        """Whether the row is in effect on the UTC date ``day``."""
        if self.effective_from is not None and day < self.effective_from:
            return False
        return self.effective_to is None or day < self.effective_to

    def unit_prices(
        self, input_total: int, *, service_tier: str | None = None, batch: bool = False
    ) -> UnitPrices:
        """The rates one request pays, for a prompt of ``input_total`` tokens.

        Args:
            input_total: every prompt token, cached and cache writes included (selects the tier).
            service_tier: the tier the provider reported (``flex``, ``priority``, ...).
            batch: the request went through a batch API.

        Returns:
            The resolved rates; missing cache prices fall back to the resolved ``input`` rate.
        """
        base, tiers = self._prices_for(variant_for(service_tier, batch))
        active: Tier | None = None
        for tier in tiers:
            if input_total > tier.threshold:
                active = tier
        chosen = base if active is None else active
        return _resolve(chosen)

    def _prices_for(self, variant_name: str | None) -> tuple[Tier, tuple[Tier, ...]]:
        """Base prices (as a threshold-0 pseudo tier) and tiers after applying the variant."""
        base = Tier(
            threshold=0,
            input=self.input,
            output=self.output,
            cached_input=self.cached_input,
            cache_write_5m=self.cache_write_5m,
            cache_write_1h=self.cache_write_1h,
        )
        tiers = self.tiers
        variant = self.variants.get(variant_name) if variant_name is not None else None
        if variant is None:
            return base, tiers
        if variant.multiplier is not None:
            base = base.scaled(variant.multiplier)
            tiers = tuple(t.scaled(variant.multiplier) for t in tiers)
        base = Tier(
            threshold=0,
            input=_pick(variant.input, base.input),
            output=_pick(variant.output, base.output),
            cached_input=variant.cached_input if variant.cached_input is not None else base.cached_input,
            cache_write_5m=variant.cache_write_5m
            if variant.cache_write_5m is not None
            else base.cache_write_5m,
            cache_write_1h=variant.cache_write_1h
            if variant.cache_write_1h is not None
            else base.cache_write_1h,
        )
        if variant.tiers is not None:
            tiers = tuple(sorted(variant.tiers, key=lambda t: t.threshold))
        return base, tiers

    def cost(self, usage: Usage, *, service_tier: str | None = None, batch: bool = False) -> Decimal:
        """Exact USD cost of ``usage`` at this row (see :func:`cost`)."""
        return cost(self, usage, service_tier=service_tier, batch=batch)

    def cost_breakdown(
        self, usage: Usage, *, service_tier: str | None = None, batch: bool = False
    ) -> dict[str, Decimal]:
        """Exact USD cost per usage component (see :func:`cost_breakdown`)."""
        return cost_breakdown(self, usage, service_tier=service_tier, batch=batch)

    def worst_case(
        self,
        input_tokens_upper_bound: int,
        max_output_tokens: int,
        *,
        service_tier: str | None = None,
        batch: bool = False,
        reported_tiers: Iterable[str | None] | None = None,
    ) -> Decimal:
        """The most a request can cost: what the budget reserves before sending (invariant 1).

        ``input_tokens_upper_bound * input + max_output_tokens * output``, where ``input`` is the
        dearest prompt rate (a prompt written to a 1 h cache costs twice the input price on Anthropic),
        at the dearest price the call can be *billed* at: every service tier the provider may report
        and, within each, every long-context tier the upper bound can reach. The provider, not the
        request, decides the tier (OpenAI ``service_tier: "auto"`` runs at the project's default, which
        may be priority; Anthropic reports ``usage.service_tier``; a pinned ``flex`` request may be
        served at standard), and the meter prices the tier it reports, so the result is never below
        :func:`cost` of any usage with ``input_total <= input_tokens_upper_bound`` and
        ``output <= max_output_tokens`` under any reported tier.

        Args:
            input_tokens_upper_bound: a true upper bound of the prompt tokens.
            max_output_tokens: the request's output limit (reasoning included).
            service_tier: the service tier the request asks for. It never lowers the bound (the
                response may report another); a tier the row has no variant for is still covered.
            batch: the request goes through a batch API: every result is billed at the row's
                ``batch`` variant (what :func:`cost` uses with ``batch=True``), so only that counts.
            reported_tiers: the tiers the response may report, when the caller knows better than "any"
                (None: the base price and every variant of the row; the base price always counts).

        Raises:
            ValueError: a negative token count.
        """
        if input_tokens_upper_bound < 0 or max_output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        tiers_key = None if reported_tiers is None else tuple(reported_tiers)
        key = ("worst", input_tokens_upper_bound, max_output_tokens, service_tier, batch, tiers_key)
        got = self._memo.get(key)
        if got is None:
            if len(self._memo) > _MEMO_MOST:
                self._memo.clear()
            got = self._memo[key] = self._worst_case(
                input_tokens_upper_bound, max_output_tokens, service_tier, batch, tiers_key
            )
        return Decimal(got)

    def _worst_case(
        self,
        input_tokens_upper_bound: int,
        max_output_tokens: int,
        service_tier: str | None,
        batch: bool,
        reported_tiers: tuple[str | None, ...] | None,
    ) -> Decimal:
        names: list[str | None]
        if batch:
            names = [variant_for(service_tier, True)]
        elif reported_tiers is None:
            names = [None, *self.variants]
        else:
            names = [None, *(variant_for(t, False) for t in reported_tiers)]
        worst = Decimal(0)
        for name in dict.fromkeys(names):
            base, tiers = self._prices_for(name)
            # A cliff is reachable when some prompt <= the bound exceeds its threshold.
            reachable = [base, *(t for t in tiers if input_tokens_upper_bound > t.threshold)]
            for tier in reachable:
                rates = _resolve(tier)
                total = _CTX.add(
                    _CTX.multiply(Decimal(input_tokens_upper_bound), rates.max_input()),
                    _CTX.multiply(Decimal(max_output_tokens), rates.output),
                )
                worst = max(worst, total)
        return worst.scaleb(-_PER, _CTX)


def _dec(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise TypeError(f"price {value!r} must be a decimal string")
    return Decimal(value)


def _dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


def _date_or_none(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _tier_from_dict(data: Mapping[str, Any]) -> Tier:
    return Tier(
        threshold=int(data["threshold"]),
        input=_dec(data["input"]),
        output=_dec(data["output"]),
        cached_input=_dec_or_none(data.get("cached_input")),
        cache_write_5m=_dec_or_none(data.get("cache_write_5m")),
        cache_write_1h=_dec_or_none(data.get("cache_write_1h")),
    )


def _pick(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _resolve(tier: Tier) -> UnitPrices:
    return UnitPrices(
        input=tier.input,
        cached_input=_pick(tier.cached_input, tier.input),
        cache_write_5m=_pick(tier.cache_write_5m, tier.input),
        cache_write_1h=_pick(tier.cache_write_1h, tier.input),
        output=tier.output,
    )


def _check_usage(usage: Usage) -> None:
    counts = usage.as_dict()
    negative = [name for name, n in counts.items() if n < 0]
    if negative:
        raise ValueError(f"negative token counts in usage: {', '.join(negative)}")
    if usage.reasoning > usage.output:
        raise ValueError(
            f"usage.reasoning ({usage.reasoning}) exceeds usage.output ({usage.output}); "
            "reasoning tokens must be counted inside output"
        )


def cost_breakdown(
    price: Price, usage: Usage, *, service_tier: str | None = None, batch: bool = False
) -> dict[str, Decimal]:
    """Exact USD cost of each usage component, keyed by :data:`COMPONENTS`.

    Args:
        price: the price row in effect for the request.
        usage: normalised usage (disjoint components; reasoning inside output, at the output rate).
        service_tier: the tier the provider reported; ``None``/``default``/``standard``/``auto`` is base,
            ``flex``/``priority`` use the row's variant of that name when it has one, else base.
        batch: the request went through a batch API (the row's ``batch`` variant, else base).

    Returns:
        ``{"input_uncached": ..., "cache_read": ..., "cache_write_5m": ..., "cache_write_1h": ...,
        "output": ...}``, unrounded Decimals that sum to :func:`cost`.

    Raises:
        ValueError: negative counts, or reasoning larger than output.
    """
    _check_usage(usage)
    rates = price.unit_prices(usage.input_total, service_tier=service_tier, batch=batch)

    def part(tokens: int, rate: Decimal) -> Decimal:
        return _CTX.multiply(Decimal(tokens), rate).scaleb(-_PER, _CTX)

    return {
        "input_uncached": part(usage.input_uncached, rates.input),
        "cache_read": part(usage.cache_read, rates.cached_input),
        "cache_write_5m": part(usage.cache_write_5m, rates.cache_write_5m),
        "cache_write_1h": part(usage.cache_write_1h, rates.cache_write_1h),
        "output": part(usage.output, rates.output),
    }


def cost(price: Price, usage: Usage, *, service_tier: str | None = None, batch: bool = False) -> Decimal:
    """Exact USD cost of one request: a pure function of the usage and the price row.

    Args:
        price: the price row in effect for the request.
        usage: normalised usage.
        service_tier: the tier the provider reported (see :func:`cost_breakdown`).
        batch: the request went through a batch API.

    Returns:
        The unrounded Decimal total (quantise only for display; store with ``usd_to_nano``).

    Raises:
        ValueError: negative counts, or reasoning larger than output.
    """
    total = Decimal(0)
    for value in cost_breakdown(price, usage, service_tier=service_tier, batch=batch).values():
        total = _CTX.add(total, value)
    return total
