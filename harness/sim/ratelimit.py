"""A per-model request/token window and the rate-limit headers both providers send (PROTOCOLS.md §5).

Each model has a fixed one-minute window with the profile's ``rpm`` and ``tpm`` limits. A request
asks for one request and ``prompt + max_output`` tokens; if either limit would be exceeded the server
answers a real 429 with ``retry-after`` set to the rest of the window. Refused requests consume
nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Admission", "RateLimiter", "anthropic_headers", "go_duration", "openai_headers"]

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of one admission check, with what the headers report."""

    allowed: bool
    limit_requests: int
    limit_tokens: int
    remaining_requests: int
    remaining_tokens: int
    reset_s: float
    which: str = ""
    """``requests`` or ``tokens`` when refused."""
    requested_tokens: int = 0


class _Window:
    __slots__ = ("requests", "start", "tokens")

    def __init__(self, now: float) -> None:
        self.start = now
        self.requests = 0
        self.tokens = 0


class RateLimiter:
    """Fixed-window counters per model (the server's event loop is the only writer)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def admit(self, model: str, rpm: int, tpm: int, tokens: int) -> Admission:
        """Count one request of ``tokens`` tokens against ``model``'s window if it fits."""
        now = time.monotonic()
        w = self._windows.get(model)
        if w is None or now - w.start >= WINDOW_S:
            w = self._windows[model] = _Window(now)
        reset = max(0.0, WINDOW_S - (now - w.start))
        if w.requests + 1 > rpm:
            return Admission(
                False, rpm, tpm, max(0, rpm - w.requests), max(0, tpm - w.tokens), reset, "requests", tokens
            )
        if w.tokens + tokens > tpm:
            return Admission(
                False, rpm, tpm, max(0, rpm - w.requests), max(0, tpm - w.tokens), reset, "tokens", tokens
            )
        w.requests += 1
        w.tokens += tokens
        return Admission(True, rpm, tpm, rpm - w.requests, tpm - w.tokens, reset, "", tokens)

    def peek(self, model: str, rpm: int, tpm: int) -> Admission:
        """The window's state without counting anything."""
        now = time.monotonic()
        w = self._windows.get(model)
        if w is None or now - w.start >= WINDOW_S:
            return Admission(True, rpm, tpm, rpm, tpm, 0.0)
        reset = max(0.0, WINDOW_S - (now - w.start))
        return Admission(True, rpm, tpm, max(0, rpm - w.requests), max(0, tpm - w.tokens), reset)


def go_duration(seconds: float) -> str:
    """Format like OpenAI's reset headers: ``12ms``, ``1s``, ``6m0s``, ``1h2m3.5s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    total = round(seconds, 3)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    s_txt = f"{s:.3f}".rstrip("0").rstrip(".")
    if h:
        return f"{int(h)}h{int(m)}m{s_txt}s"
    if m:
        return f"{int(m)}m{s_txt}s"
    return f"{s_txt}s"


def openai_headers(a: Admission) -> dict[str, str]:
    """``x-ratelimit-*`` headers."""
    reset = go_duration(a.reset_s)
    return {
        "x-ratelimit-limit-requests": str(a.limit_requests),
        "x-ratelimit-limit-tokens": str(a.limit_tokens),
        "x-ratelimit-remaining-requests": str(a.remaining_requests),
        "x-ratelimit-remaining-tokens": str(a.remaining_tokens),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-reset-tokens": reset,
    }


def anthropic_headers(a: Admission) -> dict[str, str]:
    """``anthropic-ratelimit-*`` headers (resets as RFC 3339 instants)."""
    reset_at = datetime.fromtimestamp(math.ceil(time.time() + a.reset_s), tz=UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    out = {
        "anthropic-ratelimit-requests-limit": str(a.limit_requests),
        "anthropic-ratelimit-requests-remaining": str(a.remaining_requests),
        "anthropic-ratelimit-requests-reset": reset_at,
        "anthropic-ratelimit-tokens-limit": str(a.limit_tokens),
        "anthropic-ratelimit-tokens-remaining": str(a.remaining_tokens),
        "anthropic-ratelimit-tokens-reset": reset_at,
    }
    for kind in ("input-tokens", "output-tokens"):
        out[f"anthropic-ratelimit-{kind}-limit"] = str(a.limit_tokens)
        out[f"anthropic-ratelimit-{kind}-remaining"] = str(a.remaining_tokens)
        out[f"anthropic-ratelimit-{kind}-reset"] = reset_at
    return out
