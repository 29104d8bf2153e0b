"""Fixtures for the simulator tests: one shared loopback server and SDK client factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from harness.sim import SimServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=7) as server:
        yield server


@pytest.fixture
async def make_openai(sim: SimServer) -> AsyncIterator[Callable[..., AsyncOpenAI]]:
    """Build ``AsyncOpenAI(max_retries=0)`` clients pointed at the shared simulator (closed after)."""
    made: list[AsyncOpenAI] = []

    def make(strict: bool = False, **kw: Any) -> AsyncOpenAI:
        kw.setdefault("base_url", sim.openai_base_url)
        c = AsyncOpenAI(api_key="sk-sim-test", max_retries=0, _strict_response_validation=strict, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
async def make_anthropic(sim: SimServer) -> AsyncIterator[Callable[..., AsyncAnthropic]]:
    """Build ``AsyncAnthropic(max_retries=0)`` clients pointed at the shared simulator (closed after)."""
    made: list[AsyncAnthropic] = []

    def make(strict: bool = False, **kw: Any) -> AsyncAnthropic:
        kw.setdefault("base_url", sim.anthropic_base_url)
        c = AsyncAnthropic(api_key="sk-ant-sim-test", max_retries=0, _strict_response_validation=strict, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()
