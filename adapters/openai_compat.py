"""Usage of OpenAI-compatible providers, normalised once per dialect (PROTOCOLS.md section 12).

Each provider reports the same Chat Completions shapes with its own quirks; they are decided here, in
one place, from the raw ``usage`` object (the SDK's model dumped with its extra fields):

- ``openai``, ``compat``, ``together``: cached and cache-write tokens are *inside* ``prompt_tokens``,
  reasoning tokens *inside* ``completion_tokens``.
- ``deepseek``: the cache split is top-level, ``prompt_cache_hit_tokens`` + ``prompt_cache_miss_tokens``
  = ``prompt_tokens`` (no cache-write charge); reasoning inside ``completion_tokens``.
- ``xai``: reasoning tokens may be reported *outside* ``completion_tokens``; which, is decided per
  response from ``total_tokens`` (``prompt + completion + reasoning == total`` means outside). When
  ``total_tokens`` cannot tell, the larger reading is taken (an unknown counts as its worst case). The
  provider's own cost is ``cost_in_usd_ticks`` (1 USD = 10^10 ticks).
- ``openrouter``: ``usage.cost`` is the cost in credits (USD); on bring-your-own-key routes
  (``is_byok``) the true spend is ``cost + cost_details.upstream_inference_cost``.

Nothing here imports an SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from harness.types import Usage

from ._common import decimal_str

__all__ = ["XAI_TICKS_PER_USD", "provider_cost", "usage_for_dialect"]

#: xAI's ``cost_in_usd_ticks``: ten billion ticks to the dollar.
XAI_TICKS_PER_USD = 10**10


def _n(obj: object, key: str) -> int:
    if not isinstance(obj, Mapping):
        return 0
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_for_dialect(dialect: str, raw: Mapping[str, Any]) -> Usage:
    """Normalise a Chat Completions ``usage`` object of the given dialect (see the module docs)."""
    prompt = _n(raw, "prompt_tokens")
    details = raw.get("prompt_tokens_details")
    out_details = raw.get("completion_tokens_details")
    completion = _n(raw, "completion_tokens")
    reasoning = _n(out_details, "reasoning_tokens")
    cached = _n(details, "cached_tokens")
    cache_write = _n(details, "cache_write_tokens")
    if dialect == "deepseek":
        hit = _n(raw, "prompt_cache_hit_tokens")
        miss = _n(raw, "prompt_cache_miss_tokens")
        if "prompt_cache_hit_tokens" in raw or "prompt_cache_miss_tokens" in raw:
            cached = hit
            prompt = max(prompt, hit + miss)
        cache_write = 0
    output = completion
    if dialect == "xai" and reasoning:
        total = _n(raw, "total_tokens")
        if total == prompt + completion:
            output = completion  # reasoning inside completion_tokens, as OpenAI reports it
        else:  # outside (total = prompt + completion + reasoning), or undecidable: the larger reading
            output = completion + reasoning
    reasoning = min(reasoning, output)
    return Usage(
        input_uncached=max(0, prompt - cached - cache_write),
        cache_read=min(cached, prompt),
        cache_write_5m=min(cache_write, max(0, prompt - cached)),
        output=output,
        reasoning=reasoning,
    )


def provider_cost(dialect: str, raw: Mapping[str, Any]) -> str | None:
    """What the provider itself says the call cost, in US dollars (a decimal string), or None.

    xAI: ``cost_in_usd_ticks``; OpenRouter: ``cost``, plus ``cost_details.upstream_inference_cost`` on
    bring-your-own-key routes; any other server that sends a ``cost`` field: that value.
    """
    if dialect == "xai":
        ticks = raw.get("cost_in_usd_ticks")
        if isinstance(ticks, int) and not isinstance(ticks, bool) and ticks >= 0:
            return format(Decimal(ticks) / XAI_TICKS_PER_USD, "f")
        return None
    cost = decimal_str(raw.get("cost"))
    if cost is None:
        return None
    if dialect == "openrouter" and raw.get("is_byok") is True:
        details = raw.get("cost_details")
        upstream = (
            decimal_str(details.get("upstream_inference_cost")) if isinstance(details, Mapping) else None
        )
        if upstream is not None:
            return format(Decimal(cost) + Decimal(upstream), "f")
    return cost
