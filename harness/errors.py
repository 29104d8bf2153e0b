"""tollbench's exceptions.

::

    HarnessError
     +-- ConfigError            bad usage or configuration: the CLI exits 2 with a one-line message
     |    +-- PricingMissing     a model has no price
     |    +-- MissingApiKey      no key in the environment for a live run
     |    +-- UnknownSuite
     |    +-- UnknownModel
     |    +-- DataError          a malformed input file (names the file and line)
     +-- ProviderError          one failed attempt at a provider call (carries a RetryDecision)
     |    +-- RateLimited        429
     |    +-- ProviderUnavailable 5xx / 529 / overloaded, also mid-stream
     |    +-- AuthError          401 / 403
     |    +-- BadRequest         other 4xx
     |    +-- CallTimeout        attempt timeout or stream stall
     |    +-- StreamInterrupted  the connection dropped or the stream was malformed mid-body
     +-- BudgetExhausted        the next reservation does not fit the run's budget
     +-- StorageError           the database cannot be opened, read or written
"""

from __future__ import annotations

from .types import RetryDecision, Usage

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetExhausted",
    "CallTimeout",
    "ConfigError",
    "DataError",
    "HarnessError",
    "MissingApiKey",
    "PricingMissing",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "StorageError",
    "StreamInterrupted",
    "UnknownModel",
    "UnknownSuite",
]


class HarnessError(Exception):
    """Base class of every error tollbench raises on purpose."""


class ConfigError(HarnessError):
    """Bad usage or configuration; the message says what to fix."""


class PricingMissing(ConfigError):
    """A model has no price, so it cannot be run under a budget."""


class MissingApiKey(ConfigError):
    """A live run was asked for without the provider's API key."""


class UnknownSuite(ConfigError):
    """No suite by that name."""


class UnknownModel(ConfigError):
    """The model id or alias cannot be resolved."""


class DataError(ConfigError):
    """A malformed input file."""


class ProviderError(HarnessError):
    """One failed attempt at a provider call.

    ``generation_started`` is True when the provider accepted the request and started producing
    output (HTTP 200 received): such an attempt may be billed even though it failed, so the runner
    charges its reservation. Failures before that (4xx, 429, 5xx status, connect errors) cost nothing.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retry: RetryDecision,
        status_code: int | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
        generation_started: bool = False,
        partial_text: str = "",
        partial_usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retry = retry
        self.status_code = status_code
        self.request_id = request_id
        self.error_type = error_type
        self.generation_started = generation_started
        self.partial_text = partial_text
        self.partial_usage = partial_usage


class RateLimited(ProviderError):
    """HTTP 429 (retryable unless it is a quota error)."""


class ProviderUnavailable(ProviderError):
    """5xx, 529 or an overloaded/server error event in the stream."""


class AuthError(ProviderError):
    """401 or 403: the key is missing, wrong or lacks permission."""


class BadRequest(ProviderError):
    """A 4xx other than 401/403/408/409/429: the request itself is wrong; never retried."""


class CallTimeout(ProviderError):
    """The attempt timed out, or the stream stalled longer than the stall timeout."""


class StreamInterrupted(ProviderError):
    """The connection dropped, or the stream was malformed, after generation started."""


class BudgetExhausted(HarnessError):
    """The next reservation does not fit in the run's budget (all amounts in nano-dollars)."""

    def __init__(self, *, spent: int, reserved: int, limit: int, attempted: int) -> None:
        from .money import format_usd

        super().__init__(
            f"budget exhausted: spent {format_usd(spent)} + reserved {format_usd(reserved)} "
            f"+ next call {format_usd(attempted)} > budget {format_usd(limit)}"
        )
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.attempted = attempted


class StorageError(HarnessError):
    """The database cannot be opened, read or written; the message names the file and the fix."""
