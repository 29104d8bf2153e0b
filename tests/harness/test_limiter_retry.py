"""The per-provider adaptive limiter and the one retry layer."""

from __future__ import annotations

import anyio
import pytest

from harness.errors import BadRequest, RateLimited
from harness.run.limiter import AdaptiveLimiter
from harness.run.retry import RetryPolicy, retrying, should_retry, wait_seconds
from harness.types import RateLimitInfo, RetryDecision

pytestmark = pytest.mark.anyio


def _rate_limited(after: float | None = None) -> RateLimited:
    return RateLimited("429", provider="openai", retry=RetryDecision.rate_limit(after), status_code=429)


async def test_limiter_bounds_concurrency() -> None:
    lim = AdaptiveLimiter(3)
    active = peak = 0

    async def job() -> None:
        nonlocal active, peak
        async with lim.slot():
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.01)
            active -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(job)
    assert peak == 3 and lim.in_use == 0


async def test_limiter_halves_once_per_burst_and_recovers() -> None:
    lim = AdaptiveLimiter(16, cooldown_s=10)
    for _ in range(5):  # a burst of 429s from calls already in flight counts once
        lim.on_rate_limited()
    assert lim.limit == 8
    for _ in range(8):
        lim.on_success()
    assert lim.limit == 9  # one more slot per window of `limit` successes
    for _ in range(200):
        lim.on_success()
    assert lim.limit == 16  # back to the maximum, never above it


async def test_limiter_never_goes_below_one() -> None:
    lim = AdaptiveLimiter(4, cooldown_s=0)
    for _ in range(10):
        lim.on_rate_limited()
    assert lim.limit == 1


async def test_limiter_pauses_when_headers_say_exhausted() -> None:
    lim = AdaptiveLimiter(4)
    lim.on_success(RateLimitInfo(remaining_requests=0, reset_requests_s=0.2))
    t0 = anyio.current_time()
    async with lim.slot():
        waited = anyio.current_time() - t0
    assert waited >= 0.15


async def test_limiter_pauses_for_retry_after() -> None:
    lim = AdaptiveLimiter(4)
    lim.on_rate_limited(retry_after_s=0.2)
    t0 = anyio.current_time()
    async with lim.slot():
        assert anyio.current_time() - t0 >= 0.15


def test_wait_honours_retry_after_and_caps_backoff() -> None:
    policy = RetryPolicy(initial_wait_s=0.5, max_wait_s=4, max_retry_after_s=30)
    assert wait_seconds(policy, _rate_limited(7.5), 1) == 7.5
    assert wait_seconds(policy, _rate_limited(100), 1) == 30
    for attempt in range(1, 12):
        w = wait_seconds(policy, _rate_limited(None), attempt)
        assert 0.75 * min(0.5 * 2 ** (attempt - 1), 4) <= w <= min(0.5 * 2 ** (attempt - 1), 4)


async def test_only_retryable_provider_errors_are_retried() -> None:
    assert should_retry(_rate_limited())
    assert not should_retry(BadRequest("400", provider="openai", retry=RetryDecision.no(), status_code=400))
    assert not should_retry(ValueError("bug"))
    assert not should_retry(anyio.get_cancelled_exc_class()())


async def test_retrying_stops_after_max_attempts_and_reraises() -> None:
    attempts = 0
    with pytest.raises(RateLimited):
        async for attempt in retrying(RetryPolicy(max_attempts=4, initial_wait_s=0.001, max_wait_s=0.001)):
            with attempt:
                attempts += 1
                raise _rate_limited()
    assert attempts == 4


async def test_retrying_does_not_wait_for_an_absurd_retry_after() -> None:
    attempts = 0
    with pytest.raises(RateLimited):
        async for attempt in retrying(RetryPolicy(max_attempts=5, max_retry_after_s=1)):
            with attempt:
                attempts += 1
                raise _rate_limited(3600)
    assert attempts == 1


async def test_retrying_never_retries_a_bad_request() -> None:
    attempts = 0
    with pytest.raises(BadRequest):
        async for attempt in retrying(RetryPolicy(max_attempts=5)):
            with attempt:
                attempts += 1
                raise BadRequest("400", provider="openai", retry=RetryDecision.no(), status_code=400)
    assert attempts == 1
