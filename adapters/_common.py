"""Helpers shared by the provider adapters: headers, retry classification, error mapping.

Nothing here imports a provider SDK, so the functions are cheap to unit-test and the registry stays
SDK-free. The adapters call into this module only off the per-chunk hot path (once per call or once
per failure).

The retry policy follows PROTOCOLS.md §5.3-§5.4 and STYLE.md §7.4: ``x-should-retry`` wins; 408, 409,
429 and 5xx (incl. 529) are retried, except quota and billing errors; every other 4xx is final.
"""

from __future__ import annotations

import email.utils
import math
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

import httpx2

from harness.errors import (
    AuthError,
    BadRequest,
    CallTimeout,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
)
from harness.types import FinishReason, RateLimitInfo, RetryDecision, Usage

__all__ = [
    "CONNECTIONS_PER_CLIENT",
    "NON_RETRYABLE_CODES",
    "PROVEN_UNSENT",
    "HeaderLike",
    "billed_unless_proven_free",
    "body_error_fields",
    "ClientPool",
    "ClosesItsIteration",
    "build_timeout",
    "classify_status",
    "close_iteration_with_response",
    "decimal_str",
    "error_for_status",
    "error_status_of_unread_body",
    "hooked_http_client",
    "finish_reason",
    "malformed_stream",
    "no_finish_reason",
    "note_error_status",
    "one_line",
    "parse_duration",
    "parse_reset",
    "rate_limits_from_headers",
    "redact",
    "request_id_from_headers",
    "retry_after_from_headers",
    "stream_error",
    "transport_error",
    "unread_error_body",
]


#: ``httpx2.Headers`` (case-insensitive) or a plain dict with lower-case keys.
HeaderLike = Mapping[str, str]


#: Error ``code``/``type`` values that mean "your account cannot pay": retrying can never help.
NON_RETRYABLE_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_error",
        "billing_not_active",
        "contract_spend_limit_reached",
        "enforced_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)

#: Mid-stream error types (Anthropic ``event: error``, OpenAI ``{"error": ...}``) worth another attempt.
_TRANSIENT_STREAM_TYPES = frozenset(
    {"overloaded_error", "api_error", "server_error", "service_unavailable_error", "timeout_error"}
)
_RATE_LIMIT_STREAM_TYPES = frozenset({"rate_limit_error", "rate_limit_exceeded", "tokens", "requests"})

# -- timeouts -----------------------------------------------------------------------------------------


def build_timeout(*, connect_timeout_s: float, stall_timeout_s: float) -> httpx2.Timeout:
    """The httpx2 timeout every SDK client gets.

    ``read`` is the longest silence allowed between two received byte chunks, so a stream that stalls
    for ``stall_timeout_s`` fails the attempt (OpenAI raises ``APITimeoutError``, Anthropic a raw
    ``httpx2.ReadTimeout``); the whole-attempt deadline is the runner's ``anyio.fail_after``.
    """
    return httpx2.Timeout(
        connect=connect_timeout_s,
        read=stall_timeout_s,
        write=stall_timeout_s,
        pool=stall_timeout_s,
    )


# -- response bodies ----------------------------------------------------------------------------------


class ClosesItsIteration(httpx2.AsyncByteStream):
    """A response body whose close also closes the iteration it handed out.

    An SDK (or our own reader) that stops reading a stream on an error object or a bad line closes the
    response, but the iteration over its body (httpx2's ``BoundAsyncStream.__aiter__`` generator and the
    transport's under it) stayed suspended, for the garbage collector to finalize whenever, on whatever
    thread, it found them (CI once saw "async generator already executing" raised from the simulator's
    thread). With this body, closing the response closes them, on the task that closes it."""

    __slots__ = ("_iterations", "_stream")

    def __init__(self, stream: httpx2.AsyncByteStream) -> None:
        self._stream = stream
        self._iterations: list[AsyncIterator[bytes]] = []

    @property
    def elapsed(self) -> Any:
        """The wrapped body's ``elapsed`` (``httpx2.Response.elapsed`` reads it from the body)."""
        return getattr(self._stream, "elapsed", None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        iteration = self._stream.__aiter__()
        self._iterations.append(iteration)
        return iteration

    async def aclose(self) -> None:
        iterations, self._iterations = self._iterations, []
        try:
            for iteration in iterations:
                if isinstance(iteration, AsyncGenerator):
                    await iteration.aclose()
        finally:
            await self._stream.aclose()


async def close_iteration_with_response(response: httpx2.Response) -> None:
    """An httpx2 ``response`` event hook: the response's close closes its body's iteration
    (:class:`ClosesItsIteration`). Every client the adapters build has it."""
    if isinstance(response.stream, httpx2.AsyncByteStream) and not isinstance(
        response.stream, ClosesItsIteration
    ):
        response.stream = ClosesItsIteration(response.stream)


#: The request extension where :func:`note_error_status` keeps an error response's status and headers.
_ERROR_STATUS = "tollbench.error_status"


async def note_error_status(response: httpx2.Response) -> None:
    """An httpx2 ``response`` event hook: an error status (4xx/5xx) is noted on its request, so that a
    failure reading the error's body (a stall, a cut) is still known to follow an error status
    (:func:`error_status_of_unread_body`). Every client the adapters build has it."""
    if response.status_code >= 400:
        response.request.extensions[_ERROR_STATUS] = (response.status_code, response.headers)


def error_status_of_unread_body(exc: BaseException) -> tuple[int, httpx2.Headers] | None:
    """The HTTP error status and headers received before ``exc``, when ``exc`` is a transport failure
    reading that error response's body; None otherwise.

    The SDKs read an error response's body to build their status error, and the OpenAI SDK does it
    outside the code that wraps transport failures: a body that stalls or is cut arrives as a raw
    ``httpx2.ReadTimeout`` or ``RemoteProtocolError`` with no status on it. The status line was an
    error, received before any output, so the attempt is proven free (invariant 11) and is classified
    by its status, as :func:`error_for_status` does.
    """
    cause = _transport_cause(exc)
    if not isinstance(cause, httpx2.RequestError):
        return None
    try:
        request = cause.request
    except RuntimeError:  # raised before the request was made
        return None
    noted = request.extensions.get(_ERROR_STATUS)
    if not isinstance(noted, tuple):
        return None
    status, headers = noted
    return int(status), headers


def unread_error_body(exc: BaseException, *, provider: str, secrets: tuple[str, ...]) -> ProviderError | None:
    """The harness error for a transport failure while reading an HTTP error's body
    (:func:`error_status_of_unread_body`): the status's own class and retry decision, never billed."""
    noted = error_status_of_unread_body(exc)
    if noted is None:
        return None
    status, headers = noted
    cause = _transport_cause(exc)
    what = type(cause if cause is not None else exc).__name__
    return error_for_status(
        status,
        provider=provider,
        message=f"its error body could not be read ({what})",
        headers=headers,
        error_type=None,
        error_code=None,
        request_id=request_id_from_headers(headers),
        secrets=secrets,
    )


def hooked_http_client(http_client: Callable[..., httpx2.AsyncClient], **kwargs: Any) -> httpx2.AsyncClient:
    """``http_client(**kwargs)`` (an SDK's own httpx2 client class, with its defaults) with the hooks
    every adapter's client has (:func:`note_error_status`, :func:`close_iteration_with_response`)."""
    return http_client(event_hooks={"response": [note_error_status, close_iteration_with_response]}, **kwargs)


# -- connection pools ---------------------------------------------------------------------------------

#: Connections per SDK client in a :class:`ClientPool`. httpcore's pool walks its connections and its
#: waiting requests on every request and every release (probing each idle socket), so one pool of
#: thousands of connections costs time per request in proportion to its size; many small pools do
#: not. At 64 that walk was 8% of a 10,000-stream run's CPU; a client costs about 0.6 ms to make.
CONNECTIONS_PER_CLIENT = 16

_C = TypeVar("_C")


class ClientPool(Generic[_C]):
    """As many SDK clients as a concurrency needs, each with at most :data:`CONNECTIONS_PER_CLIENT`
    connections (all kept alive), made on first need.

    Without it an SDK client has the SDK's pool (1,000 connections, 100 kept alive): at a higher
    concurrency calls wait for a connection until the pool timeout (``PoolTimeout``), and above 100 the
    connections are closed and opened again on every call. :meth:`lease` lends a client with a
    connection to spare.

    Args:
        make: builds one SDK client around the given ``httpx2.AsyncClient`` with the given timeout.
        http_client: the SDK's own httpx client class (``openai.DefaultAsyncHttpxClient``...), called
            with ``limits``, ``timeout`` and a TLS context shared by all clients (building one per
            client would cost tens of milliseconds each).
        max_connections: the most connections in use at once (the run's concurrency).
        timeout: the clients' timeout (:func:`build_timeout`); its pool timeout is dropped: waiting
            for a pooled connection is not a provider failure (the runner's attempt deadline still
            bounds the call).
        base_url: where the clients send (see :func:`_tls_context`).
    """

    def __init__(
        self,
        make: Callable[[httpx2.AsyncClient, httpx2.Timeout], _C],
        *,
        http_client: Callable[..., httpx2.AsyncClient],
        max_connections: int,
        timeout: httpx2.Timeout,
        base_url: str | None = None,
    ) -> None:
        self._make = make
        self._base_url = base_url
        self._http_client = http_client
        self._timeout = httpx2.Timeout(
            connect=timeout.connect, read=timeout.read, write=timeout.write, pool=None
        )
        self._per_client = max(1, min(CONNECTIONS_PER_CLIENT, max_connections))
        self._max_clients = max(1, -(-max_connections // self._per_client))
        self._ssl: ssl.SSLContext | None = None
        self._clients: list[_C] = []
        self._busy: list[int] = []
        self._spare: set[int] = set()  # the clients with a connection to spare
        self._new_client()

    @property
    def clients(self) -> list[_C]:
        """The clients made so far (the first one always exists)."""
        return self._clients

    def _new_client(self) -> int:
        if self._ssl is None:
            self._ssl = _tls_context(self._base_url)
        limits = httpx2.Limits(max_connections=self._per_client, max_keepalive_connections=self._per_client)
        http = hooked_http_client(self._http_client, limits=limits, timeout=self._timeout, verify=self._ssl)
        self._clients.append(self._make(http, self._timeout))
        self._busy.append(0)
        self._spare.add(len(self._clients) - 1)
        return len(self._clients) - 1

    @contextmanager
    def lease(self) -> Iterator[_C]:
        """A client with a connection to spare (a new one when all are full and the pool may grow; past
        the concurrency it was sized for, the least busy), for one call. O(1) but for that last case."""
        busy, spare = self._busy, self._spare
        if spare:
            index = next(iter(spare))
        elif len(busy) < self._max_clients:
            index = self._new_client()
        else:
            index = min(range(len(busy)), key=busy.__getitem__)
        busy[index] += 1
        if busy[index] >= self._per_client:
            spare.discard(index)
        try:
            yield self._clients[index]
        finally:
            busy[index] -= 1
            if busy[index] < self._per_client:
                spare.add(index)

    async def aclose(self) -> None:
        """Close every client's connections."""
        for client in self._clients:
            await client.close()  # type: ignore[attr-defined]


def _tls_context(base_url: str | None) -> ssl.SSLContext:
    """The TLS context of a pool's clients. Loading the trust store takes a tenth of a second or more
    of start-up; a plain ``http://`` endpoint (the simulator, a local server) never needs it, so it
    gets a context that verifies certificates against no trust anchor at all: were it ever
    redirected to ``https://``, the connection would fail, never go unverified."""
    if base_url is not None and base_url.lower().startswith("http://"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED are on
        return ctx
    return httpx2.create_ssl_context()


# -- header parsing -----------------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Parse an OpenAI-style Go duration (``6m0s``, ``12ms``, ``1h2m3.5s``) or plain seconds.

    Returns:
        Seconds as a float, or None when the value is missing or malformed.
    """
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    pos = 0
    total = 0.0
    for m in _GO_DURATION.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return total if pos == len(s) and pos > 0 else None


def parse_reset(text: str | None, *, now: float | None = None) -> float | None:
    """Seconds until a rate-limit window resets.

    Accepts a Go duration (OpenAI ``x-ratelimit-reset-*``) or an RFC 3339 timestamp (Anthropic
    ``anthropic-ratelimit-*-reset``); a timestamp in the past gives 0.
    """
    if text is None:
        return None
    duration = parse_duration(text)
    if duration is not None:
        return duration
    s = text.strip()
    try:
        when = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _int_header(headers: HeaderLike, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def rate_limits_from_headers(headers: HeaderLike, *, now: float | None = None) -> RateLimitInfo | None:
    """Read OpenAI ``x-ratelimit-*`` or Anthropic ``anthropic-ratelimit-*`` headers.

    Returns:
        A :class:`RateLimitInfo`, or None when the response carried no rate-limit header at all.
    """
    for prefix, req, tok in (
        ("x-ratelimit-", "requests", "tokens"),
        ("anthropic-ratelimit-", "requests", "tokens"),
    ):
        if prefix == "x-ratelimit-":
            rem_req = _int_header(headers, f"{prefix}remaining-{req}")
            rem_tok = _int_header(headers, f"{prefix}remaining-{tok}")
            reset_req = parse_reset(headers.get(f"{prefix}reset-{req}"), now=now)
            reset_tok = parse_reset(headers.get(f"{prefix}reset-{tok}"), now=now)
        else:
            rem_req = _int_header(headers, f"{prefix}{req}-remaining")
            rem_tok = _int_header(headers, f"{prefix}{tok}-remaining")
            reset_req = parse_reset(headers.get(f"{prefix}{req}-reset"), now=now)
            reset_tok = parse_reset(headers.get(f"{prefix}{tok}-reset"), now=now)
        if rem_req is None and rem_tok is None and reset_req is None and reset_tok is None:
            continue
        return RateLimitInfo(
            remaining_requests=rem_req,
            remaining_tokens=rem_tok,
            reset_requests_s=reset_req,
            reset_tokens_s=reset_tok,
        )
    return None


def retry_after_from_headers(headers: HeaderLike | None, *, now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date).

    Returns:
        Non-negative seconds, or None when absent or unparseable.
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(str(value).strip())
        except ValueError:
            continue
        if math.isfinite(delay) and delay >= 0:
            return delay / divisor
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


def request_id_from_headers(headers: HeaderLike | None) -> str | None:
    """The provider's request id (OpenAI ``x-request-id``, Anthropic ``request-id``)."""
    if headers is None:
        return None
    value = headers.get("x-request-id") or headers.get("request-id")
    return str(value) if value else None


# -- message hygiene ----------------------------------------------------------------------------------

_KEY_LIKE = re.compile(r"\b(?:(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{3,}|AIza[A-Za-z0-9_\-]{20,})")  # AIza: Google
_BEARER = re.compile(r"(?i)\b(bearer|x-api-key:?)\s+\S+")
_WS = re.compile(r"\s+")
_MAX_MESSAGE = 400


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove anything that looks like an API key or a URL credential from ``text``.

    Removes the given secrets whatever their length (12+ characters wherever they occur, shorter ones
    as whole tokens, see :mod:`harness.redact`), any ``sk-...`` style token (the SDKs echo a masked key
    prefix in 401 bodies), ``Bearer <token>``, long prefixes or suffixes of the given secrets, and
    ``user:pass@`` / ``?api_key=`` credentials inside URLs.
    """
    from harness.redact import redact_secrets, strip_urls_in_text

    text = redact_secrets(strip_urls_in_text(text), secrets)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _KEY_LIKE.sub("[redacted]", text)
    for secret in secrets:
        if len(secret) >= 12:
            # Providers echo masked keys such as "abcd1234****wxyz": drop prefixes/suffixes of 8+.
            text = text.replace(secret[:8], "[redacted]").replace(secret[-8:], "[redacted]")
    return text


def one_line(text: str, *, limit: int = _MAX_MESSAGE) -> str:
    """Collapse whitespace to single spaces and truncate to ``limit`` characters."""
    flat = _WS.sub(" ", text).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def decimal_str(value: object) -> str | None:
    """A provider-reported amount (JSON number or string) as an exact decimal string, or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        # repr() of a float is its shortest round-trip form, so no binary noise leaks into the string.
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite():
        return None
    return format(d, "f")


# -- finish reasons -----------------------------------------------------------------------------------

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refusal",
    "content_filter": "refusal",
}


def finish_reason(raw: str | None) -> FinishReason:
    """Map a provider's stop/finish reason to :data:`harness.types.FinishReason`."""
    if raw is None:
        return "other"
    return _FINISH.get(raw, "other")


# -- error classification -----------------------------------------------------------------------------


def classify_status(
    status: int,
    headers: HeaderLike | None,
    *,
    error_type: str | None = None,
    error_code: str | None = None,
) -> RetryDecision:
    """The retry decision for an HTTP error status (PROTOCOLS.md §5.3, STYLE.md §7.4).

    ``x-should-retry`` wins; quota/billing errors are never retried; 408/409/429/5xx are, with the
    server's ``retry-after`` when given (501 is not: the endpoint does not exist).
    """
    retry_after = retry_after_from_headers(headers)
    if error_code in NON_RETRYABLE_CODES or error_type in NON_RETRYABLE_CODES:
        return RetryDecision.no()
    should = headers.get("x-should-retry") if headers is not None else None
    if should == "false":
        return RetryDecision.no()
    if status == 429:
        return RetryDecision.rate_limit(retry_after)
    if should == "true" or status in (408, 409) or (status >= 500 and status != 501):
        return RetryDecision.transient(retry_after)
    return RetryDecision.no()


def error_for_status(
    status: int,
    *,
    provider: str,
    message: str,
    headers: HeaderLike | None,
    error_type: str | None,
    error_code: str | None,
    request_id: str | None,
    secrets: tuple[str, ...],
) -> ProviderError:
    """Build the harness error for an HTTP error response received before any output.

    Such attempts are never billed, so ``generation_started`` is False.
    """
    decision = classify_status(status, headers, error_type=error_type, error_code=error_code)
    cls: type[ProviderError]
    if status in (401, 403):
        cls = AuthError
    elif status == 429:
        cls = RateLimited
    elif status == 408:
        cls = CallTimeout
    elif status == 409 or status >= 500:
        cls = ProviderUnavailable
    else:
        cls = BadRequest
    kind = error_code or error_type
    text = f"{provider} HTTP {status}" + (f" {kind}" if kind else "") + f": {message}"
    return cls(
        one_line(redact(text, secrets)),
        provider=provider,
        retry=decision,
        status_code=status,
        request_id=request_id,
        error_type=error_type or error_code,
    )


def stream_error(
    *,
    provider: str,
    message: str,
    error_type: str | None,
    error_code: str | None,
    request_id: str | None,
    secrets: tuple[str, ...],
    partial_text: str,
    partial_usage: Usage | None,
) -> ProviderError:
    """Build the harness error for an error object received inside a 200 stream.

    Overloaded/server errors and rate limits are retried; anything else (quota, invalid request) is
    final. ``generation_started`` is True: the provider may bill what it produced.
    """
    kinds = {k for k in (error_type, error_code) if k}
    cls: type[ProviderError]
    decision: RetryDecision
    if kinds & NON_RETRYABLE_CODES:
        cls, decision = BadRequest, RetryDecision.no()
    elif kinds & _RATE_LIMIT_STREAM_TYPES:
        cls, decision = RateLimited, RetryDecision.rate_limit()
    elif kinds & _TRANSIENT_STREAM_TYPES:
        cls, decision = ProviderUnavailable, RetryDecision.transient()
    elif kinds & {"authentication_error", "permission_error", "invalid_api_key"}:
        cls, decision = AuthError, RetryDecision.no()
    else:
        cls, decision = BadRequest, RetryDecision.no()
    kind = error_type or error_code or "error"
    text = f"{provider} stream error {kind}: {message}"
    return cls(
        one_line(redact(text, secrets)),
        provider=provider,
        retry=decision,
        status_code=200,
        request_id=request_id,
        error_type=error_type or error_code,
        generation_started=True,
        partial_text=partial_text,
        partial_usage=partial_usage,
    )


#: httpx2 failures that prove the request never left the process: no connection was made
#: (``ConnectError``, ``ConnectTimeout``; a proxy tunnel that was refused is a ``ProxyError`` and is
#: *not* in the list, since a forwarding proxy may already have passed the request on), no pooled
#: connection was obtained (``PoolTimeout``), or the URL cannot be spoken to at all
#: (``UnsupportedProtocol``). Nothing else proves it.
PROVEN_UNSENT: tuple[type[BaseException], ...] = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.UnsupportedProtocol,
)

_MAX_CAUSE_DEPTH = 16


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The first ``httpx2`` transport error in ``exc``'s explicit cause chain (``exc`` included).

    The SDKs wrap httpx2 failures: ``openai.APIConnectionError``/``APITimeoutError`` and the same
    ``anthropic`` classes are raised ``from`` the httpx2 exception (``__cause__``); the Anthropic SDK
    lets raw ``httpx2`` errors through while a stream is iterated.
    """
    current: BaseException | None = exc
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            return None
        if isinstance(current, httpx2.TransportError):
            return current
        current = current.__cause__
    return None


def billed_unless_proven_free(exc: BaseException, *, response_started: bool) -> bool:
    """Whether a failed attempt may have been billed: True unless the failure proves it free.

    This is the one place that decides docs/design.md invariant 11 for transport failures ("a call is free
    only with proof"). The only proofs are:

    - an HTTP error status received from the provider before any output (handled by
      :func:`error_for_status`, which never calls this, and by :func:`unread_error_body` when the
      error's own body then stalled or was cut);
    - a transport failure whose cause is in :data:`PROVEN_UNSENT`: the connection was never made
      (``ConnectError``, ``ConnectTimeout``), no pooled connection was obtained (``PoolTimeout``), or
      the URL's scheme cannot be sent at all (``UnsupportedProtocol``).

    Everything else, once the request may have left the process, is usage-unknown and returns True,
    so the caller sets ``ProviderError.generation_started`` and the runner charges the reservation:
    a read timeout waiting for the status line (the provider is generating), a connection dropped by a
    proxy or load balancer (``RemoteProtocolError``, ``ReadError``), a write error or timeout part way
    through the body, TLS or stream-end errors the SDK wraps, an SDK error with no cause to inspect,
    and any failure after the response started (``response_started``).

    Args:
        exc: what the SDK (or httpx2) raised; the SDK wrapper or the httpx2 exception itself.
        response_started: the 200 response had arrived (headers received, stream being read).
    """
    if response_started:
        return True
    cause = _transport_cause(exc)
    return not isinstance(cause, PROVEN_UNSENT)


def transport_error(
    exc: BaseException,
    *,
    provider: str,
    timeout: bool,
    generation_started: bool,
    response_started: bool = False,
    request_id: str | None = None,
    partial_text: str = "",
    partial_usage: Usage | None = None,
) -> ProviderError:
    """Build the harness error for a connect error, timeout, stall or dropped connection.

    All of these are retried. ``generation_started`` must come from :func:`billed_unless_proven_free`
    (it is the "may be billed" flag: True charges the reservation). The class says what happened:
    ``ProviderUnavailable`` for a connection never made, ``CallTimeout`` (error type
    ``pool_timeout``) for no pooled connection, ``CallTimeout`` for any other timeout and
    ``StreamInterrupted`` for a connection lost after the request may have been sent.
    ``response_started`` (the 200 response had arrived) only chooses the wording.
    """
    cause = _transport_cause(exc)
    root = cause if cause is not None else (exc.__cause__ if exc.__cause__ is not None else exc)
    detail = type(root).__name__
    error_type = type(exc).__name__
    cls: type[ProviderError]
    if isinstance(cause, httpx2.PoolTimeout) and not generation_started:
        # Waiting for our own connection pool: nothing was sent, and the provider did nothing wrong.
        cls, what, error_type = CallTimeout, "no pooled connection within the timeout", "pool_timeout"
    elif isinstance(cause, PROVEN_UNSENT) and not generation_started:
        cls = CallTimeout if timeout else ProviderUnavailable
        what = "connect timed out" if timeout else "connection failed"
    elif timeout:
        cls = CallTimeout
        what = (
            "stream stalled (no bytes within the stall timeout)"
            if response_started
            else "timed out waiting for the response after the request was sent (usage unknown)"
        )
    else:
        cls = StreamInterrupted
        what = (
            "connection dropped mid-stream"
            if response_started
            else "connection lost after the request was sent (usage unknown)"
        )
    return cls(
        one_line(f"{provider} {what} ({detail})"),
        provider=provider,
        retry=RetryDecision.transient(),
        request_id=request_id,
        error_type=error_type,
        generation_started=generation_started,
        partial_text=partial_text,
        partial_usage=partial_usage,
    )


def malformed_stream(
    exc: ValueError,
    *,
    provider: str,
    request_id: str | None,
    partial_text: str = "",
    partial_usage: Usage | None = None,
    output_bound: int = 0,
) -> ProviderError:
    """Build the harness error for an SSE event whose data is not valid JSON (retried: the provider
    or a proxy garbled one response; the attempt may be billed)."""
    return StreamInterrupted(
        one_line(f"{provider} sent a malformed stream event ({type(exc).__name__})"),
        provider=provider,
        retry=RetryDecision.transient(),
        status_code=200,
        request_id=request_id,
        error_type="malformed_stream",
        generation_started=True,
        partial_text=partial_text,
        partial_usage=partial_usage,
        output_bound=output_bound,
    )


def no_finish_reason(
    *,
    provider: str,
    request_id: str | None,
    partial_text: str = "",
    partial_usage: Usage | None = None,
    output_bound: int = 0,
) -> ProviderError:
    """Build the harness error for a stream that ended (``[DONE]``, or the connection closed cleanly)
    without a finish reason: the answer may be cut short, so it is not an answer. Retried; the attempt
    may be billed (llama.cpp's server ends a running stream this way when the next request arrives)."""
    return StreamInterrupted(
        one_line(f"{provider} ended the stream without a finish reason (the answer may be cut short)"),
        provider=provider,
        retry=RetryDecision.transient(),
        status_code=200,
        request_id=request_id,
        error_type="no_finish_reason",
        generation_started=True,
        partial_text=partial_text,
        partial_usage=partial_usage,
        output_bound=output_bound,
    )


def body_error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    """``(type, code, message)`` from an error body in either provider's shape.

    OpenAI: ``e.body`` is the inner ``error`` object; Anthropic: the full ``{"type": "error",
    "error": {...}}`` envelope. Values that are not strings become None.
    """
    if not isinstance(body, Mapping):
        return None, None, None
    inner = body.get("error")
    obj: Mapping[str, Any] = inner if isinstance(inner, Mapping) else body
    etype = obj.get("type")
    code = obj.get("code")
    details = obj.get("details")
    if code is None and isinstance(details, Mapping):
        code = details.get("error_code")
    message = obj.get("message")
    return (
        etype if isinstance(etype, str) else None,
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else None,
    )
