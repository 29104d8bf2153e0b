"""Per-provider adaptive concurrency.

Each provider (one API key) gets one :class:`AdaptiveLimiter`. It starts at the configured concurrency,
halves on a 429 (at most once per cool-down window, so a burst of 429s from calls that were already in
flight counts once), grows back by one slot per window of successes, and pauses new calls until the
reset time when the rate-limit headers say the remaining requests or tokens are exhausted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from harness.types import RateLimitInfo

__all__ = ["AdaptiveLimiter"]


class AdaptiveLimiter:
    def __init__(self, max_concurrency: int, *, min_concurrency: int = 1, cooldown_s: float = 2.0) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.min_concurrency = max(1, min(min_concurrency, max_concurrency))
        self.cooldown_s = cooldown_s
        self._limit = float(max_concurrency)
        self._in_use = 0
        self._cond = anyio.Condition()
        self._pause_until = 0.0
        self._last_decrease = -1e9
        self._successes = 0
        self.rate_limited = 0
        """How many 429s were reported (for the progress display)."""

    @property
    def limit(self) -> int:
        return max(self.min_concurrency, int(self._limit))

    @property
    def in_use(self) -> int:
        return self._in_use

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of an attempt."""
        await self._acquire()
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._cond:
                    self._in_use -= 1
                    self._cond.notify_all()

    async def _acquire(self) -> None:
        async with self._cond:
            while True:
                now = anyio.current_time()
                if now < self._pause_until:
                    with anyio.move_on_after(self._pause_until - now):
                        await self._cond.wait()
                    continue
                if self._in_use < self.limit:
                    self._in_use += 1
                    return
                await self._cond.wait()

    def on_success(self, rate_limits: RateLimitInfo | None = None) -> None:
        """Additive increase: one more slot per ``limit`` successes, up to the maximum."""
        self._successes += 1
        if self._limit < self.max_concurrency and self._successes >= self.limit:
            self._successes = 0
            self._limit = min(float(self.max_concurrency), self._limit + 1)
        if rate_limits is not None:
            self._pause_for_headers(rate_limits)

    def on_rate_limited(self, retry_after_s: float | None = None) -> None:
        """Multiplicative decrease on a 429, once per cool-down window; pause for Retry-After."""
        self.rate_limited += 1
        now = anyio.current_time()
        if now - self._last_decrease >= self.cooldown_s:
            self._last_decrease = now
            self._limit = max(float(self.min_concurrency), self._limit / 2)
            self._successes = 0
        if retry_after_s:
            self._pause_until = max(self._pause_until, now + min(retry_after_s, 60.0))

    def _pause_for_headers(self, rl: RateLimitInfo) -> None:
        now = anyio.current_time()
        if rl.remaining_requests is not None and rl.remaining_requests <= 0 and rl.reset_requests_s:
            self._pause_until = max(self._pause_until, now + min(rl.reset_requests_s, 60.0))
        if rl.remaining_tokens is not None and rl.remaining_tokens <= 0 and rl.reset_tokens_s:
            self._pause_until = max(self._pause_until, now + min(rl.reset_tokens_s, 60.0))
