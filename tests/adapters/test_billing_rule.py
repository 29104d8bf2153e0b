"""docs/design.md invariant 11: a call is free only with proof (issue 10, defect 1).

Only an HTTP error status received before any output, a connection that was never made, or a pooled
connection that was never obtained proves an attempt free. Anything else once the request may have
left the process (a read timeout waiting for the headers, a connection dropped by a proxy, a protocol
error, a write error mid-body) may be billed: the error says ``generation_started``/``may_be_billed``,
and the runner charges the reservation.

Unit tests per exception kind for both SDKs, real-SDK tests over loopback, and an end-to-end run
against the simulator behind a proxy that delays the response bytes.
"""

from __future__ import annotations

import sqlite3
import ssl
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest
from adapters_testkit import API_KEY, APIS, make_request, spec_for
from helpers.delay_proxy import DelayProxy

from adapters import create_adapter
from adapters.anthropic_messages import map_anthropic_error
from adapters.openai_chat import map_openai_error
from harness.errors import CallTimeout, ProviderError, ProviderUnavailable
from harness.pricing.money import usd_to_nano
from harness.pricing.table import PriceTable
from harness.sim import SimServer

_REQ = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")

# (httpx2 exception, proven free?)
KINDS: list[tuple[BaseException, bool]] = [
    (httpx2.ConnectError("refused"), True),
    (httpx2.ConnectTimeout("connect timed out"), True),
    (httpx2.PoolTimeout("no pooled connection"), True),
    (httpx2.UnsupportedProtocol("ftp://"), True),
    (httpx2.ReadTimeout("no headers yet"), False),
    (httpx2.WriteTimeout("body not written"), False),
    (httpx2.ReadError("reset by peer"), False),
    (httpx2.WriteError("broken pipe mid-body"), False),
    (httpx2.RemoteProtocolError("Server disconnected without sending a response."), False),
    (httpx2.LocalProtocolError("bad framing"), False),
    (httpx2.CloseError("close failed"), False),
    (httpx2.ProxyError("proxy said 502"), False),
    (anyio.EndOfStream(), False),
    (ssl.SSLError("bad record mac"), False),
]
_IDS = [type(e).__name__ for e, _ in KINDS]


def _openai_wrap(cause: BaseException) -> openai.APIError:
    exc: openai.APIError
    if isinstance(cause, httpx2.TimeoutException):
        exc = openai.APITimeoutError(request=_REQ)
    else:
        exc = openai.APIConnectionError(request=_REQ)
    exc.__cause__ = cause
    return exc


def _anthropic_wrap(cause: BaseException) -> anthropic.APIError:
    exc: anthropic.APIError
    if isinstance(cause, httpx2.TimeoutException):
        exc = anthropic.APITimeoutError(request=_REQ)
    else:
        exc = anthropic.APIConnectionError(request=_REQ)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(("cause", "free"), KINDS, ids=_IDS)
def test_rule_on_each_transport_kind(cause: BaseException, free: bool) -> None:
    from adapters._common import billed_unless_proven_free

    assert billed_unless_proven_free(cause, response_started=False) is (not free)
    assert billed_unless_proven_free(_openai_wrap(cause), response_started=False) is (not free)
    assert billed_unless_proven_free(_anthropic_wrap(cause), response_started=False) is (not free)
    # Once the response had begun nothing is free, whatever the cause says.
    assert billed_unless_proven_free(cause, response_started=True) is True


def test_an_sdk_error_without_a_cause_is_not_proof() -> None:
    from adapters._common import billed_unless_proven_free

    assert billed_unless_proven_free(openai.APIConnectionError(request=_REQ), response_started=False)
    assert billed_unless_proven_free(anthropic.APITimeoutError(request=_REQ), response_started=False)
    assert billed_unless_proven_free(RuntimeError("?"), response_started=False)


def _check(err: ProviderError | None, cause: BaseException, free: bool) -> None:
    assert err is not None
    assert err.generation_started is (not free)
    assert err.may_be_billed is (not free)
    assert err.retry.retry is True, "every transport failure is worth another attempt"
    assert "\n" not in str(err) and API_KEY not in str(err)
    if isinstance(cause, httpx2.PoolTimeout):
        assert isinstance(err, CallTimeout) and err.error_type == "pool_timeout"
    elif isinstance(cause, httpx2.ConnectError):
        assert isinstance(err, ProviderUnavailable)


@pytest.mark.parametrize(("cause", "free"), KINDS, ids=_IDS)
def test_openai_mapping_before_the_response(cause: BaseException, free: bool) -> None:
    err = map_openai_error(_openai_wrap(cause), generation_started=False, api_key=API_KEY)
    _check(err, cause, free)


@pytest.mark.parametrize(("cause", "free"), KINDS, ids=_IDS)
def test_anthropic_mapping_before_the_response(cause: BaseException, free: bool) -> None:
    err = map_anthropic_error(_anthropic_wrap(cause), generation_started=False, api_key=API_KEY)
    _check(err, cause, free)
    if isinstance(cause, httpx2.TransportError):
        # The Anthropic SDK lets raw httpx2 errors through while iterating; same rule.
        raw = map_anthropic_error(cause, generation_started=False, api_key=API_KEY)
        _check(raw, cause, free)


def test_may_be_billed_is_generation_started() -> None:
    err = ProviderError("x", provider="openai", retry=_openai_retry(), generation_started=True)
    assert err.may_be_billed is True
    err.generation_started = False
    assert err.may_be_billed is False


def _openai_retry() -> Any:
    from harness.types import RetryDecision

    return RetryDecision.transient()


# -- through the real SDKs over loopback ---------------------------------------------------------


def _base(api: str, url: str) -> str:
    return url if api == "messages" else url + "/v1"


@pytest.mark.anyio
@pytest.mark.parametrize("api", APIS)
async def test_connection_dropped_after_the_request_is_billed(api: str) -> None:
    with DelayProxy(None) as dropper:
        adapter = create_adapter(
            spec_for(api), api_key=API_KEY, base_url=_base(api, dropper.url), stall_timeout_s=2.0
        )
        try:
            with anyio.fail_after(5), pytest.raises(ProviderError) as info:
                await adapter.complete(make_request(api))
        finally:
            await adapter.aclose()
        assert dropper.connections == 1, "the SDK must not retry on its own"
    assert info.value.generation_started is True
    assert info.value.retry.retry is True


@pytest.fixture(scope="module")
def sim() -> Any:
    with SimServer(seed=3) as server:
        yield server


def _quiet_invoice(sim: SimServer) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        invoice: dict[str, Any] = sim.invoice()
        if not invoice["in_progress"] or time.monotonic() > deadline:
            return invoice
        time.sleep(0.05)


_SIM_MODEL = {"chat": "gpt-4o-mini", "responses": "gpt-4o-mini", "messages": "claude-haiku-4-5"}


@pytest.mark.anyio
@pytest.mark.parametrize("api", APIS)
async def test_delayed_headers_meter_covers_the_invoice(api: str, sim: SimServer) -> None:
    """The headline bug: a proxy holds the response 0.6 s, the stall timeout is 0.3 s, the simulator
    bills the call; the adapter must say "may be billed" so the meter charges the reservation."""
    sim.reset_invoice()
    provider = "anthropic" if api == "messages" else "openai"
    model = _SIM_MODEL[api]
    spec = spec_for(api, name=f"{provider}/{model}", model=model)
    price = PriceTable.load(user_default=False).lookup(provider, model)
    request = make_request(api, model=model, max_output_tokens=300)
    with DelayProxy(("127.0.0.1", sim.port), delay_s=0.6) as proxy:
        adapter = create_adapter(
            spec, api_key="sk-sim-test", base_url=_base(api, proxy.url), stall_timeout_s=0.3
        )
        try:
            reserve = usd_to_nano(price.worst_case(adapter.input_tokens_upper_bound(request), 300))
            with anyio.fail_after(5), pytest.raises(ProviderError) as info:
                await adapter.complete(request)
        finally:
            await adapter.aclose()
        invoice = await anyio.to_thread.run_sync(_quiet_invoice, sim)
    billed = usd_to_nano(Decimal(invoice["total"]["usd"]))
    assert billed > 0, "the simulator served (and billed) the request"
    metered = reserve if info.value.generation_started else 0  # the runner's contract
    assert metered >= billed


def test_cli_run_behind_a_slow_proxy_meters_at_least_the_invoice(tmp_path: Path, sim: SimServer) -> None:
    """``tollbench run --stall-timeout 0.3 --budget 0.01`` behind the 0.6 s proxy: the database's
    spend is never below the simulator's bill, and the bill stays within the budget."""
    from harness.cli.main import main

    sim.reset_invoice()
    db = tmp_path / "runs.db"
    with DelayProxy(("127.0.0.1", sim.port), delay_s=0.6) as proxy:
        code = main(
            [
                "run",
                "demo",
                "-m",
                "openai/gpt-4o-mini",
                "--budget",
                "0.01",
                "--sim-url",
                proxy.url,
                "--stall-timeout",
                "0.3",
                "--max-output-tokens",
                "3000",
                "--limit",
                "3",
                "-c",
                "2",
                "--db",
                str(db),
            ]
        )
        invoice = _quiet_invoice(sim)
    assert code in (1, 3), code
    con = sqlite3.connect(db)
    try:
        metered = con.execute("select coalesce(sum(cost_nano), 0) from calls").fetchone()[0]
    finally:
        con.close()
    billed = usd_to_nano(Decimal(invoice["total"]["usd"]))
    assert billed > 0
    assert metered >= billed, f"meter {metered} nano < invoice {billed} nano"
    assert billed <= usd_to_nano(Decimal("0.01"))
