"""Export a run as a self-contained bundle, and import one as a new run: re-score and re-price a
published run without paying for it.

A bundle is JSONL (UTF-8, one JSON object per line):

1. ``{"type": "header", "format": "tollbench-bundle", "version": 1, "run": {...}, "counts": {...}}``:
   the run row (budget, spend, status, the simulated flag, suites, models, config);
2. ``{"type": "price", "row": {...}}``: every price row the calls used (``prices`` table);
3. ``{"type": "call", "row": {...}}``: every call (attempt) with its canonical request, its answer,
   usage, cost and price id;
4. ``{"type": "item", "row": {...}}``: every item result with its score.

Money stays in integer nano-dollars, times are ISO 8601 UTC. No key is ever in a bundle: requests are
stored without keys, and the storage redactor runs over every value on the way out (a secret-looking
environment variable's value becomes ``[redacted]``). The list of processes that ran the run (host
names, pids) is left out.

Importing creates a *new* run (new run and call ids; the original ids are kept in the run's
``config["imported"]``), with the original status, budget, spend and simulated flag, so ``show`` and
``costs`` report it exactly as the original. Imported calls carry no ``request_hash``: they never
answer the response cache (a bundle is not proof that an answer was bought here), and an imported run
cannot be resumed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from harness.errors import ConfigError, DataError
from harness.store.engine import (
    Store,
    UTCDateTime,
    _insert_new,
    _json_dumps,
    _version,
    calls_table,
    item_results_table,
    new_run_id,
    prices_table,
    runs_table,
)

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "BundleSummary", "export_run", "import_bundle"]

BUNDLE_FORMAT = "tollbench-bundle"
BUNDLE_VERSION = 1

_PRIVATE_CONFIG = ("processes",)
_PRIVATE_COLUMNS = ("owner_token", "owner_pid", "owner_host")  # who ran it here: never exported


@dataclass(frozen=True, slots=True)
class BundleSummary:
    """What an export wrote or an import loaded."""

    run_id: str
    """The exported run, or the new run an import created."""
    source_run_id: str
    prices: int
    calls: int
    items: int


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def export_run(store: Store, run_id: str, out: TextIO) -> BundleSummary:
    """Write run ``run_id`` as a bundle to ``out`` (read in one consistent snapshot).

    Raises:
        ConfigError: No such run.
        StorageError: The database cannot be read.
    """
    red = store.redactor
    with store.begin_read("exporting a run") as conn:
        run = conn.execute(sa.select(runs_table).where(runs_table.c.id == run_id)).one_or_none()
        if run is None:
            raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
        calls = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(calls_table)
                .where(calls_table.c.run_id == run_id)
                .order_by(calls_table.c.started_at, calls_table.c.id)
            )
        ]
        price_ids = sorted({c["price_id"] for c in calls if c["price_id"]})
        prices = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(prices_table).where(prices_table.c.id.in_(price_ids)).order_by(prices_table.c.id)
            )
        ]
        t = item_results_table
        items = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(t)
                .where(t.c.run_id == run_id)
                .order_by(t.c.model, t.c.suite, t.c.item_id, t.c.repeat)
            )
        ]
    run_row = {k: v for k, v in dict(run._mapping).items() if k not in _PRIVATE_COLUMNS}
    run_row["config"] = {k: v for k, v in dict(run_row["config"] or {}).items() if k not in _PRIVATE_CONFIG}
    header = {
        "type": "header",
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "tollbench_version": _version(),
        "run": _jsonable(run_row),
        "counts": {"prices": len(prices), "calls": len(calls), "items": len(items)},
    }

    def write(obj: Mapping[str, Any]) -> None:
        out.write(_json_dumps(red.json(dict(obj))) + "\n")

    write(header)
    for p in prices:
        write({"type": "price", "row": _jsonable(p)})
    for c in calls:
        write({"type": "call", "row": _jsonable(c)})
    for i in items:
        write({"type": "item", "row": _jsonable(i)})
    return BundleSummary(run_id, run_id, len(prices), len(calls), len(items))


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the bundle ({exc.strerror})") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict) or obj.get("type") not in ("header", "price", "call", "item"):
                raise DataError(f"{path}:{n}: not a bundle line (type header, price, call or item)")
            yield n, obj


def _row(table: sa.Table, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise DataError(f"{where}: the row is not an object")
    row: dict[str, Any] = {}
    for col in table.columns:
        if col.name not in data:
            continue
        value = data[col.name]
        if isinstance(col.type, UTCDateTime) and value is not None:
            try:
                value = datetime.fromisoformat(str(value))
            except ValueError:
                raise DataError(f"{where}: {col.name} is not an ISO time: {value!r}") from None
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
        elif isinstance(col.type, sa.Integer) and value is not None:
            # Money and token counts: a tampered bundle must not import negative (or absurd) spend.
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
                raise DataError(
                    f"{where}: {col.name} must be a whole number from 0 to {_MAX_INT}, got {value!r}; "
                    "the bundle was edited or damaged, refusing to import it"
                )
        elif isinstance(value, str) and "\x00" in value:
            raise DataError(f"{where}: {col.name} contains a NUL character; refusing to import the bundle")
        row[col.name] = value
    return row


#: The largest integer a database column holds (signed 64 bits).
_MAX_INT = 2**63 - 1


def import_bundle(store: Store, path: Path) -> BundleSummary:
    """Load a bundle as a new run (marked imported, simulated flag kept) in one transaction.

    Raises:
        DataError: The file is not a bundle, is from a newer tollbench, or is inconsistent (counts,
            or spend that does not add up to its calls).
        StorageError: The database cannot be written (nothing is written then).
    """
    header: dict[str, Any] | None = None
    prices: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for n, obj in _lines(path):
        where = f"{path}:{n}"
        if obj["type"] == "header":
            if header is not None:
                raise DataError(f"{where}: a second header")
            if obj.get("format") != BUNDLE_FORMAT:
                raise DataError(f"{where}: not a tollbench bundle (format {obj.get('format')!r})")
            version = obj.get("version") or 0
            if not isinstance(version, int) or isinstance(version, bool):
                raise DataError(f"{where}: the bundle version {version!r} is not a number")
            if version > BUNDLE_VERSION:
                raise DataError(
                    f"{where}: bundle version {obj.get('version')} is newer than this tollbench reads "
                    f"({BUNDLE_VERSION}); upgrade tollbench"
                )
            header = obj
        elif header is None:
            raise DataError(f"{where}: the header must come first")
        elif obj["type"] == "price":
            prices.append(_row(prices_table, obj.get("row"), where))
        elif obj["type"] == "call":
            calls.append(_row(calls_table, obj.get("row"), where))
        else:
            items.append(_row(item_results_table, obj.get("row"), where))
    if header is None:
        raise DataError(f"{path}: empty, not a bundle")
    counts = header.get("counts") or {}
    got = {"prices": len(prices), "calls": len(calls), "items": len(items)}
    if not isinstance(counts, Mapping) or any(counts.get(k, -1) != v for k, v in got.items()):
        raise DataError(f"{path}: truncated or edited: the header counts {counts}, the file has {got}")
    run = _row(runs_table, header.get("run"), f"{path}:header")
    source_id = str(run.get("id"))
    from harness.pricing.money import MAX_BUDGET_USD, usd_to_nano

    if int(run.get("budget_nano") or 0) > usd_to_nano(MAX_BUDGET_USD):
        raise DataError(f"{path}: the run's budget is above what tollbench can meter; refusing to import it")
    spent = sum(int(c.get("cost_nano") or 0) for c in calls if c.get("status") != "reserved")
    open_nano = sum(int(c.get("reserved_nano") or 0) for c in calls if c.get("status") == "reserved")
    if spent != int(run.get("spent_nano", -1)) or spent + open_nano != int(run.get("committed_nano", -1)):
        raise DataError(
            f"{path}: the run's spend ({run.get('spent_nano')} settled, {run.get('committed_nano')} "
            f"committed nano-USD) does not add up to its calls ({spent}, {spent + open_nano})"
        )
    new_id = new_run_id()
    now = datetime.now(UTC)
    ids = {str(c["id"]): uuid.uuid4().hex for c in calls}
    config = dict(run.get("config") or {})
    config["imported"] = {
        "from_run": source_id,
        "file": path.name,
        "imported_at": now.isoformat(),
        "exported_at": header.get("exported_at"),
        "exported_by": header.get("tollbench_version"),
    }
    run.update(
        id=new_id,
        config=config,
        status="interrupted" if run.get("status") == "running" else run.get("status"),
        heartbeat_at=None,
        **dict.fromkeys(_PRIVATE_COLUMNS),
    )
    for c in calls:
        c.update(
            id=ids[str(c["id"])],
            run_id=new_id,
            request_hash=None,  # imported answers never serve the response cache
            source_call_id=ids.get(str(c.get("source_call_id")), c.get("source_call_id")),
        )
    for i in items:
        i.update(run_id=new_id, final_call_id=ids.get(str(i.get("final_call_id")), i.get("final_call_id")))
    with store.begin_write("importing a bundle") as conn:
        conn.execute(sa.insert(runs_table), [run])
        if prices:
            # Price rows are shared by every run: one the database already has is kept as it is. ON
            # CONFLICT DO NOTHING rather than a look-up first, so that two imports (or an import and a
            # run's start) recording the same price at once on PostgreSQL both succeed.
            conn.execute(_insert_new(store.dialect, prices_table), prices)
        for group in _by_columns(calls):
            conn.execute(sa.insert(calls_table), group)
        if items:
            conn.execute(sa.insert(item_results_table), items)
    return BundleSummary(new_id, source_id, len(prices), len(calls), len(items))


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


def export_to_file(store: Store, run_id: str, path: Path) -> BundleSummary:
    """:func:`export_run` into a file (written to a temporary name, then renamed into place)."""
    tmp = path.with_name(path.name + ".part")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            summary = export_run(store, run_id, fh)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary
