"""Dataset pins carry the file's SHA-256 and size; a download that differs is refused with what to do."""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import suites
import suites.loaders as loaders
from harness.cli.main import main
from harness.errors import DataError
from suites import aime, gpqa, livecodebench, math500
from suites.livecodebench import FILES
from suites.loaders import HubSource, fetch_hub_file, verify_pin

#: Pins whose file BENCHMARKS.md (section 13) gives no SHA-256 and size for: they are downloaded
#: unverified until someone records both from a networked machine (``sha256sum``, ``stat -c %s``)
#: and removes the entry here. A new pin without a hash fails this test.
NO_HASH_RECORDED = {
    ("TIGER-Lab/MMLU-Pro", "data/test-00000-of-00001.parquet"),
    ("Maxwell-Jia/AIME_2024", "aime_2024_problems.parquet"),
    ("cais/hle", "data/test-00000-of-00001.parquet"),
    *((livecodebench.REPO, f.name) for f in FILES[:-1]),  # test.jsonl ... test5.jsonl
}

#: Pins whose SHA-256 is recorded but whose exact size is not (BENCHMARKS.md: SciCode's test_data.h5
#: is "about 1 GB"): the hash alone decides, the size check is skipped.
NO_SIZE_RECORDED = {("xantheocracy/scicode-mirror", "test_data.h5")}


def _sources_in(value: Any) -> list[HubSource]:
    if isinstance(value, HubSource):
        return [value]
    if isinstance(value, livecodebench.ReleaseFile):
        return [livecodebench._hub(value)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _sources_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _sources_in(v)]
    return []


def every_pinned_source() -> dict[tuple[str, str], HubSource]:
    """Every hub file any suite module pins (module-level ``HubSource`` values, in dicts and tuples
    too, and LiveCodeBench's release files), by (repo, file)."""
    found: dict[tuple[str, str], HubSource] = {}
    for info in pkgutil.iter_modules(suites.__path__):
        module = importlib.import_module(f"suites.{info.name}")
        for value in vars(module).values():
            for source in _sources_in(value):
                found[(source.repo_id, source.filename)] = source
    return found


def test_every_pin_of_every_suite_carries_its_sha256_and_size() -> None:
    found = every_pinned_source()
    assert len(found) >= 11  # MATH-500, AIME x2, GPQA, MMLU-Pro, HLE, six LiveCodeBench files
    unhashed = set()
    for key, source in found.items():
        assert re.fullmatch(r"[0-9a-f]{40}", source.revision), key  # a commit, never a branch
        if source.sha256 is None and source.size is None:
            unhashed.add(key)
            continue
        assert source.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", source.sha256), key
        if key in NO_SIZE_RECORDED:
            assert source.size is None, f"{key}: its size is recorded now, drop it from NO_SIZE_RECORDED"
            continue
        assert source.size is not None and source.size > 0, key
    assert unhashed <= NO_HASH_RECORDED, (
        f"pins without a SHA-256 and size: {sorted(unhashed - NO_HASH_RECORDED)}"
    )
    assert NO_HASH_RECORDED <= unhashed, (
        f"hashed now, drop from the list: {sorted(NO_HASH_RECORDED - unhashed)}"
    )


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


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            b"tampered\n",
            r"is 9 bytes, the pin says 446,564: the download is incomplete or not the pinned file",
        ),
        (b"x" * 446_564, r"has SHA-256 [0-9a-f]{64}, the pin says 35dc4108[0-9a-f]{56}: not the pinned file"),
    ],
)
def test_a_mismatching_download_is_one_line_with_what_to_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    needle: str,
) -> None:
    path = tmp_path / "test.jsonl"
    path.write_bytes(content)
    monkeypatch.setattr(loaders, "hf_hub_download", lambda *a, **k: str(path))
    db = tmp_path / "runs.db"
    code = main(["run", "math500", "--sim", "-m", "openai/gpt-4o-mini", "--db", str(db)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert re.search(r"math500: HuggingFaceH4/MATH-500@6e4ed1a2/test\.jsonl " + needle, lines[0]), lines[0]
    assert f"remove {path}" in lines[0] and "hf cache rm" in lines[0] and "--data FILE" in lines[0]
