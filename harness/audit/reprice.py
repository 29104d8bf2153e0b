"""Re-price a run: each call's cost again from its stored normalised usage, with today's price table.

The table is the one ``run`` would load now: the bundled rows, the user's file
(``$TOLLBENCH_PRICES`` or ``~/.config/tollbench/prices.toml``) and each ``--prices FILE``. A call is
priced exactly as the meter priced it (:meth:`harness.pricing.cost.Price.cost` of its usage at the row for
its provider and wire model id in effect on the day it started, with the service tier the provider
reported, ``calls.service_tier``), then rounded up to nano-dollars once per call with
:func:`harness.pricing.money.usd_to_nano`, so repricing with the table the run used gives its recorded cost to
the nano-dollar.

Not every call has a usage to price. They are counted apart, never repriced:

- **usage unknown**: a call still ``reserved`` (in flight, or left open by a crash: counted at its
  worst case), or settled at its reservation because its usage never arrived (a dropped stream, a
  timeout, a cancelled request);
- **not billed**: a call refused before generation started (usage unknown, cost 0);
- **cached**: an answer reused from the response cache (cost 0 here; its cost to reproduce is shown);
- **no price**: a model the table has no row for on that day; the message says how to add one.

Nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PricingMissing
from harness.pricing.money import usd_str, usd_to_nano
from harness.pricing.table import Price, PriceTable
from harness.store.engine import Store
from harness.types import Usage

__all__ = ["ModelReprice", "RepriceResult", "call_usage", "reprice_calls", "reprice_run"]


@dataclass
class ModelReprice:
    """Recorded and repriced cost of one model's calls in a run (money in nano-dollars)."""

    model: str
    priced_calls: int = 0
    """Calls with a known usage and a price: the ones repriced."""
    recorded_nano: int = 0
    """What those calls were charged."""
    repriced_nano: int = 0
    """What they cost at today's table."""
    changed_calls: int = 0
    """Priced calls whose cost differs."""
    unknown_calls: int = 0
    """Calls whose usage is unknown (still reserved, or charged their reservation)."""
    unknown_nano: int = 0
    """What those calls count for: their charge, or their reservation while still open."""
    open_calls: int = 0
    """Of the unknown ones, calls still ``reserved``."""
    unbilled_calls: int = 0
    """Calls refused before generation (usage unknown, cost 0)."""
    cached_calls: int = 0
    reproduce_nano: int = 0
    """What the answers reused from the response cache cost when they were bought."""
    no_price_calls: int = 0
    no_price_nano: int = 0
    """What the calls without a price today were charged."""
    no_price: str | None = None
    """Why they have no price (the first message), with how to add one."""
    recorded_price_ids: set[str] = field(default_factory=set)
    current_price_ids: set[str] = field(default_factory=set)

    @property
    def difference_nano(self) -> int:
        """Repriced minus recorded (positive: the calls cost more today)."""
        return self.repriced_nano - self.recorded_nano

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, dollar amounts as exact decimal strings."""
        return {
            "model": self.model,
            "priced_calls": self.priced_calls,
            "recorded_usd": usd_str(self.recorded_nano),
            "repriced_usd": usd_str(self.repriced_nano),
            "difference_usd": usd_str(self.difference_nano),
            "changed_calls": self.changed_calls,
            "unknown_usage_calls": self.unknown_calls,
            "unknown_usage_usd": usd_str(self.unknown_nano),
            "open_calls": self.open_calls,
            "unbilled_calls": self.unbilled_calls,
            "cached_calls": self.cached_calls,
            "cached_reproduce_usd": usd_str(self.reproduce_nano),
            "no_price_calls": self.no_price_calls,
            "no_price_usd": usd_str(self.no_price_nano),
            "no_price": self.no_price,
            "recorded_price_ids": sorted(self.recorded_price_ids),
            "current_price_ids": sorted(self.current_price_ids),
        }


@dataclass
class RepriceResult:
    """What :func:`reprice_run` found, per model."""

    run_id: str
    simulated: bool
    table_sha256: str
    price_files: list[str]
    models: list[ModelReprice]

    def total(self, name: str) -> int:
        """The sum of one integer attribute of :class:`ModelReprice` over the models."""
        return sum(int(getattr(m, name)) for m in self.models)

    def as_dict(self) -> dict[str, Any]:
        """What ``tollbench reprice --json`` prints."""
        return {
            "run_id": self.run_id,
            "simulated": self.simulated,
            "price_table_sha256": self.table_sha256,
            "price_files": list(self.price_files),
            "recorded_usd": usd_str(self.total("recorded_nano")),
            "repriced_usd": usd_str(self.total("repriced_nano")),
            "difference_usd": usd_str(self.total("difference_nano")),
            "unknown_usage_calls": self.total("unknown_calls"),
            "unknown_usage_usd": usd_str(self.total("unknown_nano")),
            "no_price_calls": self.total("no_price_calls"),
            "models": [m.as_dict() for m in self.models],
        }


def call_usage(call: Mapping[str, Any]) -> Usage:
    """The normalised usage a call row stores (a count the row leaves empty is 0)."""
    return Usage(
        input_uncached=int(call.get("input_uncached") or 0),
        cache_read=int(call.get("cache_read") or 0),
        cache_write_5m=int(call.get("cache_write_5m") or 0),
        cache_write_1h=int(call.get("cache_write_1h") or 0),
        output=int(call.get("output_tokens") or 0),
        reasoning=int(call.get("reasoning_tokens") or 0),
    )


def _service_tier(call: Mapping[str, Any]) -> str | None:
    """The service tier the provider reported: the call row's own (``calls.service_tier``), else the
    stored raw usage's (Anthropic reports it there; rows written before the column existed)."""
    if isinstance(call.get("service_tier"), str):
        return str(call["service_tier"])
    raw = call.get("raw_usage")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    tier = raw.get("service_tier") if isinstance(raw, Mapping) else None
    return tier if isinstance(tier, str) else None


def reprice_calls(calls: Sequence[Mapping[str, Any]], table: PriceTable) -> list[ModelReprice]:
    """Re-price call rows (``Store.calls`` output) with ``table``, per model (sorted by name)."""
    models: dict[str, ModelReprice] = {}
    rows: dict[tuple[str, str, date], Price | PricingMissing] = {}
    for call in calls:
        m = models.setdefault(str(call["model"]), ModelReprice(str(call["model"])))
        status = str(call["status"])
        cost = int(call.get("cost_nano") or 0)
        if status == "cached" or call.get("cached"):
            m.cached_calls += 1
            m.reproduce_nano += int(call.get("reproduce_nano") or 0)
            continue
        if status == "reserved":
            m.unknown_calls += 1
            m.open_calls += 1
            m.unknown_nano += int(call.get("reserved_nano") or 0)
            continue
        if not call.get("usage_known"):
            if cost == 0:
                m.unbilled_calls += 1
            else:
                m.unknown_calls += 1
                m.unknown_nano += cost
            continue
        started = call["started_at"]
        day = started.date() if isinstance(started, datetime) else date.fromisoformat(str(started)[:10])
        key = (str(call["provider"]), str(call["provider_model"]), day)
        if key not in rows:
            try:
                rows[key] = table.lookup(key[0], key[1], started if isinstance(started, datetime) else None)
            except PricingMissing as exc:
                rows[key] = exc
        price = rows[key]
        if isinstance(price, PricingMissing):
            m.no_price_calls += 1
            m.no_price_nano += cost
            m.no_price = m.no_price or str(price)
            continue
        try:
            repriced = usd_to_nano(price.cost(call_usage(call), service_tier=_service_tier(call)))
        except ValueError:  # a stored usage the meter could not have priced (reasoning > output)
            m.unknown_calls += 1
            m.unknown_nano += cost
            continue
        m.priced_calls += 1
        m.recorded_nano += cost
        m.repriced_nano += repriced
        m.changed_calls += int(repriced != cost)
        m.current_price_ids.add(price.id)
        if call.get("price_id"):
            m.recorded_price_ids.add(str(call["price_id"]))
    return [models[k] for k in sorted(models)]


def reprice_run(
    store: Store, run_id: str, *, prices: Sequence[Path] = (), table: PriceTable | None = None
) -> RepriceResult:
    """Re-price every call of run ``run_id`` with today's price table (reads only).

    Args:
        store: The open database.
        run_id: Any run, bought here or imported.
        prices: ``--prices FILE`` overrides, merged after the bundled table and the user's file.
        table: A table to use instead of loading one (tests).

    Raises:
        ConfigError: No such run.
        DataError: A price file is missing or malformed.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
    if table is None:
        table = PriceTable.load(prices)
    models = reprice_calls(store.calls(run_id), table)
    return RepriceResult(
        run_id=run_id,
        simulated=bool(run["simulated"]),
        table_sha256=table.sha256,
        price_files=[f.path for f in table.files],
        models=models,
    )
