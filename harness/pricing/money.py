"""Exact money: decimals in, integers at rest.

Every amount tollbench stores or compares is an ``int`` number of nano-dollars (1e-9 USD). Amounts are
computed with :class:`~decimal.Decimal` and converted with :func:`usd_to_nano`, which rounds *up*, so a
stored cost is never below the true cost. No float ever enters a money path.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

__all__ = [
    "MAX_BUDGET_USD",
    "NANO_PER_USD",
    "format_usd",
    "nano_to_usd",
    "parse_usd",
    "usd_str",
    "usd_to_nano",
]

NANO_PER_USD = 10**9

_CTX = decimal.Context(prec=60, rounding=decimal.ROUND_CEILING)


def usd_to_nano(amount: Decimal) -> int:
    """Convert a USD amount to integer nano-dollars, rounding up (towards +infinity)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be Decimal, not {type(amount).__name__}")
    scaled = _CTX.multiply(amount, Decimal(NANO_PER_USD))
    return int(scaled.to_integral_value(rounding=decimal.ROUND_CEILING))


def nano_to_usd(nano: int) -> Decimal:
    """Convert integer nano-dollars back to an exact USD Decimal."""
    return Decimal(nano).scaleb(-9)


def parse_usd(text: str) -> Decimal:
    """Parse a user-supplied dollar amount (``"25"``, ``"$1,000.50"``); raises ValueError if invalid."""
    cleaned = text.strip().removeprefix("$").replace(",", "").replace("_", "")
    try:
        value = Decimal(cleaned)
    except decimal.InvalidOperation:
        raise ValueError(f"not a dollar amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a non-negative dollar amount: {text!r}")
    return value


def format_usd(nano: int, places: int = 4) -> str:
    """Format nano-dollars for people: ``$1,234.5678`` (rounded half-even for display only)."""
    q = Decimal(1).scaleb(-places)
    value = nano_to_usd(nano).quantize(q, rounding=decimal.ROUND_HALF_EVEN)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def usd_str(nano: int) -> str:
    """Exact decimal string of a nano-dollar amount, as JSON output uses (``"0.000123"``)."""
    d = nano_to_usd(nano).normalize()
    text = format(d, "f")
    return text


#: The largest budget a run may have: $1e9 is 1e18 nano-dollars, well inside a signed 64-bit column
#: (9.2e18) even after ``resume --add-budget`` and summing runs in ``costs``.
MAX_BUDGET_USD = Decimal("1000000000")
