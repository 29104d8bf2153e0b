"""The versioned price table: bundled TOML files plus user overrides, merged, hashed and looked up.

The bundled tables live in ``harness/data/prices/<provider>.toml``. On top of them :meth:`PriceTable.load`
merges ``~/.config/tollbench/prices.toml`` (or the file ``$TOLLBENCH_PRICES`` names) and then each
``--prices FILE``, in that order; a later file wins per provider/model (all the rows it gives for a model
replace the earlier rows of that model). The file format is documented in ``docs/pricing.md``::

    provider = "openai"            # default for the rows below; a row may set its own

    [[models]]
    model = "o3"
    aliases = ["o3-2025-04-16"]
    effective_from = 2025-06-10    # UTC day; effective_to is exclusive
    input = "2.00"                 # USD per 1M tokens, always a string (floats are rejected)
    cached_input = "0.50"
    output = "8.00"
    source_url = "..."
    verified_on = 2026-11-28
    [models.variants.batch]
    input = "1.00"
    output = "4.00"

Lookup is by exact id or listed alias, never fuzzy: an unknown model raises
:class:`~harness.errors.PricingMissing`, so nothing is ever priced at $0 by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import DataError, PricingMissing
from harness.pricing.cost import Price, Tier, UnitPrices, Variant, cost, cost_breakdown, decimal_str

__all__ = [
    "ENV_VAR",
    "MAX_MULTIPLIER",
    "MAX_PRICE",
    "USER_PRICES_HINT",
    "Price",
    "PriceFile",
    "PriceTable",
    "Tier",
    "UnitPrices",
    "Variant",
    "cost",
    "cost_breakdown",
    "decimal_str",
    "parse_prices",
    "user_prices_path",
]

#: Environment variable naming the user's price file (instead of the default location).
ENV_VAR = "TOLLBENCH_PRICES"
#: How error messages name the default user file.
USER_PRICES_HINT = "~/.config/tollbench/prices.toml"

_FORMAT = 1
_PRICE_KEYS = ("input", "cached_input", "cache_write_5m", "cache_write_1h", "output")
_TOP_KEYS = frozenset({"format", "provider", "models"})
_ROW_KEYS = frozenset(
    {"provider", "model", "aliases", "effective_from", "effective_to", "tiers", "variants"}
    | {"source_url", "verified_on", "notes", *_PRICE_KEYS}
)
_TIER_KEYS = frozenset({"threshold", *_PRICE_KEYS})
_VARIANT_KEYS = frozenset({"multiplier", "tiers", *_PRICE_KEYS})
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class PriceFile:
    """One file merged into a table, for provenance: where it came from and the hash of its bytes."""

    path: str
    sha256: str


def user_prices_path() -> Path | None:
    """The user's default price file: ``$TOLLBENCH_PRICES`` if set, else ``~/.config/tollbench/prices.toml``.

    Returns:
        The path, or None when the variable is unset and the default file does not exist.

    Raises:
        DataError: ``$TOLLBENCH_PRICES`` names a file that does not exist.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DataError(f"{ENV_VAR}={env}: no such file")
        return path
    default = Path.home() / ".config" / "tollbench" / "prices.toml"
    return default if default.is_file() else None


# --------------------------------------------------------------------------------------------- parsing


class _Ctx:
    """Names the place being parsed, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> DataError:
        return DataError(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")


def _check_keys(ctx: _Ctx, where: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ctx.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


#: The largest price a file may give, in USD per 1M tokens. The dearest list price is $600 (o1-pro
#: output); anything far above it is a typo, and values like "1e300" would overflow the meter.
MAX_PRICE = Decimal("100000")
#: The largest variant multiplier (priority processing is about 2x).
MAX_MULTIPLIER = Decimal("100")


def _decimal(
    ctx: _Ctx,
    where: str,
    key: str,
    value: Any,
    *,
    positive: bool = False,
    limit: Decimal = MAX_PRICE,
) -> Decimal:
    if not isinstance(value, str):
        kind = type(value).__name__
        raise ctx.fail(
            where,
            f"{key} = {value!r} is a TOML {kind}; prices must be strings, "
            f'write {key} = "{value}" (binary floats cannot hold exact money)',
        )
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ctx.fail(where, f"{key} = {value!r} is not a decimal number") from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ctx.fail(where, f"{key} = {value!r} must be a finite number {bound}")
    if number > limit:
        unit = "" if key == "multiplier" else " USD per 1M tokens"
        raise ctx.fail(
            where,
            f"{key} = {value!r} is out of range: it must be at most {limit}{unit} "
            f'(write the price per million tokens, for example {key} = "2.50")',
        )
    return number


def _opt_decimal(ctx: _Ctx, where: str, table: Mapping[str, Any], key: str) -> Decimal | None:
    return _decimal(ctx, where, key, table[key]) if key in table else None


def _date(ctx: _Ctx, where: str, key: str, value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise ctx.fail(where, f"{key} must be a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ctx.fail(where, f"{key} = {value!r} is not a date (YYYY-MM-DD)")


def _str(ctx: _Ctx, where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ctx.fail(where, f"{key} must be a string, not {type(value).__name__}")
    return value


def _tier(ctx: _Ctx, where: str, raw: Any) -> Tier:
    if not isinstance(raw, dict):
        raise ctx.fail(where, "each tier must be a table with threshold, input and output")
    _check_keys(ctx, where, raw, _TIER_KEYS)
    for needed in ("threshold", "input", "output"):
        if needed not in raw:
            raise ctx.fail(where, f"missing {needed!r}")
    threshold = raw["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
        raise ctx.fail(where, f"threshold = {threshold!r} must be a positive integer (prompt tokens)")
    return Tier(
        threshold=threshold,
        input=_decimal(ctx, where, "input", raw["input"]),
        output=_decimal(ctx, where, "output", raw["output"]),
        cached_input=_opt_decimal(ctx, where, raw, "cached_input"),
        cache_write_5m=_opt_decimal(ctx, where, raw, "cache_write_5m"),
        cache_write_1h=_opt_decimal(ctx, where, raw, "cache_write_1h"),
    )


def _tiers(ctx: _Ctx, where: str, raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list):
        raise ctx.fail(where, "tiers must be an array of tables ([[models.tiers]])")
    tiers = tuple(_tier(ctx, f"{where}.tiers[{i}]", t) for i, t in enumerate(raw))
    thresholds = [t.threshold for t in tiers]
    if len(set(thresholds)) != len(thresholds):
        raise ctx.fail(where, "two tiers have the same threshold")
    return tiers


def _variant(ctx: _Ctx, where: str, raw: Any) -> Variant:
    if not isinstance(raw, dict):
        raise ctx.fail(where, "a variant must be a table")
    _check_keys(ctx, where, raw, _VARIANT_KEYS)
    if not raw:
        raise ctx.fail(where, "an empty variant (set multiplier or prices)")
    multiplier = raw.get("multiplier")
    return Variant(
        multiplier=None
        if multiplier is None
        else _decimal(ctx, where, "multiplier", multiplier, positive=True, limit=MAX_MULTIPLIER),
        input=_opt_decimal(ctx, where, raw, "input"),
        cached_input=_opt_decimal(ctx, where, raw, "cached_input"),
        cache_write_5m=_opt_decimal(ctx, where, raw, "cache_write_5m"),
        cache_write_1h=_opt_decimal(ctx, where, raw, "cache_write_1h"),
        output=_opt_decimal(ctx, where, raw, "output"),
        tiers=_tiers(ctx, where, raw["tiers"]) if "tiers" in raw else None,
    )


@dataclass(frozen=True, slots=True)
class _Row:
    price: Price
    aliases_given: bool


def _row(ctx: _Ctx, index: int, raw: Any, default_provider: str | None) -> _Row:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ctx.fail(where, "must be a table ([[models]])")
    if isinstance(raw.get("model"), str):
        where = f"models[{index}] ({raw['model']})"
    _check_keys(ctx, where, raw, _ROW_KEYS)
    provider = raw.get("provider", default_provider)
    if provider is None:
        raise ctx.fail(where, "no provider (set provider at the top of the file or in the row)")
    provider = _str(ctx, where, "provider", provider)
    if not _NAME_RE.match(provider):
        raise ctx.fail(where, f"provider {provider!r} must be lower-case letters, digits, '-' or '_'")
    if "model" not in raw:
        raise ctx.fail(where, "missing 'model'")
    model = _str(ctx, where, "model", raw["model"]).strip()
    if not model:
        raise ctx.fail(where, "model is empty")
    aliases_raw = raw.get("aliases", [])
    if not isinstance(aliases_raw, list) or not all(isinstance(a, str) and a.strip() for a in aliases_raw):
        raise ctx.fail(where, "aliases must be an array of non-empty strings")
    aliases = tuple(dict.fromkeys(a.strip() for a in aliases_raw if a.strip() != model))
    for needed in ("input", "output"):
        if needed not in raw:
            raise ctx.fail(where, f"missing {needed!r}")
    effective_from = _date(ctx, where, "effective_from", raw.get("effective_from"))
    effective_to = _date(ctx, where, "effective_to", raw.get("effective_to"))
    if effective_from is not None and effective_to is not None and effective_to <= effective_from:
        raise ctx.fail(where, "effective_to must be after effective_from (it is exclusive)")
    variants_raw = raw.get("variants", {})
    if not isinstance(variants_raw, dict):
        raise ctx.fail(where, "variants must be a table ([models.variants.batch], ...)")
    variants: dict[str, Variant] = {}
    for name, v in variants_raw.items():
        if not _NAME_RE.match(name):
            raise ctx.fail(where, f"variant name {name!r} must be lower-case (batch, flex, priority)")
        variants[name] = _variant(ctx, f"{where}.variants.{name}", v)
    price = Price(
        provider=provider,
        model=model,
        aliases=aliases,
        effective_from=effective_from,
        effective_to=effective_to,
        input=_decimal(ctx, where, "input", raw["input"]),
        cached_input=_opt_decimal(ctx, where, raw, "cached_input"),
        cache_write_5m=_opt_decimal(ctx, where, raw, "cache_write_5m"),
        cache_write_1h=_opt_decimal(ctx, where, raw, "cache_write_1h"),
        output=_decimal(ctx, where, "output", raw["output"]),
        tiers=_tiers(ctx, where, raw["tiers"]) if "tiers" in raw else (),
        variants=variants,
        source_url=_str(ctx, where, "source_url", raw.get("source_url", "")),
        verified_on=_date(ctx, where, "verified_on", raw.get("verified_on")),
        notes=_str(ctx, where, "notes", raw.get("notes", "")).strip(),
    )
    return _Row(price, "aliases" in raw)


def _parse_rows(text: str, source: str) -> list[_Row]:
    ctx = _Ctx(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.fail("", f"invalid TOML: {exc}") from None
    _check_keys(ctx, "", doc, _TOP_KEYS)
    fmt = doc.get("format", _FORMAT)
    if fmt != _FORMAT:
        raise ctx.fail("", f"format = {fmt!r} is not supported (this tollbench reads format {_FORMAT})")
    default_provider = doc.get("provider")
    if default_provider is not None:
        default_provider = _str(ctx, "", "provider", default_provider)
    models = doc.get("models", [])
    if not isinstance(models, list):
        raise ctx.fail("", "models must be an array of tables ([[models]])")
    rows = [_row(ctx, i, raw, default_provider) for i, raw in enumerate(models)]
    _check_layer(ctx, [r.price for r in rows])
    return rows


def parse_prices(text: str, source: str = "<prices>") -> list[Price]:
    """Parse one price file's text into its rows.

    Args:
        text: the TOML text.
        source: the file name used in error messages.

    Raises:
        DataError: malformed TOML, an unknown key, a float price, overlapping dates or an id
            claimed by two models; the message names ``source`` and the row.
    """
    return [r.price for r in _parse_rows(text, source)]


def _check_layer(ctx: _Ctx, prices: Iterable[Price]) -> None:
    """Within one layer: no name claimed by two models, no overlapping date ranges for one model."""
    owner: dict[tuple[str, str], str] = {}
    by_model: dict[tuple[str, str], list[Price]] = {}
    for p in prices:
        by_model.setdefault((p.provider, p.model), []).append(p)
        for name in (p.model, *p.aliases):
            other = owner.setdefault((p.provider, name), p.model)
            if other != p.model:
                raise ctx.fail("", f"{p.provider}/{name} is claimed by both {other} and {p.model}")
    for (provider, model), rows in by_model.items():
        _check_overlap(ctx, provider, model, rows)


def _check_overlap(ctx: _Ctx, provider: str, model: str, rows: list[Price]) -> None:
    ordered = sorted(rows, key=lambda p: p.effective_from or date.min)
    for a, b in zip(ordered, ordered[1:], strict=False):
        a_end = a.effective_to or date.max
        b_start = b.effective_from or date.min
        if b_start < a_end:
            raise ctx.fail(
                "",
                f"{provider}/{model} has overlapping rows ({_span(a)} and {_span(b)}); "
                "give each row effective_from / effective_to",
            )


def _span(p: Price) -> str:
    start = p.effective_from.isoformat() if p.effective_from else "start"
    end = p.effective_to.isoformat() if p.effective_to else "now"
    return f"{start}..{end}"


# --------------------------------------------------------------------------------------------- the table


def _utc_day(at: datetime | date | None) -> date:
    if at is None:
        return datetime.now(UTC).date()
    if isinstance(at, datetime):
        if at.tzinfo is None:  # documented: naive timestamps are taken as UTC
            return at.date()
        return at.astimezone(UTC).date()
    return at


class PriceTable:
    """The merged, validated price table (bundled rows plus overrides).

    Attributes:
        sha256: content hash of the merged table; equal tables hash equal, whatever files they came from.
        files: the files merged, in order, with the hash of each file's bytes.
    """

    def __init__(self, prices: Iterable[Price], *, files: Sequence[PriceFile] = ()) -> None:
        """Build a table from rows that were already merged.

        Raises:
            DataError: a name claimed by two models or overlapping dates for one model.
        """
        self.files: tuple[PriceFile, ...] = tuple(files)
        rows = sorted(prices, key=lambda p: (p.provider, p.model, p.effective_from or date.min))
        _check_layer(_Ctx("price table"), rows)
        self._rows: tuple[Price, ...] = tuple(rows)
        self._models: dict[tuple[str, str], list[Price]] = {}
        self._names: dict[tuple[str, str], tuple[str, str]] = {}
        for p in rows:
            self._models.setdefault((p.provider, p.model), []).append(p)
            for name in (p.model, *p.aliases):
                self._names[(p.provider, name)] = (p.provider, p.model)
        canonical = json.dumps(
            {"format": _FORMAT, "rows": [p.to_dict() for p in rows]},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        self.sha256: str = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def load(
        cls, overrides: Sequence[Path] = (), *, user_default: bool = True, bundled: bool = True
    ) -> PriceTable:
        """Load the bundled tables, then the user's file, then each override file (later wins).

        Args:
            overrides: ``--prices FILE`` paths, merged in order after everything else.
            user_default: also merge ``$TOLLBENCH_PRICES`` or ``~/.config/tollbench/prices.toml``.
            bundled: start from the tables shipped in ``harness/data/prices`` (tests may turn this off).

        Raises:
            DataError: a missing or malformed file; the message names the file and the row or line.
        """
        layers: list[tuple[list[_Row], PriceFile | None]] = []
        if bundled:
            bundle: list[_Row] = []
            bundle_files: list[PriceFile] = []
            base = resources.files("harness").joinpath("data", "prices")
            for entry in sorted(base.iterdir(), key=lambda e: e.name):
                if not entry.name.endswith(".toml"):
                    continue
                data = entry.read_bytes()
                name = f"harness/data/prices/{entry.name}"
                bundle.extend(_parse_rows(_decode(data, name), name))
                bundle_files.append(PriceFile(name, hashlib.sha256(data).hexdigest()))
            _check_layer(_Ctx("harness/data/prices"), [r.price for r in bundle])
            layers.append((bundle, None))
            files = bundle_files
        else:
            files = []
        paths: list[Path] = []
        if user_default:
            user = user_prices_path()
            if user is not None:
                paths.append(user)
        paths.extend(Path(p) for p in overrides)
        for path in paths:
            try:
                data = path.expanduser().read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot read price file ({exc.strerror or exc})") from None
            pf = PriceFile(str(path), hashlib.sha256(data).hexdigest())
            layers.append((_parse_rows(_decode(data, str(path)), str(path)), pf))
            files.append(pf)
        return cls(_merge(layer for layer, _ in layers), files=files)

    def lookup(self, provider: str, model: str, at: datetime | None = None) -> Price:
        """The row for ``provider/model`` (exact id or listed alias) in effect at ``at``.

        Args:
            provider: ``openai``, ``anthropic``, ...
            model: the model id as sent to the provider, or one of its listed aliases.
            at: when the request was made (UTC; a naive datetime is taken as UTC; default now).

        Raises:
            PricingMissing: no such model, or no row covering that date; the message names the fix.
        """
        key = self._names.get((provider, model))
        if key is None:
            raise PricingMissing(f"No price for {provider}/{model}. {_FIX}")
        day = _utc_day(at)
        for p in self._models[key]:
            if p.applies_on(day):
                return p
        spans = ", ".join(_span(p) for p in self._models[key])
        raise PricingMissing(f"No price for {provider}/{model} on {day} (its rows cover {spans}). {_FIX}")

    def has(self, provider: str, model: str) -> bool:
        """Whether ``provider/model`` (id or alias) has any price row at all."""
        return (provider, model) in self._names

    def rows(self, at: datetime | None = None, *, history: bool = False) -> list[Price]:
        """The table's rows, sorted by provider, model and date (for ``tollbench prices``).

        Args:
            at: with ``history=False``, the rows in effect at this time (default now).
            history: every row, past and future ones included.
        """
        if history:
            return list(self._rows)
        day = _utc_day(at)
        return [p for p in self._rows if p.applies_on(day)]

    def find(self, query: str, at: datetime | None = None, *, history: bool = False) -> list[Price]:
        """Rows whose model id or an alias contains ``query`` (case-insensitive).

        ``provider/fragment`` limits the search to one provider. ``at`` and ``history`` are as in
        :meth:`rows`.
        """
        needle = query.strip().lower()
        provider: str | None = None
        if "/" in needle:
            head, rest = needle.split("/", 1)
            if any(p.provider == head for p in self._rows):
                provider, needle = head, rest
        found: list[Price] = []
        for p in self.rows(at, history=history):
            if provider is not None and p.provider != provider:
                continue
            if any(needle in name.lower() for name in (p.model, *p.aliases)):
                found.append(p)
        return found

    def providers(self) -> list[str]:
        """Provider names present in the table."""
        return sorted({p.provider for p in self._rows})

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._rows)} rows, sha256={self.sha256[:12]})"


_FIX = f"Add one with --prices FILE (see docs/pricing.md) or to {USER_PRICES_HINT}."


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def _merge(layers: Iterable[list[_Row]]) -> list[Price]:
    """Merge layers in order: a later layer's rows for a model replace all earlier rows of that model.

    A model a later layer redefines without an ``aliases`` key keeps its earlier aliases. A name a later
    layer claims is taken away from the earlier model that had it (as an alias; when it was the
    earlier model's own id, that model is dropped).
    """
    merged: dict[tuple[str, str], list[Price]] = {}
    for rows in layers:
        grouped: dict[tuple[str, str], list[_Row]] = {}
        for r in rows:
            grouped.setdefault((r.price.provider, r.price.model), []).append(r)
        for key, group in grouped.items():
            provider, model = key
            inherited: tuple[str, ...] = ()
            if key in merged and not any(r.aliases_given for r in group):
                inherited = _aliases(merged[key])
            new = [r.price for r in group]
            claimed = {model, *_aliases(new)}
            for other in list(merged):
                if other[0] != provider or other == key:
                    continue
                if other[1] in claimed:
                    del merged[other]
                    continue
                merged[other] = [
                    replace(p, aliases=tuple(a for a in p.aliases if a not in claimed)) for p in merged[other]
                ]
            taken = {n for k, ps in merged.items() if k[0] == provider and k != key for n in _names(ps)}
            inherited = tuple(a for a in inherited if a not in taken)
            merged[key] = [replace(p, aliases=_union(inherited, p.aliases)) for p in new]
    # Every row of a model lists the model's full alias set.
    out: list[Price] = []
    for ps in merged.values():
        names = _aliases(ps)
        out.extend(replace(p, aliases=names) for p in ps)
    return out


def _aliases(rows: Iterable[Price]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for p in rows for a in p.aliases))


def _names(rows: Iterable[Price]) -> set[str]:
    return {n for p in rows for n in (p.model, *p.aliases)}


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))
