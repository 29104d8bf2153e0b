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
     |    +-- StreamInterrupted  the connection was lost after the request was sent, or the stream
     |                           was malformed mid-body
     +-- BudgetExhausted        the next reservation does not fit the run's budget with nothing of
     |    |                     this process in flight: the run stops (exit 3)
     |    +-- ShareExhausted     one model's share of a split budget ran out: that model stops
     +-- StorageError           the database cannot be opened, read or written
"""

from __future__ import annotations

from harness.types import RetryDecision, Usage

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
    "ShareExhausted",
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

    ``generation_started`` (read it as :attr:`may_be_billed`) is the billing flag of docs/design.md invariant
    11, "a call is free only with proof": True means *not proven free*, and the runner charges the
    attempt its full reservation (its usage is unknown). It is False only when the attempt is proven
    free:

    - the provider answered with an HTTP error status (4xx, 429, 5xx, 529) before any output, or
    - the request provably never left the process: the connection was never made (connect error or
      connect timeout), no pooled connection was obtained (pool timeout), or the URL cannot be used.

    Everything else after the request may have been sent is True, even with no response status yet:
    a read timeout waiting for the headers, a connection dropped by a proxy or load balancer, a
    protocol error, a write error part way through the body, a stall or a cut mid-stream, an error
    event inside a 200 stream. The adapters decide it in one place,
    :func:`adapters._common.billed_unless_proven_free`.
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
        output_bound: int = 0,
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
        #: An upper bound of the output tokens received before the failure (at least the UTF-8 bytes
        #: of ``partial_text``); a failure that may be billed is charged at least this.
        self.output_bound = max(output_bound, len(partial_text.encode("utf-8", "surrogatepass")))

    @property
    def may_be_billed(self) -> bool:
        """True unless the attempt is proven free (the clearer name of ``generation_started``)."""
        return self.generation_started


class RateLimited(ProviderError):
    """HTTP 429 (retryable unless it is a quota error)."""


class ProviderUnavailable(ProviderError):
    """5xx, 529 or an overloaded/server error event in the stream."""


class AuthError(ProviderError):
    """401 or 403: the key is missing, wrong or lacks permission."""


class BadRequest(ProviderError):
    """A 4xx other than 401/403/408/409/429: the request itself is wrong; never retried."""


class CallTimeout(ProviderError):
    """The attempt timed out, the response or stream stalled longer than the stall timeout, or no
    pooled connection was free in time (``error_type == "pool_timeout"``, never sent, free)."""


class StreamInterrupted(ProviderError):
    """The connection was lost after the request may have been sent (before or after the response
    started), or the stream was malformed; always ``may_be_billed``."""


class UnitLost(HarnessError):
    """This worker's lease on the unit ran out (the process was paused or starved) and another worker
    may have taken it: the attempt it had reserved is not sent (settled at 0) and the unit is left to
    its new owner (harness.run.claims)."""


class BudgetExhausted(HarnessError):
    """The next reservation does not fit in the run's budget (all amounts in nano-dollars)."""

    def __init__(
        self, *, spent: int, reserved: int, limit: int, attempted: int, what: str = "budget"
    ) -> None:
        from harness.pricing.money import format_usd

        super().__init__(
            f"{what} exhausted: spent {format_usd(spent)} + reserved {format_usd(reserved)} "
            f"+ next call {format_usd(attempted)} > {what} {format_usd(limit)}"
        )
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.attempted = attempted


class ShareExhausted(BudgetExhausted):
    """The next reservation of ``model`` does not fit its share of a split budget, and no share can come
    back or flow in (see :mod:`harness.budget.shares`): that model stops, the others go on."""

    def __init__(self, *, model: str, spent: int, reserved: int, limit: int, attempted: int) -> None:
        super().__init__(
            spent=spent, reserved=reserved, limit=limit, attempted=attempted, what=f"{model}'s budget share"
        )
        self.model = model


class StorageError(HarnessError):
    """The database cannot be opened, read or written; the message names the file and the fix."""
