"""What ``tollbench models`` lists: every priced model as a model id tollbench runs, with its price row,
the simulator profile that impersonates it, and the names that reach it (the price table's dated ids,
built-in aliases and the user's models file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.models import PROVIDERS, load_aliases, resolve_model
from harness.pricing.table import PriceTable

__all__ = ["catalog"]


def _model_provider(price_provider: str) -> str | None:
    """The model-id provider that reaches a price table provider (``openai`` for ``openai``...)."""
    for name, info in PROVIDERS.items():
        if info.price_provider == price_provider and name != "openai-responses":
            return name
    return None


def catalog(*, prices: Sequence[Path] = (), models_file: Path | None = None) -> list[dict[str, Any]]:
    """One entry per model in the price table (in effect now) that a provider of tollbench reaches.

    Each entry: ``provider``, ``id`` (``provider/model``, what ``-m`` takes), ``price`` (input, cached
    input, output per million tokens and whether there are tiers), ``simulator`` (``shipped`` for a
    hand-written profile, the family of a derived one, None when the simulator does not serve it) and
    ``aliases`` (dated ids of the price row, and tollbench aliases that resolve to the model).

    Raises:
        harness.errors.DataError: a malformed price or models file.
    """
    from harness.sim.profiles import resolve_model as sim_model
    from harness.sim.profiles import sim_profiles

    table = PriceTable.load(prices)
    profiles = sim_profiles()
    aliases = load_aliases(models_file)
    by_target: dict[str, list[str]] = {}
    for name in aliases:
        try:
            spec = resolve_model(name, aliases=aliases)
        except Exception:  # a broken user alias is not this listing's business
            continue
        if spec.name != f"{spec.provider}/{spec.model}":
            by_target.setdefault(f"{spec.provider}/{spec.model}", []).append(name)
    out: list[dict[str, Any]] = []
    for row in table.rows():
        provider = _model_provider(row.provider)
        if provider is None:
            continue
        model_id = f"{provider}/{row.model}"
        profile = sim_model(profiles, row.model, provider)
        out.append(
            {
                "provider": provider,
                "id": model_id,
                "price": {
                    "input": str(row.input),
                    "cached_input": None if row.cached_input is None else str(row.cached_input),
                    "output": str(row.output),
                    "tiers": [t.threshold for t in row.tiers],
                    "row_id": row.id,
                    "source": row.source_url,
                },
                "simulator": None if profile is None else (profile.family or "shipped"),
                "aliases": [*row.aliases, *sorted(by_target.get(model_id, []))],
            }
        )
    return out
