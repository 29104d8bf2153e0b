"""ClientPool: SDK clients of at most CONNECTIONS_PER_CLIENT connections each, as many as the concurrency
needs."""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import httpx2
import pytest
from adapters_testkit import API_KEY, headers_for, make_request, ok_events, spec_for
from helpers.scripted_server import Pause, Reply, ScriptedServer

from adapters import create_adapter
from adapters._common import CONNECTIONS_PER_CLIENT, ClientPool, build_timeout


class _Fake:
    def __init__(self, http: httpx2.AsyncClient, timeout: httpx2.Timeout) -> None:
        self.http = http
        self.timeout = timeout

    async def close(self) -> None:
        await self.http.aclose()


def _pool(n: int, base_url: str | None = "http://127.0.0.1:1/v1") -> ClientPool[_Fake]:
    return ClientPool(
        _Fake,
        http_client=httpx2.AsyncClient,
        max_connections=n,
        timeout=build_timeout(connect_timeout_s=2, stall_timeout_s=30),
        base_url=base_url,
    )


@pytest.mark.anyio
async def test_pool_grows_only_when_every_client_is_full() -> None:
    pool = _pool(200)
    try:
        assert len(pool.clients) == 1
        leases = [pool.lease() for _ in range(200)]
        clients = [lease.__enter__() for lease in leases]
        made = -(-200 // CONNECTIONS_PER_CLIENT)
        assert len(pool.clients) == made
        per_client = {id(c): clients.count(c) for c in clients}
        assert max(per_client.values()) <= CONNECTIONS_PER_CLIENT
        # past the concurrency it was sized for it does not grow: the least busy client is lent
        with pool.lease() as extra:
            assert extra in pool.clients and len(pool.clients) == made
        # a released connection is lent again before any new client is made
        leases[7].__exit__(None, None, None)
        again = pool.lease()
        assert again.__enter__() is clients[7] and len(pool.clients) == made
        again.__exit__(None, None, None)
        for k, lease in enumerate(leases):
            if k != 7:
                lease.__exit__(None, None, None)
        assert pool._busy == [0] * made and pool._spare == set(range(made))
        first = pool.clients[0]
        assert first.timeout.pool is None  # waiting for a pooled connection is not a failure
        assert first.timeout.read == 30
    finally:
        await pool.aclose()


@pytest.mark.anyio
async def test_small_concurrency_is_one_client_of_that_size() -> None:
    pool = _pool(8)
    try:
        with pool.lease() as c:
            assert c is pool.clients[0]
        assert len(pool.clients) == 1 and pool._per_client == 8
    finally:
        await pool.aclose()


def test_plain_http_endpoints_skip_the_trust_store_but_still_verify() -> None:
    from adapters._common import _tls_context

    ctx = _tls_context("http://127.0.0.1:8000/v1")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.get_ca_certs() == []  # an https redirect could never be trusted
    assert _tls_context("https://api.openai.com/v1").verify_mode == ssl.CERT_REQUIRED


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_adapter_with_max_connections_spreads_calls(server: ScriptedServer, api: str) -> None:
    calls = 12
    for _ in range(calls):
        server.push(Reply.sse([Pause(0.3), *ok_events(api)], headers=headers_for(api)))
    adapter: Any = create_adapter(
        spec_for(api),
        api_key=API_KEY,
        base_url=server.url if api == "messages" else server.url + "/v1",
        connect_timeout_s=2.0,
        max_connections=calls,
    )
    adapter._pool._per_client, adapter._pool._max_clients = 4, 3  # small clients: three are needed
    results: list[Any] = []
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(calls):

                async def one() -> None:
                    results.append(await adapter.complete(make_request(api)))

                tg.start_soon(one)
    finally:
        await adapter.aclose()
    assert len(results) == calls and all(r.finish_reason == "stop" for r in results)
    assert len(adapter._pool.clients) == 3
