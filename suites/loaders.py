"""Loading benchmark rows from local files (``--data``) or the Hugging Face hub, offline-aware.

Local files may be parquet, JSONL or CSV in the dataset's real schema; every row carries its
location (``file: line N`` / ``file: row N``) so that a bad value can be reported where it is. Hub
downloads use :func:`huggingface_hub.hf_hub_download` of the dataset's data file at a pinned
revision; the download is cached by huggingface_hub (``HF_HOME``), so a second run works offline.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError

__all__ = [
    "HubSource",
    "Row",
    "column_list",
    "MAX_DEPTH",
    "check_row",
    "fetch_hub_file",
    "file_sha256",
    "hub_offline",
    "load_rows",
    "read_rows",
    "unique_ids",
    "verify_pin",
]

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Row:
    """One record of a data file and where it came from (for error messages)."""

    where: str
    """``path: line N`` (JSONL, CSV) or ``path: row N`` (parquet), 1-based."""
    data: Mapping[str, Any]

    def get(self, *names: str) -> Any:
        """The first of ``names`` present in the row (schemas differ in capitalisation), else None."""
        for name in names:
            if name in self.data:
                return self.data[name]
        return None

    def require(self, *names: str, schema: str) -> Any:
        """Like :meth:`get`, but a missing or empty value is a :class:`DataError` naming the row."""
        value = self.get(*names)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{self.where}: missing field {names[0]!r} (expected the {schema} schema)")
        return value


@dataclass(frozen=True, slots=True)
class HubSource:
    """A dataset file on the Hugging Face hub."""

    repo_id: str
    filename: str
    revision: str
    schema: str
    """Human name of the schema, for messages (usually the repo id)."""
    gated: bool = False
    sha256: str | None = None
    """The file's SHA-256 (hex) at the pinned revision; a download that differs is refused."""
    size: int | None = None
    """The file's size in bytes at the pinned revision."""


#: The deepest nesting of lists and objects a data record may have (real records have 2 or 3).
MAX_DEPTH = 32


def _bad_text(text: str) -> str | None:
    """What makes ``text`` unstorable, or None: a NUL (PostgreSQL text cannot hold one) or a lone
    UTF-16 surrogate (``"\\ud800"`` in JSON: not a character, cannot be encoded as UTF-8)."""
    if "\x00" in text:
        return "a NUL character (\\u0000), which the database cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (a \\ud800-\\udfff escape without its pair), which is not text"
    return None


def check_row(row: Row) -> None:
    """Refuse a record that cannot be stored or sent: a string (value or key) with a NUL or a lone
    surrogate, or nesting deeper than :data:`MAX_DEPTH`. The message names the file, line and field.

    NUL is refused rather than replaced: item ids, questions and answers are identities and gold
    labels, and silently changing them would make results disagree with the user's file.

    Raises:
        DataError: ``path: line N: field 'F' ...``.
    """
    stack: list[tuple[str, Any, int]] = [(str(k), v, 1) for k, v in row.data.items()]
    for key in row.data:
        why = _bad_text(str(key))
        if why:
            raise DataError(f"{row.where}: a field name contains {why}; fix the file")
    while stack:
        field, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DataError(
                f"{row.where}: field {re.split(r'[.[]', field)[0]!r} is nested more than {MAX_DEPTH} "
                "levels deep; flatten the record"
            )
        if isinstance(value, str):
            why = _bad_text(value)
            if why:
                raise DataError(f"{row.where}: field {field!r} contains {why}; fix the file")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                why = _bad_text(str(k))
                if why:
                    raise DataError(f"{row.where}: a key inside field {field!r} contains {why}; fix the file")
                stack.append((f"{field}.{k}", v, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{field}[{i}]", v, depth + 1) for i, v in enumerate(value))


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise DataError(
                    f"{path}: line {lineno}: JSON nested more than {MAX_DEPTH} levels deep; "
                    "flatten the record"
                ) from None
            if not isinstance(value, dict):
                raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(value).__name__}")
            yield Row(f"{path}: line {lineno}", value)


def _read_csv(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty CSV file (no header line)")
        try:
            start = reader.line_num + 1
            for record in reader:
                if None in record:
                    raise DataError(f"{path}: line {start}: more values than header columns")
                yield Row(f"{path}: line {start}", dict(record))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: bad CSV ({exc})") from None


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    for i, record in enumerate(table.to_pylist(), 1):
        yield Row(f"{path}: row {i}", record)


_READERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
}


def read_rows(path: Path) -> list[Row]:
    """Every record of a parquet, JSONL or CSV file, by file extension.

    Raises:
        DataError: unknown extension, unreadable file, or a malformed line (with its number).
    """
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use parquet, JSONL or CSV")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        rows = list(reader(path))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for row in rows:
        check_row(row)
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    return rows


def hub_offline(offline: bool | None) -> bool:
    """Whether to stay off the network: ``offline`` if given, else ``HF_HUB_OFFLINE``."""
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _needs_data(suite: str, source: HubSource) -> str:
    return (
        f"{suite} needs its data: pass --data FILE (parquet/JSONL/CSV in the {source.schema} schema) "
        "or allow network access to the Hugging Face hub."
    )


def hf_hub_download(*args: Any, **kwargs: Any) -> Any:
    """``huggingface_hub.hf_hub_download``, imported on first use (it costs a tenth of a second of
    start-up, and most runs never download)."""
    from huggingface_hub import hf_hub_download as download

    return download(*args, **kwargs)


def fetch_hub_file(suite: str, source: HubSource, *, offline: bool | None) -> Path:
    """Download (or find in the cache) a dataset file at its pinned revision.

    Args:
        suite: Suite name, for messages.
        source: Where the file is.
        offline: True: only the local huggingface_hub cache; None: offline when ``HF_HUB_OFFLINE``
            is set, and a hub that cannot be reached counts as offline.

    Raises:
        DataError: with what to do (``--data``, or how to get access to a gated dataset).
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = hf_hub_download(
            source.repo_id,
            source.filename,
            repo_type="dataset",
            revision=source.revision,
            local_files_only=hub_offline(offline),
        )
    except GatedRepoError:
        raise DataError(_gated(suite, source)) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise DataError(_needs_data(suite, source)) from None
    except RevisionNotFoundError:
        raise DataError(
            f"{suite}: revision {source.revision} of {source.repo_id} is not on the hub; "
            "pass --data FILE instead."
        ) from None
    except RepositoryNotFoundError:
        if source.gated:
            raise DataError(_gated(suite, source)) from None
        raise DataError(
            f"{suite}: dataset {source.repo_id} not found on the hub; pass --data FILE."
        ) from None
    except EntryNotFoundError:
        raise DataError(
            f"{suite}: {source.filename} not found in {source.repo_id}@{source.revision}; pass --data FILE."
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise DataError(_gated(suite, source)) from None
        raise DataError(f"{_needs_data(suite, source)} (hub error: HTTP {status})") from None
    except OSError as exc:  # connection failures that huggingface_hub did not wrap
        raise DataError(f"{_needs_data(suite, source)} ({type(exc).__name__})") from None
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"{suite}: unexpected download result for {source.repo_id}")
    verify_pin(suite, Path(path), source)
    return Path(path)


_verified: set[tuple[str, int, int, str, int | None]] = set()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_pin(suite: str, path: Path, source: HubSource) -> None:
    """Check a downloaded file against its pin's size and SHA-256 (once per process and file).

    Raises:
        DataError: the file differs from the pinned one, with what to do.
    """
    if source.size is None and source.sha256 is None:
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, source.sha256 or "", source.size)
    if key in _verified:
        return
    fix = (
        f"delete it from the huggingface_hub cache (`hf cache rm` or remove {path}) and run again, or "
        "pass --data FILE with a copy you trust"
    )
    if source.size is not None and stat.st_size != source.size:
        raise DataError(
            f"{suite}: {source.repo_id}@{source.revision[:8]}/{source.filename} is {stat.st_size:,} bytes, "
            f"the pin says {source.size:,}: the download is incomplete or not the pinned file; {fix}"
        )
    if source.sha256 is not None:
        got = file_sha256(path)
        if got != source.sha256.lower():
            raise DataError(
                f"{suite}: {source.repo_id}@{source.revision[:8]}/{source.filename} has SHA-256 {got}, "
                f"the pin says {source.sha256}: not the pinned file; {fix}"
            )
    _verified.add(key)


def _gated(suite: str, source: HubSource) -> str:
    return (
        f"{suite}: {source.repo_id} is gated on the Hugging Face hub: accept its terms at "
        f"https://huggingface.co/datasets/{source.repo_id}, then log in with `hf auth login` "
        f"(or set HF_TOKEN); or pass --data FILE (a local {source.filename} in the same schema)."
    )


def _from_dir(directory: Path, source: HubSource | None) -> Path:
    """A data file inside a directory: the hub file's path, else the only supported file."""
    if source is not None:
        candidate = directory / source.filename
        if candidate.is_file():
            return candidate
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in _READERS)
    if len(files) == 1:
        return files[0]
    raise DataError(
        f"{directory}: a directory needs exactly one parquet/JSONL/CSV file"
        + (f" or {source.filename}" if source is not None else "")
        + f"; found {len(files)}"
    )


def load_rows(
    suite: str, *, data: Path | None, source: HubSource | None, offline: bool | None
) -> tuple[list[Row], str]:
    """Rows of a suite's data: the local ``data`` file if given, else the hub file.

    Returns:
        The rows and a description of where they came from (a path, or ``hf://repo@revision/file``).
    """
    if data is not None:
        path = Path(data).expanduser()
        if path.is_dir():
            path = _from_dir(path, source)
        return read_rows(path), str(path)
    if source is None:
        raise DataError(f"{suite} needs its data: pass --data FILE")
    path = fetch_hub_file(suite, source, offline=offline)
    return read_rows(path), f"hf://{source.repo_id}@{source.revision}/{source.filename}"


def column_list(value: Any) -> list[Any] | None:
    """A list-valued cell as a list: parquet lists, JSON arrays, or a JSON array in a CSV cell."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return list(parsed) if isinstance(parsed, list) else None
    if hasattr(value, "tolist"):
        converted = value.tolist()
        return list(converted) if isinstance(converted, list) else None
    return None


def unique_ids(ids: Sequence[str], wheres: Sequence[str]) -> None:
    """Raise :class:`DataError` on the first repeated item id."""
    seen: dict[str, str] = {}
    for item_id, where in zip(ids, wheres, strict=True):
        if item_id in seen:
            raise DataError(f"{where}: duplicate item id {item_id!r} (first at {seen[item_id]})")
        seen[item_id] = where
