"""The one retry layer (invariant 5).

SDK clients are built with ``max_retries=0``; every retry happens here, through tenacity sleeping with
anyio, so each attempt is visible to the runner and metered as its own call row. Adapters classify a
failure (:class:`~harness.types.RetryDecision`); this module decides how long to wait and when to stop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from harness.errors import ProviderError

__all__ = ["RetryPolicy", "retrying", "should_retry", "wait_seconds"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    """Attempts per item, the first included."""
    max_elapsed_s: float = 900.0
    """Give up retrying an item after this long."""
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    """Cap of the exponential backoff when the provider gave no Retry-After."""
    max_retry_after_s: float = 300.0
    """A Retry-After longer than this is not waited for: the item fails instead."""


def should_retry(exc: BaseException) -> bool:
    """Retry only provider errors the adapter classified as retryable; never cancellation or bugs."""
    return isinstance(exc, ProviderError) and exc.retry.retry


def wait_seconds(policy: RetryPolicy, exc: BaseException | None, attempt_number: int) -> float:
    """Seconds to sleep before the next attempt: the provider's Retry-After when it sent one,
    otherwise exponential backoff with jitter (the SDKs' formula, capped at ``max_wait_s``)."""
    if isinstance(exc, ProviderError) and exc.retry.retry_after_s is not None:
        return max(0.0, min(float(exc.retry.retry_after_s), policy.max_retry_after_s))
    base: float = min(policy.initial_wait_s * 2.0 ** (attempt_number - 1), policy.max_wait_s)
    return base * (1.0 - 0.25 * random.random())


def retrying(policy: RetryPolicy) -> AsyncRetrying:
    """A tenacity ``AsyncRetrying`` configured with ``policy`` that sleeps with anyio and re-raises the
    last error when it gives up."""

    def _wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return wait_seconds(policy, exc, state.attempt_number)

    def _retry_after_too_long(exc: BaseException) -> bool:
        if not should_retry(exc):
            return False
        assert isinstance(exc, ProviderError)
        ra = exc.retry.retry_after_s
        return ra is None or ra <= policy.max_retry_after_s

    return AsyncRetrying(
        sleep=anyio.sleep,
        retry=retry_if_exception(_retry_after_too_long),
        wait=_wait,
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_elapsed_s),
        reraise=True,
    )
