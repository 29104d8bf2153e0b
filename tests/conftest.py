"""Shared test setup: a clean environment for every test (no real keys, no user config, no hub)."""

from __future__ import annotations

import os
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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"
