"""Loading: local files in each real schema (--data), the hub path (mocked at huggingface_hub),
offline and gated failures, and bad files reported with their line or row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

import suites.loaders as loaders
from harness.errors import ConfigError, DataError, UnknownSuite
from suites import get_suite, list_suites, suite_names


@pytest.mark.parametrize(
    ("name", "filename", "count"),
    [
        ("math500", "math500.jsonl", 10),
        ("aime2024", "aime_2024.parquet", 6),
        ("aime2024", "aime_mixed_years.jsonl", 2),  # AI-MO style file, filtered to 2024 by url
        ("aime2025", "aime_2025.jsonl", 4),
        ("mmlu-pro", "mmlu_pro.parquet", 8),
        ("mmlu-pro", "mmlu_pro.jsonl", 8),
        ("gpqa-diamond", "gpqa_diamond.csv", 6),
    ],
)
def test_local_files_in_real_schema(fixtures: Path, name: str, filename: str, count: int) -> None:
    suite = get_suite(name, data=fixtures / filename, offline=True)
    assert suite.name == name
    assert len(suite.items) == count
    assert len({item.id for item in suite.items}) == count
    assert all(item.stratum for item in suite.items)


def test_csv_cells_with_commas_and_newlines(fixtures: Path) -> None:
    suite = get_suite("gpqa-diamond", data=fixtures / "gpqa_diamond.csv")
    item = next(i for i in suite.items if i.id == "recFIXTURE4")
    assert item.question == "Fixture: a question with a comma, and\na line break: which is largest?"
    assert item.stratum == "Physics"


def test_aime_answers_are_integers(fixtures: Path) -> None:
    suite = get_suite("aime2025", data=fixtures / "aime_2025.jsonl")
    assert [i.answer for i in suite.items] == ["42", "64", "100", "36"]  # "042" -> "42"
    strata = {i.stratum for i in get_suite("aime2024", data=fixtures / "aime_2024.parquet").items}
    assert strata == {"I", "II"}


def test_data_directory_mirroring_the_hub_repo(tmp_path: Path, fixtures: Path) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "test-00000-of-00001.parquet"
    target.write_bytes((fixtures / "mmlu_pro.parquet").read_bytes())
    (tmp_path / "README.md").write_text("card")
    assert len(get_suite("mmlu-pro", data=tmp_path).items) == 8


def test_hub_path_taken_when_available(monkeypatch: pytest.MonkeyPatch, fixtures: Path) -> None:
    calls: list[dict[str, Any]] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        return str(fixtures / "math500.jsonl")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loaders, "hf_hub_download", fake_download)
    monkeypatch.setattr(loaders, "verify_pin", lambda *a: None)  # a fixture, not the pinned bytes
    suite = get_suite("math500")
    assert len(suite.items) == 10
    assert calls == [
        {
            "repo_id": "HuggingFaceH4/MATH-500",
            "filename": "test.jsonl",
            "repo_type": "dataset",
            "revision": "6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be",
            "local_files_only": False,
        }
    ]
    assert "hf://HuggingFaceH4/MATH-500@6e4ed1a2" in repr(suite)


@pytest.mark.parametrize(
    ("name", "repo", "filename", "fixture"),
    [
        ("aime2024", "Maxwell-Jia/AIME_2024", "aime_2024_problems.parquet", "aime_2024.parquet"),
        ("aime2025", "math-ai/aime25", "test.jsonl", "aime_2025.jsonl"),
        ("mmlu-pro", "TIGER-Lab/MMLU-Pro", "data/test-00000-of-00001.parquet", "mmlu_pro.parquet"),
        ("gpqa-diamond", "Idavidrein/gpqa", "gpqa_diamond.csv", "gpqa_diamond.csv"),
    ],
)
def test_hub_sources_are_pinned(
    monkeypatch: pytest.MonkeyPatch, fixtures: Path, name: str, repo: str, filename: str, fixture: str
) -> None:
    seen: list[tuple[str, str, str]] = []

    def fake_download(repo_id: str, fname: str, **kwargs: Any) -> str:
        seen.append((repo_id, fname, kwargs["revision"]))
        return str(fixtures / fixture)

    monkeypatch.setattr(loaders, "hf_hub_download", fake_download)
    monkeypatch.setattr(loaders, "verify_pin", lambda *a: None)  # fixtures, not the pinned bytes
    assert get_suite(name, offline=False).items
    assert seen[0][:2] == (repo, filename)
    assert len(seen[0][2]) == 40 and all(c in "0123456789abcdef" for c in seen[0][2])


def test_data_wins_over_the_hub(monkeypatch: pytest.MonkeyPatch, fixtures: Path) -> None:
    def no_download(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the hub was used although --data was given")

    monkeypatch.setattr(loaders, "hf_hub_download", no_download)
    assert get_suite("math500", data=fixtures / "math500.jsonl").items


def test_offline_without_data_names_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real hf_hub_download with an empty cache and local_files_only: no network is touched."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(DataError) as err:
        get_suite("math500", offline=True)
    message = str(err.value)
    assert message == (
        "math500 needs its data: pass --data FILE (parquet/JSONL/CSV in the HuggingFaceH4/MATH-500 "
        "schema) or allow network access to the Hugging Face hub."
    )


def test_hf_hub_offline_env_means_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        seen.append(kwargs["local_files_only"])
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loaders, "hf_hub_download", fake_download)
    with pytest.raises(DataError, match="--data"):
        get_suite("aime2025")
    assert seen == [True]


def test_unreachable_hub_counts_as_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(repo_id: str, filename: str, **kwargs: Any) -> str:
        assert kwargs["local_files_only"] is False
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loaders, "hf_hub_download", unreachable)
    with pytest.raises(DataError, match=r"mmlu-pro needs its data: pass --data FILE"):
        get_suite("mmlu-pro")


def test_gated_gpqa_says_how_to_get_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def gated(repo_id: str, filename: str, **kwargs: Any) -> str:
        request = httpx2.Request("GET", f"https://huggingface.co/datasets/{repo_id}/resolve/main/{filename}")
        raise GatedRepoError("403 Client Error", response=httpx2.Response(403, request=request))

    monkeypatch.setattr(loaders, "hf_hub_download", gated)
    with pytest.raises(DataError) as err:
        get_suite("gpqa-diamond", offline=False)
    message = str(err.value)
    assert "gated" in message
    assert "https://huggingface.co/datasets/Idavidrein/gpqa" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert "--data" in message
    assert "\n" not in message


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_json_line_is_reported(tmp_path: Path) -> None:
    good = json.dumps({"problem": "p", "answer": "1"})
    f = _write(tmp_path / "m.jsonl", [good, good, "{not json", good])
    with pytest.raises(DataError, match=r"m\.jsonl: line 3: not valid JSON"):
        get_suite("math500", data=f)


def test_missing_field_is_reported(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "m.jsonl", [json.dumps({"problem": "p", "answer": "1"}), json.dumps({"problem": "q"})]
    )
    with pytest.raises(DataError, match=r"m\.jsonl: line 2: missing field 'answer'"):
        get_suite("math500", data=f)


def test_bad_csv_row_is_reported(tmp_path: Path, fixtures: Path) -> None:
    lines = (fixtures / "gpqa_diamond.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = dict.fromkeys(header, "x")
    row["Correct Answer"] = ""
    lines = [lines[0], ",".join(row[h] for h in header)]
    f = _write(tmp_path / "g.csv", lines)
    with pytest.raises(DataError, match=r"g\.csv: line 2: missing field 'Correct Answer'"):
        get_suite("gpqa-diamond", data=f)


def test_bad_parquet_row_is_reported(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"question_id": 1, "question": "q", "options": ["a", "b", "c"], "answer": "B", "category": "x"},
        {"question_id": 2, "question": "q", "options": ["a", "b", "c"], "answer": "E", "category": "x"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"m\.parquet: row 2: answer 'E' is not one of the row's 3 options"):
        get_suite("mmlu-pro", data=tmp_path / "m.parquet")


def test_unreadable_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        get_suite("mmlu-pro", data=tmp_path / "x.parquet")
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(DataError, match="unsupported file type"):
        get_suite("mmlu-pro", data=tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="no such file"):
        get_suite("mmlu-pro", data=tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        get_suite("math500", data=tmp_path / "empty.jsonl")


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    row = json.dumps({"problem": "p", "answer": "1", "unique_id": "same"})
    f = _write(tmp_path / "d.jsonl", [row, row])
    with pytest.raises(DataError, match=r"d\.jsonl: line 2: duplicate item id 'same' \(first at .*line 1\)"):
        get_suite("math500", data=f)


def test_aime_file_without_that_year(fixtures: Path) -> None:
    with pytest.raises(DataError, match="no AIME 2025 rows"):
        get_suite("aime2025", data=fixtures / "aime_mixed_years.jsonl")


def test_unknown_suite_lists_names() -> None:
    with pytest.raises(UnknownSuite) as err:
        get_suite("mmlu-ultra")
    message = str(err.value)
    assert "\n" not in message
    for name in ("demo", "math500", "aime2024", "aime2025", "mmlu-pro", "gpqa-diamond", "jsonl"):
        assert name in message


def test_options_only_for_jsonl(fixtures: Path) -> None:
    with pytest.raises(ConfigError, match="takes no options"):
        get_suite("math500", data=fixtures / "math500.jsonl", options={"scorer": "exact"})
    with pytest.raises(ConfigError, match="--data"):
        get_suite("jsonl")


def test_list_suites() -> None:
    infos = {info.name: info for info in list_suites()}
    assert list(infos) == suite_names()
    assert infos["math500"].items == 500 and infos["math500"].default_repeats == 3
    assert infos["aime2024"].items == 30 and infos["aime2024"].default_repeats == 10
    assert infos["aime2025"].items == 30 and infos["aime2025"].default_repeats == 10
    assert infos["mmlu-pro"].items == 12032 and infos["mmlu-pro"].default_repeats == 1
    assert infos["gpqa-diamond"].items == 198 and infos["gpqa-diamond"].default_repeats == 5
    assert infos["demo"].items == 40 and infos["demo"].default_repeats == 1
    assert "gated" in infos["gpqa-diamond"].access
    assert all(info.license and info.source for info in infos.values())
