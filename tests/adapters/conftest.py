"""Fixtures for the adapter tests: one scripted loopback server per session, reset for every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
# `helpers.scripted_server` lives in tests/; the repo root keeps `import adapters` on the real package
# (tests/adapters has no __init__.py, so it can only ever be a namespace portion, which loses to it).
for _p in (_TESTS, _TESTS.parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from helpers.scripted_server import ScriptedServer  # noqa: E402

# The SDKs are imported here, once, and not by the first test that makes an adapter: an SDK's import
# took 2.3 s inside a pytest session, and a test run alone spent it inside its own deadline.
import adapters.anthropic_messages  # noqa: E402
import adapters.google_genai  # noqa: E402
import adapters.openai_chat  # noqa: E402
import adapters.openai_responses  # noqa: E402, F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _server_session() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def server(_server_session: ScriptedServer) -> Iterator[ScriptedServer]:
    _server_session.reset()
    yield _server_session
    _server_session.reset()
