"""Splitting one run's budget across its models, with leftover share flowing to models still running.

Without a split, one model with long reasoning could spend the whole budget before the others start
their hard items, and the run would end with one model finished and the rest half done. A split gives
every model its own share of the budget (equal by default, or ``--split model=fraction,...``), so a
model that reaches its share stops without starving the others. When a model finishes (or stops), what
it did not spend is handed to the models still running, in proportion to their original shares.

The :class:`ShareLedger` is in-process and synchronous (no awaits inside a method, so it is atomic
between anyio tasks). It sits *in front of* the run's durable budget ledger (:mod:`harness.budget.ledger`),
which still enforces the run's hard cap: the shares always sum to at most the run's budget.

Amounts are integer nano-dollars (:mod:`harness.pricing.money`); fractions are :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from harness.errors import ConfigError

__all__ = ["ShareLedger", "parse_split", "split_budget"]


def _match_model(name: str, models: Sequence[str]) -> str:
    if name in models:
        return name
    matches = [m for m in models if m.split("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(models)
    if matches:
        raise ConfigError(
            f"--split: {name!r} is ambiguous (matches {', '.join(matches)}); use PROVIDER/MODEL"
        )
    raise ConfigError(f"--split: {name!r} is not one of the run's models ({known})")


def parse_split(text: str, models: Sequence[str]) -> dict[str, Decimal]:
    """Parse ``--split openai/o4-mini=0.6,anthropic/claude-haiku-4-5=40%``.

    Each model may be named by its full name or, when unambiguous, without the provider. A fraction is
    a decimal in (0, 1] or a percentage. Models left out share what the named ones leave, equally.

    Args:
        text: the option's value.
        models: the run's model names.

    Returns:
        Fraction per named model (full names).

    Raises:
        ConfigError: a malformed pair, an unknown or repeated model, a fraction out of range, or
            fractions that sum to more than 1 (or to less than 1 when every model is named).
    """
    out: dict[str, Decimal] = {}
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs:
        raise ConfigError("--split: give MODEL=FRACTION pairs, e.g. openai/o4-mini=0.6,anthropic/x=0.4")
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--split: {pair!r} is not MODEL=FRACTION")
        model = _match_model(name.strip(), models)
        if model in out:
            raise ConfigError(f"--split: {model} is named twice")
        raw = value.strip()
        try:
            frac = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
        except InvalidOperation:
            raise ConfigError(f"--split: {raw!r} for {model} is not a fraction or a percentage") from None
        if not frac.is_finite() or not Decimal(0) < frac <= 1:
            raise ConfigError(f"--split: the share of {model} must be in (0, 1] (got {raw})")
        out[model] = frac
    total = sum(out.values(), Decimal(0))
    if total > 1:
        raise ConfigError(f"--split: the shares sum to {total}, more than 1")
    if len(out) == len(models) and total != 1:
        raise ConfigError(f"--split: the shares sum to {total}; with every model named they must sum to 1")
    return out


def split_budget(
    total_nano: int, models: Sequence[str], split: Mapping[str, Decimal] | None = None
) -> dict[str, int]:
    """Each model's share of ``total_nano``.

    Named models get ``floor(fraction * total)``; the rest is shared equally by the models not named
    (all of them without ``split``). Nano-dollars left by rounding go one each to the first models, so
    the shares sum to exactly ``total_nano`` (or to the named fractions' part, when every model is
    named and the fractions sum to less than 1 -- :func:`parse_split` refuses that).

    Raises:
        ValueError: no models, a negative total, or ``split`` names a model not in ``models``.
    """
    if not models:
        raise ValueError("no models to split the budget between")
    if len(set(models)) != len(models):
        raise ValueError("a model is listed twice")
    if total_nano < 0:
        raise ValueError("the budget must not be negative")
    split = dict(split or {})
    unknown = [m for m in split if m not in models]
    if unknown:
        raise ValueError(f"split names unknown models: {', '.join(unknown)}")
    shares: dict[str, int] = {}
    for model, frac in split.items():
        shares[model] = int((Decimal(total_nano) * frac).to_integral_value(rounding=ROUND_FLOOR))
    rest = [m for m in models if m not in split]
    left = total_nano - sum(shares.values())
    if rest:
        each, extra = divmod(left, len(rest))
        for i, model in enumerate(rest):
            shares[model] = each + (1 if i < extra else 0)
    else:
        fully_named = sum(split.values(), Decimal(0)) == 1
        for model in models[: left if fully_named else 0]:
            shares[model] += 1
    return {m: shares[m] for m in models}


class ShareLedger:
    """Per-model shares of a run's budget, in process.

    ``committed(model)`` is what the model has reserved and not yet settled plus what it has spent; a
    model may reserve ``x`` more only when ``committed + x <= allowance``. :meth:`finish` hands a
    finished or stopped model's unspent allowance to the models still running, in proportion to their
    original shares; amounts it frees later (a reservation settled below its worst case) follow.
    The allowances of all models always sum to the total of the original shares.
    """

    def __init__(self, shares: Mapping[str, int]) -> None:
        """Start with each model's share (see :func:`split_budget`).

        Raises:
            ValueError: no models or a negative share.
        """
        if not shares:
            raise ValueError("no models")
        if any(v < 0 for v in shares.values()):
            raise ValueError("shares must not be negative")
        self._weights = dict(shares)
        self._allowance = dict(shares)
        self._committed = dict.fromkeys(shares, 0)
        self._running = set(shares)
        self.total_nano = sum(shares.values())

    def allowance(self, model: str) -> int:
        """The model's current share, inflows included."""
        return self._allowance[model]

    def committed(self, model: str) -> int:
        """Reserved plus settled spend of the model."""
        return self._committed[model]

    def available(self, model: str) -> int:
        """How much more the model may reserve now (0 once it has finished)."""
        if model not in self._running:
            return 0
        return max(0, self._allowance[model] - self._committed[model])

    def running(self) -> list[str]:
        """Models that have not finished, in the original order."""
        return [m for m in self._allowance if m in self._running]

    def can_reserve(self, model: str, amount_nano: int) -> bool:
        """Whether ``model`` may reserve ``amount_nano`` more within its allowance."""
        if amount_nano < 0:
            raise ValueError("a reservation must not be negative")
        return model in self._running and self._committed[model] + amount_nano <= self._allowance[model]

    def reserve(self, model: str, amount_nano: int) -> bool:
        """Reserve within the model's allowance; False (and nothing reserved) if it does not fit."""
        if not self.can_reserve(model, amount_nano):
            return False
        self._committed[model] += amount_nano
        return True

    def settle(self, model: str, reserved_nano: int, cost_nano: int) -> None:
        """Replace a reservation by the call's actual cost (which may exceed it only by provider
        over-generation; then the model's committed amount grows past the reservation).

        Raises:
            ValueError: negative amounts, or more settled than the model has committed.
        """
        if reserved_nano < 0 or cost_nano < 0:
            raise ValueError("amounts must not be negative")
        if reserved_nano > self._committed[model]:
            raise ValueError(f"{model}: settling {reserved_nano} but only {self._committed[model]} committed")
        self._committed[model] += cost_nano - reserved_nano
        if model not in self._running:
            self._flow_from(model)

    def finish(self, model: str) -> int:
        """Mark the model finished (all its units done, or stopped) and give away its unspent allowance.

        Returns:
            The nano-dollars handed to the models still running (0 when none is).
        """
        if model not in self._running:
            return 0
        self._running.discard(model)
        return self._flow_from(model)

    def _flow_from(self, model: str) -> int:
        spare = self._allowance[model] - self._committed[model]
        takers = self.running()
        if spare <= 0 or not takers:
            return 0
        weights = [self._weights[m] for m in takers]
        total_w = sum(weights)
        if total_w == 0:
            weights, total_w = [1] * len(takers), len(takers)
        given = 0
        for m, w in zip(takers, weights, strict=True):
            part = spare * w // total_w
            self._allowance[m] += part
            given += part
        for m in takers[: spare - given]:  # rounding leftovers, one nano-dollar each
            self._allowance[m] += 1
        self._allowance[model] -= spare
        return spare
