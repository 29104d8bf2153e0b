"""Dataset pins carry the file's SHA-256 and size; a download that differs is refused with what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import suites.loaders as loaders
from harness.errors import DataError
from suites import aime, gpqa, math500
from suites.livecodebench import FILES
from suites.loaders import HubSource, fetch_hub_file, verify_pin


def _source(path: Path, **kw: object) -> HubSource:
    return HubSource("org/data", path.name, "0" * 40, schema="org/data", **kw)  # type: ignore[arg-type]


def test_a_matching_file_passes_and_a_different_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_bytes(b'{"q": 1}\n')
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_pin("s", path, _source(path, sha256=sha, size=9))
    with pytest.raises(DataError, match=r"is 9 bytes, the pin says 10.*hf cache rm.*--data"):
        verify_pin("s", path, _source(path, sha256=sha, size=10))
    with pytest.raises(DataError, match=r"has SHA-256 [0-9a-f]{64}, the pin says " + "f" * 64):
        verify_pin("s", path, _source(path, sha256="f" * 64, size=9))
    verify_pin("s", path, _source(path))  # no pin recorded: nothing to check


def test_the_hub_download_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "test.jsonl"
    path.write_bytes(b"tampered\n")
    monkeypatch.setattr(loaders, "hf_hub_download", lambda *a, **k: str(path))
    with pytest.raises(DataError, match="not the pinned file"):
        fetch_hub_file("math500", _source(path, sha256="0" * 64), offline=True)


def test_the_known_pins_are_recorded() -> None:
    assert (math500.SOURCE.size, math500.SOURCE.sha256[:8]) == (446_564, "35dc4108")  # type: ignore[index]
    assert (gpqa.SOURCE.size, gpqa.SOURCE.sha256[-4:]) == (1_373_492, "d305")  # type: ignore[index]
    assert (aime.SOURCES[2025].size, aime.SOURCES[2025].sha256[:8]) == (15_813, "b4e273c0")  # type: ignore[index]
    assert FILES[-1].sha256 is not None and FILES[-1].size == 134_303_240
