"""The simulator's own bill: what it charged for every request, per model and in total.

Billing rules (as a provider bills):

- a request refused before generation (4xx, 429, 5xx or 529 before the first byte) costs nothing;
- a completed request is billed for the usage the response reported;
- a stream the server cut (fault) or that ended with an error event is billed for the whole input
  plus the output tokens of the events actually sent before the cut (OpenAI reasoning tokens count
  as produced once the first event after reasoning is sent);
- a stream the client dropped is billed the same way, up to the last event the server had handed to
  the transport when it noticed the disconnect (so possibly a little more than the client read; at
  ``speed=0`` the whole response is usually written before the drop is seen, and billed in full).

Usage is converted to :class:`harness.types.Usage` exactly as tollbench's adapters do
(PROTOCOLS.md §8.1) and priced with the injected pricer, per request, rounded up to nano-dollars.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from harness.pricing.money import usd_str, usd_to_nano
from harness.sim.profiles import ModelProfile
from harness.types import Usage

__all__ = [
    "Invoice",
    "Pricer",
    "RequestRecord",
    "default_pricer",
    "usage_from_anthropic",
    "usage_from_openai",
]

Pricer = Callable[[str, str, Usage], Decimal]
"""``(provider, model, usage) -> USD``."""


def _int(d: Mapping[str, Any] | None, key: str) -> int:
    if not d:
        return 0
    v = d.get(key)
    return int(v) if isinstance(v, int) else 0


def usage_from_openai(raw: Mapping[str, Any]) -> Usage:
    """Normalise an OpenAI chat (``prompt_tokens``...) or Responses (``input_tokens``...) usage."""
    if "prompt_tokens" in raw:
        prompt, out = _int(raw, "prompt_tokens"), _int(raw, "completion_tokens")
        in_d, out_d = raw.get("prompt_tokens_details"), raw.get("completion_tokens_details")
    else:
        prompt, out = _int(raw, "input_tokens"), _int(raw, "output_tokens")
        in_d, out_d = raw.get("input_tokens_details"), raw.get("output_tokens_details")
    cached, write = _int(in_d, "cached_tokens"), _int(in_d, "cache_write_tokens")
    return Usage(
        input_uncached=prompt - cached - write,
        cache_read=cached,
        cache_write_5m=write,
        output=out,
        reasoning=_int(out_d, "reasoning_tokens"),
    )


def usage_from_anthropic(raw: Mapping[str, Any]) -> Usage:
    """Normalise an Anthropic (merged) usage: cache tokens are on top of ``input_tokens``."""
    creation = _int(raw, "cache_creation_input_tokens")
    breakdown = raw.get("cache_creation")
    if isinstance(breakdown, Mapping):
        w1h = _int(breakdown, "ephemeral_1h_input_tokens")
        w5m = creation - w1h
    else:
        w5m, w1h = creation, 0
    return Usage(
        input_uncached=_int(raw, "input_tokens"),
        cache_read=_int(raw, "cache_read_input_tokens"),
        cache_write_5m=w5m,
        cache_write_1h=w1h,
        output=_int(raw, "output_tokens"),
        reasoning=_int(raw.get("output_tokens_details"), "thinking_tokens"),
    )


def default_pricer(profiles: Mapping[str, ModelProfile]) -> Pricer:
    """tollbench's price table (``harness.pricing.table``) when it has the model, else the profile prices.

    Lookups are cached per (provider, model); the table is loaded once, lazily.
    """
    cache: dict[tuple[str, str], Any] = {}
    table: list[Any] = []

    def _table() -> Any:
        if not table:
            try:
                from harness.pricing import table as pricing

                table.append(pricing.PriceTable.load())
            except Exception:
                table.append(None)
        return table[0]

    def price(provider: str, model: str, usage: Usage, *, batch: bool = False) -> Decimal:
        key = (provider, model)
        if key not in cache:
            found: Any = None
            t = _table()
            if t is not None:
                try:
                    found = t.lookup(provider, model)
                except Exception:
                    found = None
            cache[key] = found
        found = cache[key]
        if found is not None:
            cost = found.cost(usage, batch=True) if batch else found.cost(usage)
            if isinstance(cost, Decimal):
                return cost
        profile = profiles.get(model) or profiles.get(f"{provider}/{model}")
        if profile is None:
            raise KeyError(f"no price for {provider}/{model}")
        full = profile.fallback_cost(usage.as_dict())
        return full / 2 if batch else full

    return price


@dataclass(slots=True)
class RequestRecord:
    """One request as billed."""

    request_id: str
    provider: str
    api: str
    model: str | None
    response_model: str | None
    body_id: str | None
    stream: bool
    status: str
    """``completed``, ``incomplete`` (output limit), ``cut`` (server fault), ``error_event``,
    ``client_disconnected`` or ``refused``."""
    http_status: int
    usage: Usage
    raw_usage: Mapping[str, Any] | None
    nano: int
    fault: str | None = None
    client_request_id: str | None = None
    """The client's ``x-client-request-id`` header (tollbench sends its call id), for reconciliation."""

    @property
    def billed(self) -> bool:
        return self.status != "refused"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (money as a decimal string)."""
        return {
            "request_id": self.request_id,
            "provider": self.provider,
            "api": self.api,
            "model": self.model,
            "response_model": self.response_model,
            "body_id": self.body_id,
            "stream": self.stream,
            "status": self.status,
            "http_status": self.http_status,
            "billed": self.billed,
            "fault": self.fault,
            "client_request_id": self.client_request_id,
            "tokens": self.usage.as_dict(),
            "raw_usage": dict(self.raw_usage) if self.raw_usage is not None else None,
            "usd": usd_str(self.nano),
        }


class _Totals:
    __slots__ = ("billed", "nano", "refused", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.nano = 0
        self.billed = 0
        self.refused = 0

    def add(self, r: RequestRecord) -> None:
        if r.billed:
            self.billed += 1
            self.usage = self.usage + r.usage
            self.nano += r.nano
        else:
            self.refused += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": {"total": self.billed + self.refused, "billed": self.billed, "refused": self.refused},
            "tokens": self.usage.as_dict(),
            "usd": usd_str(self.nano),
        }


class Invoice:
    """Thread-safe ledger of billed requests (the server thread writes, any thread reads)."""

    def __init__(self, pricer: Pricer) -> None:
        self._pricer = pricer
        self._lock = threading.Lock()
        self._records: dict[str, RequestRecord] = {}
        self._models: dict[str, tuple[str, _Totals]] = {}
        self._total = _Totals()
        self._in_progress: dict[str, int] = {}
        self.instance = secrets.token_hex(8)
        """Identifies this invoice: a restarted simulator, or a reset of its invoice, has a new one (and
        an empty bill)."""

    def begin(self, client_request_id: str | None) -> None:
        """Note a request that arrived and is not billed yet (until :meth:`record` sees its id)."""
        if client_request_id:
            with self._lock:
                self._in_progress[client_request_id] = self._in_progress.get(client_request_id, 0) + 1

    def price(self, provider: str, model: str, usage: Usage) -> Decimal:
        """What ``usage`` of ``provider/model`` costs on this invoice (US dollars)."""
        return self._pricer(provider, model, usage)

    def _batch_price(self, provider: str, model: str, usage: Usage) -> Decimal:
        """The batch price: the pricer's own (``batch=True``) when it has one, else half the price."""
        try:
            return self._pricer(provider, model, usage, batch=True)  # type: ignore[call-arg]
        except TypeError:
            return self._pricer(provider, model, usage) / 2

    def record(
        self,
        *,
        request_id: str,
        provider: str,
        api: str,
        model: str | None,
        response_model: str | None = None,
        body_id: str | None = None,
        stream: bool = False,
        status: str,
        http_status: int,
        usage: Usage | None = None,
        raw_usage: Mapping[str, Any] | None = None,
        fault: str | None = None,
        client_request_id: str | None = None,
        batch: bool = False,
    ) -> RequestRecord:
        """Price and store one request (a refused one is stored with zero usage and cost); a request
        of a batch (``batch``) at the batch price."""
        u = usage if (usage is not None and status != "refused") else Usage()
        nano = 0
        if status != "refused" and model is not None:
            nano = usd_to_nano(
                self._batch_price(provider, model, u) if batch else self._pricer(provider, model, u)
            )
        rec = RequestRecord(
            request_id,
            provider,
            api,
            model,
            response_model,
            body_id,
            stream,
            status,
            http_status,
            u,
            raw_usage,
            nano,
            fault,
            client_request_id,
        )
        with self._lock:
            if client_request_id and client_request_id in self._in_progress:
                left = self._in_progress[client_request_id] - 1
                if left > 0:
                    self._in_progress[client_request_id] = left
                else:
                    del self._in_progress[client_request_id]
            self._records[request_id] = rec
            self._total.add(rec)
            if model is not None:
                if model not in self._models:
                    self._models[model] = (provider, _Totals())
                self._models[model][1].add(rec)
        return rec

    def reset(self) -> str:
        """Forget everything billed so far and start a new invoice: a new :attr:`instance` (epoch).

        A request billed before the reset is absent from the new invoice although it was billed, so
        the new invoice must not be able to "prove" it never arrived: ``reconcile`` settles a call at
        $0 only when the call was sent to the very invoice it reads (``calls.sent_to`` =
        ``sim:<instance>``). Requests in progress at the reset are billed on the new invoice.

        Returns:
            The new instance id.
        """
        with self._lock:
            self._records.clear()
            self._models.clear()
            self._total = _Totals()
            self.instance = secrets.token_hex(8)
            return self.instance

    def get(self, request_id: str) -> RequestRecord | None:
        """The record for a request id (the ``x-request-id`` / ``request-id`` header value)."""
        with self._lock:
            return self._records.get(request_id)

    def as_json(self) -> dict[str, Any]:
        """The invoice as ``GET /sim/invoice`` serves it."""
        with self._lock:
            models = {
                m: {"provider": provider, **totals.as_dict()}
                for m, (provider, totals) in self._models.items()
            }
            return {
                "currency": "USD",
                "instance": self.instance,
                "in_progress": sorted(self._in_progress),
                "total": self._total.as_dict(),
                "models": models,
                "requests": {rid: r.as_dict() for rid, r in self._records.items()},
            }
