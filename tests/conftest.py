"""Shared test setup: a clean environment for every test (no real keys, no user config, no hub)."""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

_CLEARED_PREFIXES = ("OPENAI_", "ANTHROPIC_")
_CLEARED = ("TOLLBENCH_DB", "TOLLBENCH_PRICES", "TOLLBENCH_MODELS", "HF_TOKEN")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES) or name in _CLEARED:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    yield
    # A command run in this process froze what was alive when its runner started
    # (harness.run.startup): fine for a CLI process that ends with its run, not for the test session.
    gc.unfreeze()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


PG_SERVER = os.environ.get("TOLLBENCH_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
"""The PostgreSQL server of the PostgreSQL tests (loopback; trust auth)."""


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A database URL on :data:`PG_SERVER` whose search path is a fresh schema, dropped afterwards.

    Without a reachable server the test is skipped with the reason, unless
    ``TOLLBENCH_REQUIRE_POSTGRES=1`` (CI), which makes it fail.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(
        PG_SERVER.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"connect_timeout": 3}
    )
    schema = "tb_test_" + secrets.token_hex(6)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {PG_SERVER} is unreachable ({str(exc.orig).splitlines()[0]})"
        if os.environ.get("TOLLBENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " and TOLLBENCH_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    try:
        yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
