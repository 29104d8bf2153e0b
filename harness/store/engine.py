"""The run database: engine, tables and the queries behind ``runs``, ``show`` and ``costs``.

One code path serves SQLite (the default ``./runs.db``, WAL mode) and PostgreSQL
(``postgresql+psycopg://``). The engine is synchronous; async callers (the budget ledger) run database
work in worker threads. Tokens and money are integers (money in nano-dollars, see
:mod:`harness.pricing.money`).

Every write that must be serialised against other processes goes through :meth:`Store.begin_write`,
which takes the database's write lock at the start of the transaction (SQLite ``BEGIN IMMEDIATE``; on
PostgreSQL the caller locks the run row with ``SELECT ... FOR UPDATE``).

Database problems surface as one-line :class:`~harness.errors.StorageError` messages that name the file
and the fix. Nothing written here comes from the environment; as a second line of defence, any value of
a secret-looking environment variable (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``) that
appears in free text is replaced by ``[redacted]`` before it is stored.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import StaticPool

from harness.errors import StorageError
from harness.store import migrations

__all__ = [
    "COST_GROUP_KEYS",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "Redactor",
    "RunOwner",
    "Store",
    "UTCDateTime",
    "calls_table",
    "item_results_table",
    "new_run_id",
    "prices_table",
    "resolve_db_url",
    "runs_table",
    "storage_error",
]

RUN_STATUSES = ("running", "done", "budget_exhausted", "interrupted", "failed")
TERMINAL_STATUSES = frozenset(RUN_STATUSES[1:])
COST_GROUP_KEYS = ("run", "model", "suite", "day", "provider")
DEFAULT_DB = "runs.db"


def resolve_db_url(db: str | None, env: Mapping[str, str] = os.environ) -> str:
    """Turn ``--db`` (or ``$TOLLBENCH_DB``, or ``./runs.db``) into an SQLAlchemy URL.

    A path becomes ``sqlite:///<absolute path>``; ``postgresql://`` and ``postgres://`` become
    ``postgresql+psycopg://``; ``sqlite:///...`` and ``postgresql+psycopg://...`` pass unchanged.
    """
    value = db if db else (env.get("TOLLBENCH_DB") or DEFAULT_DB)
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    if value.startswith(("sqlite:", "postgresql+psycopg://")):
        return value
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        raise StorageError(f"{value.split('://')[0]}: unsupported database; use a file path or postgresql://")
    return "sqlite:///" + str(Path(value).expanduser().resolve())


def new_run_id(now: datetime | None = None) -> str:
    """A short, sortable run id: ``20261128-044419-a1b2c3`` (UTC time plus 24 random bits)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; tollbench stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class RunOwner:
    """One session's claim on a run (``runs.owner_token``, ``owner_pid``, ``owner_host``)."""

    token: str
    pid: int
    host: str

    @classmethod
    def new(cls) -> RunOwner:
        """A fresh owner for a session of this process."""
        return cls(secrets.token_hex(16), os.getpid(), socket.gethostname())


def _str(name: str, length: int, *args: Any, nullable: bool = False, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length), *args, nullable=nullable, **kw)


def _big(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def _int(name: str, nullable: bool = False, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer, nullable=nullable, **kw)


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime, nullable=nullable)


def _text(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text, nullable=True)


def _json(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.JSON(none_as_null=True) if nullable else sa.JSON, nullable=nullable)


# The tables, as SQLAlchemy Core (the schema itself is made by :mod:`harness.store.migrations`). They were
# SQLModel classes; Core tables need neither SQLModel nor pydantic, which ``tollbench costs`` would
# otherwise spend most of its time importing (docs/performance.md). ``tests/harness/test_store_schema.py``
# checks them against the migrated schema.
_md = sa.MetaData()

runs_table = sa.Table(
    "runs",
    _md,
    # One run: its budget ledger (``committed_nano`` = settled spend + open reservations).
    _str("id", 64, primary_key=True),
    _ts("created_at"),
    _ts("finished_at", True),
    _str("status", 32),
    _big("budget_nano"),
    _big("committed_nano"),
    _big("spent_nano"),
    sa.Column("simulated", sa.Boolean, nullable=False),
    _json("suites"),
    _json("models"),
    _json("config"),
    _str("tollbench_version", 64),
    _str("price_table_sha256", 64),
    _ts("heartbeat_at", True),
    # The session that owns the run (see :meth:`Store.claim_run`); NULL when nobody does.
    _str("owner_token", 64, nullable=True),
    _int("owner_pid", True),
    _str("owner_host", 255, nullable=True),
)
"""One run: its budget ledger (``committed_nano`` = settled spend + open reservations)."""

prices_table = sa.Table(
    "prices",
    _md,
    _str("id", 64, primary_key=True),  # sha256 of the row
    _str("provider", 64),
    _str("model", 200),
    _json("row"),
    _str("table_sha256", 64),
    _ts("first_used_at"),
)
"""A price row exactly as used by at least one call (``id`` = sha256 of the row)."""

calls_table = sa.Table(
    "calls",
    _md,
    _str("id", 64, primary_key=True),
    _str("run_id", 64, sa.ForeignKey("runs.id")),
    _str("model", 200),
    _str("provider", 64),
    _str("api", 32),
    _str("provider_model", 200),
    _str("suite", 200),
    _str("item_id", 200),
    _int("repeat"),
    _int("attempt"),
    _str("role", 32),
    _str("status", 32),
    _big("reserved_nano"),
    _big("cost_nano", True),
    sa.Column("usage_known", sa.Boolean, nullable=True),
    _big("input_uncached", True),
    _big("cache_read", True),
    _big("cache_write_5m", True),
    _big("cache_write_1h", True),
    _big("output_tokens", True),
    _big("reasoning_tokens", True),
    _json("raw_usage", True),
    _str("price_id", 64, sa.ForeignKey("prices.id"), nullable=True),
    _str("request_id", 200, nullable=True),
    _str("finish_reason", 64, nullable=True),
    _str("error_type", 200, nullable=True),
    _text("error_message"),
    _int("http_status", True),
    _ts("started_at"),
    _ts("finished_at", True),
    _int("ttft_ms", True),
    _int("latency_ms", True),
    _int("retry_wait_ms", True),
    sa.Column("cached", sa.Boolean, nullable=False, default=False),
    # Response-cache key: sha256 of the canonical request (:mod:`harness.run.cache`).
    _str("request_hash", 64, nullable=True),
    # The canonical request (messages and every parameter; never a key).
    _json("request", True),
    # ``{"text", "finish_reason"}`` of an answered call (or of the answer a cached row reused).
    _json("response", True),
    # Where the request went: ``sim:<instance>`` for the simulator, else the API host.
    _str("sent_to", 200, nullable=True),
    # For a ``cached`` row: the call whose answer was reused.
    _str("source_call_id", 64, nullable=True),
    # For a ``cached`` row: what the reused answer cost when it was bought (cost to reproduce).
    _big("reproduce_nano", True),
    # The service tier the provider reported for the call (it was priced at that tier).
    _str("service_tier", 32, nullable=True),
    # What the provider reported the call cost (OpenRouter, xAI), beside the computed ``cost_nano``.
    _big("provider_cost_nano", True),
    # For a usage-unknown call: an upper bound of the output tokens received (it was charged at least
    # this many at the output price).
    _big("output_bound", True),
)
"""One attempt at a provider call, written ``reserved`` before it is sent and settled after."""

item_results_table = sa.Table(
    "item_results",
    _md,
    _str("run_id", 64, sa.ForeignKey("runs.id"), primary_key=True),
    _str("model", 200, primary_key=True),
    _str("suite", 200, primary_key=True),
    _str("item_id", 200, primary_key=True),
    _int("repeat", primary_key=True),
    _str("status", 32),
    sa.Column("correct", sa.Boolean, nullable=True),
    _text("extracted"),
    _text("answer_text"),
    _text("target"),
    _text("reason"),
    _json("meta"),
    _big("cost_nano"),
    _int("attempts"),
    _str("final_call_id", 64, nullable=True),
    _ts("created_at"),
)
"""The outcome of one item repeat for one model (unique per run, model, suite, item, repeat)."""

endpoint_facts_table = sa.Table(
    "endpoint_facts",
    _md,
    _str("endpoint", 500, primary_key=True),
    _str("model", 200, primary_key=True),
    _str("fact", 64, primary_key=True),
    _str("value", 200),
    _ts("seen_at"),
)
"""What an endpoint was seen to do (``no_stream_usage``...), remembered across runs."""

_totals_md = sa.MetaData()
run_totals_table = sa.Table(
    "run_totals",
    _totals_md,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("suite", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in migrations.RUN_TOTALS_SUMS),
)
"""Per-run cost totals of runs in a final status (migration ``m008_run_totals``)."""
run_totals_state_table = sa.Table(
    "run_totals_state",
    _totals_md,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
)
"""Which runs have a complete ``run_totals`` snapshot (``ready``) or one being computed (``pending``)."""

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
#: Variables whose name says "this is a key" (``OPENAI_API_KEY``, ``VLLM_TOKEN``): their values are
#: redacted down to :data:`~harness.redact.MIN_KEY_LENGTH` characters, as whole tokens. Other
#: secret-looking names (``TOKENIZERS_PARALLELISM``) only from 12 characters, as before.
_KEY_NAME = re.compile(r"(API_?KEY|_KEY|_TOKEN|_SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_NOT_SECRET_VALUES = frozenset({"true", "false", "none", "null"})


class Redactor:
    """Removes secrets from text before it is stored (docs/design.md invariant 8): values of secret-looking
    environment variables, whatever their length (see :mod:`harness.redact`), and credentials in any
    URL (``user:pass@``, ``?api_key=``)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        from harness.redact import MIN_KEY_LENGTH, url_secrets

        found: set[str] = set()
        for k, v in env.items():
            if not v or v.strip().lower() in _NOT_SECRET_VALUES:
                continue
            if (_SECRET_NAME.search(k) and len(v) >= 12) or (
                _KEY_NAME.search(k) and len(v) >= MIN_KEY_LENGTH
            ):
                found.add(v)
            if k.upper().endswith("_URL"):  # OPENAI_BASE_URL=https://user:pass@host/?api_key=...
                found.update(s for s in url_secrets(v) if len(s) >= MIN_KEY_LENGTH)
        self.secrets = sorted(found, key=len, reverse=True)

    def text(self, value: str | None) -> str | None:
        """Return ``value`` with every secret replaced by ``[redacted]``, ready for a text column.

        A NUL character (a model can emit one) becomes U+FFFD: PostgreSQL text columns refuse NUL,
        and a whole ledger batch would fail on one answer.
        """
        from harness.redact import redact_secrets, strip_urls_in_text

        if value is None:
            return value
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        value = strip_urls_in_text(value)  # first: a redacted password would hide the URL's shape
        if self.secrets:
            value = redact_secrets(value, self.secrets)
        return value

    def json(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.json(v) for v in value]
        return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


_PG_LOCK_NOT_AVAILABLE = "55P03"
"""SQLSTATE of ``lock_timeout`` expiring (``canceling statement due to lock timeout``) or NOWAIT."""
_PG_DISK_FULL = "53100"
"""SQLSTATE of ``could not extend file ...: No space left on device``."""


def storage_error(exc: BaseException, label: str, action: str, busy_timeout_s: float = 0) -> StorageError:
    """Map a database exception to a one-line StorageError that names the database and the fix."""
    if isinstance(exc, StorageError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    low = first.lower()
    # PostgreSQL (psycopg) says what went wrong in its SQLSTATE; its messages differ from SQLite's.
    sqlstate = getattr(orig, "sqlstate", None)
    if "file is not a database" in low or "not a database" in low:
        msg = "not a SQLite database (or it is encrypted); move it away or pass --db with another path"
    elif "malformed" in low or "corrupt" in low:
        msg = f"the database is corrupt ({first}); restore it from a backup or move it away"
    elif "locked" in low or "busy" in low or sqlstate == _PG_LOCK_NOT_AVAILABLE:
        msg = (
            f"the database is locked by another process (waited {busy_timeout_s:g}s while {action}); "
            "retry when it is done, or use another --db"
        )
    elif (
        ("full" in low and ("disk" in low or "database" in low))
        or sqlstate == _PG_DISK_FULL
        or "no space left on device" in low
    ):
        msg = f"database or disk is full while {action}; free disk space and retry (committed rows are kept)"
    elif "unable to open database file" in low:
        msg = "cannot open the database file; check that its directory exists and is writable"
    elif "readonly" in low or "read-only" in low:
        msg = "the database is read-only; check the file's permissions"
    elif isinstance(orig, sqlite3.Error):
        msg = f"database error while {action}: {first}"
    elif isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        msg = (
            f"cannot use the database while {action} ({first}); check that the server is running and the URL"
        )
    else:
        msg = f"database error while {action}: {first}"
    return StorageError(f"{label}: {msg}")


class Store:
    """A connection to a tollbench database (sync; async callers use worker threads).

    Attributes:
        url: The SQLAlchemy URL (may contain a password; never print it, use ``label``).
        dialect: ``sqlite`` or ``postgresql``.
        label: How errors name the database: the file path, or the URL without its password.
    """

    def __init__(self, engine: Engine, url: str, label: str, busy_timeout_s: float) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self.label = label
        self.busy_timeout_s = busy_timeout_s
        self.redactor = Redactor()
        self._owned: dict[str, str] = {}
        """Runs this Store's sessions own: run id -> owner token (heartbeats renew only these)."""

    # -- opening --------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        db: str | None = None,
        *,
        busy_timeout_s: float = 30.0,
        sqlite_pragmas: Mapping[str, str | int] | None = None,
        migrate_until: str | None = None,
    ) -> Store:
        """Resolve ``db``, connect, check the schema and apply missing migrations.

        Args:
            db: A file path or a URL; None means ``$TOLLBENCH_DB`` or ``./runs.db``.
            busy_timeout_s: How long to wait for another process's write lock.
            sqlite_pragmas: Extra per-connection SQLite pragmas (tests use ``max_page_count``).
            migrate_until: Stop after this migration (only to build old databases in tests).

        Raises:
            StorageError: Not a database, corrupt, foreign, locked, full, or written by a newer tollbench.
        """
        url = resolve_db_url(db)
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database or ""
            memory = path in ("", ":memory:")
            label = path or ":memory:"
            if not memory:
                _precheck_sqlite(path, busy_timeout_s)
            engine = sa.create_engine(
                url,
                connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
                json_serializer=_json_dumps,
                **({"poolclass": StaticPool} if memory else {}),
            )
            _sqlite_events(engine, busy_timeout_s, dict(sqlite_pragmas or {}))
        else:
            label = parsed.render_as_string(hide_password=True)
            engine = sa.create_engine(
                url, json_serializer=_json_dumps, connect_args={"connect_timeout": 10}, pool_size=8
            )
            _postgres_events(engine, busy_timeout_s)
        store = cls(engine, url, label, busy_timeout_s)
        try:
            store._migrate(migrate_until)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _migrate(self, stop_after: str | None) -> None:
        with self.wrap_errors("opening"):
            with self.engine.connect() as conn:
                needed = migrations.needs_migration(conn, self.label)
            if needed or stop_after:
                with self.begin_write() as conn:
                    if self.dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7274512330)"))
                    migrations.migrate(conn, self.label, stop_after=stop_after)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------------------

    @contextmanager
    def wrap_errors(self, action: str) -> Iterator[None]:
        """Turn database exceptions raised inside the block into one-line StorageErrors."""
        try:
            yield
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise storage_error(exc, self.label, action, self.busy_timeout_s) from exc

    @contextmanager
    def begin_write(self, action: str = "writing") -> Iterator[Connection]:
        """A transaction that holds the write lock from its start (SQLite ``BEGIN IMMEDIATE``)."""
        with self.wrap_errors(action), self.engine.connect() as conn:
            conn.execution_options(tollbench_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def begin_read(self, action: str = "reading") -> Iterator[Connection]:
        """A read-only transaction that sees one consistent snapshot for all of its statements.

        SQLite (WAL) pins the snapshot at the first read of a deferred transaction. PostgreSQL's default
        READ COMMITTED would give every statement its own snapshot, so an export or a report made of
        several queries could mix states from before and after another process's commit (a bundle
        whose spend does not add up to its calls); there the transaction is REPEATABLE READ, READ ONLY
        (which never fails with a serialization error). Both settings end with the transaction.
        """
        with self.wrap_errors(action), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    # -- runs -----------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        suites: list[str],
        models: list[str],
        budget_nano: int,
        simulated: bool,
        config: Mapping[str, Any],
        price_table_sha256: str,
        run_id: str | None = None,
        tollbench_version: str | None = None,
        owner: RunOwner | None = None,
    ) -> str:
        """Insert a ``running`` run with nothing committed and return its id; ``owner`` owns it."""
        if budget_nano < 0:
            raise ValueError("budget_nano must be >= 0")
        now = datetime.now(UTC)
        rid = run_id or new_run_id(now)
        with self.begin_write("creating a run") as conn:
            conn.execute(
                sa.insert(runs_table).values(
                    id=rid,
                    created_at=now,
                    finished_at=None,
                    status="running",
                    budget_nano=budget_nano,
                    committed_nano=0,
                    spent_nano=0,
                    simulated=simulated,
                    suites=list(suites),
                    models=list(models),
                    config=self.redactor.json(dict(config)),
                    tollbench_version=tollbench_version or _version(),
                    price_table_sha256=price_table_sha256,
                    heartbeat_at=now,
                    **(_owner_values(owner) if owner is not None else {}),
                )
            )
        if owner is not None:
            self._owned[rid] = owner.token
        return rid

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run row as a dict, or None."""
        with self.begin_read() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.id == run_id)).one_or_none()
        return None if row is None else dict(row._mapping)

    def set_run_status(self, run_id: str, status: str) -> None:
        """Set a run's status; terminal statuses set ``finished_at``, ``running`` clears it."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        now = datetime.now(UTC)
        with self.begin_write("updating a run") as conn:
            result = conn.execute(
                sa.update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(
                    status=status,
                    finished_at=now if status in TERMINAL_STATUSES else None,
                    heartbeat_at=now,
                )
            )
            if result.rowcount != 1:
                raise StorageError(f"{self.label}: no run {run_id!r}; list runs with `tollbench runs`")

    def touch_heartbeat(self, run_id: str) -> bool:
        """Set a run's ``heartbeat_at`` to now (a running process is alive).

        When a session of this Store owns the run, the heartbeat renews its ownership and is written
        only while it still owns it (``WHERE owner_token = mine``).

        Returns:
            False when this Store's session no longer owns the run (another took it over with
            ``--force``, or after its heartbeat went stale): it should stop starting new work.
        """
        r = runs_table
        token = self._owned.get(run_id)
        where = [r.c.id == run_id] + ([r.c.owner_token == token] if token is not None else [])
        with self.begin_write("updating a run's heartbeat") as conn:
            result = conn.execute(sa.update(r).where(*where).values(heartbeat_at=datetime.now(UTC)))
        return bool(result.rowcount == 1)

    def claim_run(
        self,
        run_id: str,
        owner: RunOwner,
        *,
        stale_before: datetime,
        gone_token: str | None = None,
        force: bool = False,
        add_budget_nano: int = 0,
    ) -> bool:
        """Take over ``run_id`` for ``owner``: ONE conditional UPDATE of the run row, never a read then
        a write (docs/design.md invariant 10). Its row count decides who proceeds.

        The row is taken only when it has no owner, ``owner`` already owns it, its heartbeat is older
        than ``stale_before``, or its owner is ``gone_token`` (the caller saw that owner's process dead
        on this host: if another session took it over since, the token differs and nothing happens).
        ``force`` takes it unconditionally, still in one statement. The winner's status becomes
        ``running``, its heartbeat now, and its budget grows by ``add_budget_nano`` in the same
        statement, so a loser adds nothing.

        Returns:
            True if ``owner`` owns the run now.
        """
        if add_budget_nano < 0:
            raise ValueError("add_budget_nano must be >= 0")
        r = runs_table
        where: list[sa.ColumnElement[bool]] = [r.c.id == run_id]
        if not force:
            free = [
                r.c.owner_token.is_(None),
                r.c.owner_token == owner.token,
                r.c.heartbeat_at.is_(None),
                r.c.heartbeat_at < stale_before,
            ]
            if gone_token is not None:
                free.append(r.c.owner_token == gone_token)
            where.append(sa.or_(*free))
        values: dict[str, Any] = {
            **_owner_values(owner),
            "status": "running",
            "finished_at": None,
            "heartbeat_at": datetime.now(UTC),
        }
        if add_budget_nano:
            values["budget_nano"] = r.c.budget_nano + add_budget_nano
        with self.begin_write("taking over a run") as conn:
            result = conn.execute(sa.update(r).where(*where).values(**values))
        won = result.rowcount == 1
        if won:
            self._owned[run_id] = owner.token
        return bool(won)

    def release_run(self, run_id: str, status: str, token: str | None) -> bool:
        """Give a run its final ``status`` and release its ownership, only while ``token`` still owns
        it (one conditional UPDATE). With ``token=None`` (a session that joined a run it does not own)
        the status is set only when nobody owns the run any more.

        Returns:
            True if the run row was updated (False: another session owns it now and ends it).
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        r = runs_table
        now = datetime.now(UTC)
        mine = r.c.owner_token.is_(None) if token is None else r.c.owner_token == token
        with self.begin_write("updating a run") as conn:
            result = conn.execute(
                sa.update(r)
                .where(r.c.id == run_id, mine)
                .values(
                    status=status,
                    finished_at=now if status in TERMINAL_STATUSES else None,
                    heartbeat_at=now,
                    **_owner_values(None),
                )
            )
        if token is not None and self._owned.get(run_id) == token:
            del self._owned[run_id]
        return bool(result.rowcount == 1)

    def forget_ownership(self, run_id: str) -> None:
        """Stop renewing ``run_id`` from this Store (its session ended without releasing it)."""
        self._owned.pop(run_id, None)

    def update_run_config(self, run_id: str, key: str, value: Any) -> None:
        """Set ``config[key]`` of a run (read-modify-write in one transaction)."""

        def edit(config: dict[str, Any]) -> None:
            config[key] = value

        self._edit_run_config(run_id, edit)

    def add_to_run_config_list(self, run_id: str, key: str, value: Any, *, keep: int | None = None) -> None:
        """Append ``value`` to the list ``config[key]`` of a run unless it is there; ``keep`` caps the
        list's length (the newest are kept)."""

        def edit(config: dict[str, Any]) -> None:
            items = list(config.get(key) or [])
            if value not in items:
                items.append(value)
            config[key] = items[-keep:] if keep else items

        self._edit_run_config(run_id, edit)

    def _edit_run_config(self, run_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
        """Change a run's config under its row lock, so concurrent processes never drop each other's
        changes (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write transaction is exclusive)."""
        with self.begin_write("updating a run's config") as conn:
            row = conn.execute(
                sa.select(runs_table.c.config).where(runs_table.c.id == run_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise StorageError(f"{self.label}: no run {run_id!r}; list runs with `tollbench runs`")
            raw = row.config
            config = dict(raw if isinstance(raw, dict) else json.loads(raw or "{}"))
            edit(config)
            conn.execute(sa.update(runs_table).where(runs_table.c.id == run_id).values(config=config))

    def ensure_price(
        self, price_id: str, provider: str, model: str, row: Mapping[str, Any], table_sha256: str
    ) -> None:
        """Record a price row once (idempotent; the first use time is kept).

        ``INSERT ... ON CONFLICT DO NOTHING``, not a look-up then an insert: two processes starting runs
        on a shared PostgreSQL database at once would both see the row missing (its write transactions
        take no lock by themselves, unlike SQLite's ``BEGIN IMMEDIATE``), and the second insert would
        fail on the primary key.
        """
        with self.begin_write("recording a price") as conn:
            conn.execute(
                _insert_new(self.dialect, prices_table).values(
                    id=price_id,
                    provider=provider,
                    model=model,
                    row=dict(row),
                    table_sha256=table_sha256,
                    first_used_at=datetime.now(UTC),
                )
            )

    def endpoint_facts(self, endpoint: str, model: str) -> dict[str, str]:
        """What was learned about ``model`` at ``endpoint`` (a credential-free URL): fact -> value."""
        t = endpoint_facts_table
        with self.begin_read("reading endpoint facts") as conn:
            rows = conn.execute(
                sa.select(t.c.fact, t.c.value).where(t.c.endpoint == endpoint, t.c.model == model)
            ).all()
        return {str(f): str(v) for f, v in rows}

    def set_endpoint_fact(self, endpoint: str, model: str, fact: str, value: str) -> None:
        """Remember a fact about ``model`` at ``endpoint`` (replacing an earlier value)."""
        t = endpoint_facts_table
        with self.begin_write("remembering an endpoint fact") as conn:
            key = (t.c.endpoint == endpoint, t.c.model == model, t.c.fact == fact)
            conn.execute(sa.delete(t).where(*key))
            conn.execute(
                sa.insert(t).values(
                    endpoint=endpoint, model=model, fact=fact, value=value, seen_at=datetime.now(UTC)
                )
            )

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, with its number of call rows."""
        r = runs_table
        counts = (
            sa.select(calls_table.c.run_id, sa.func.count().label("calls"))
            .group_by(calls_table.c.run_id)
            .subquery()
        )
        stmt = (
            sa.select(
                r.c.id,
                r.c.created_at,
                r.c.finished_at,
                r.c.suites,
                r.c.models,
                r.c.status,
                r.c.budget_nano,
                r.c.spent_nano,
                r.c.committed_nano,
                r.c.simulated,
                sa.func.coalesce(counts.c.calls, 0).label("calls"),
            )
            .outerjoin(counts, counts.c.run_id == r.c.id)
            .order_by(r.c.created_at.desc(), r.c.id.desc())
        )
        with self.begin_read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(stmt)]
        for row in rows:
            row["calls"] = int(row["calls"])
        return rows

    # -- per-run reads --------------------------------------------------------------------------------

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        """Every call row of a run, in the order they started."""
        c = calls_table
        stmt = sa.select(c).where(c.c.run_id == run_id).order_by(c.c.started_at, c.c.id)
        with self.begin_read() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def item_results(self, run_id: str) -> list[dict[str, Any]]:
        """Every item result of a run, ordered by model, suite, item and repeat."""
        t = item_results_table
        stmt = (
            sa.select(t).where(t.c.run_id == run_id).order_by(t.c.model, t.c.suite, t.c.item_id, t.c.repeat)
        )
        with self.begin_read() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def open_reservations(self, run_id: str) -> list[dict[str, Any]]:
        """Call rows still ``reserved`` (in flight, or left by a crash and counted at worst case)."""
        c = calls_table
        stmt = sa.select(c).where(c.c.run_id == run_id, c.c.status == "reserved").order_by(c.c.started_at)
        with self.begin_read() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def run_report(self, run_id: str) -> list[dict[str, Any]]:
        """Per (model, suite) totals of one run: calls, errors, items and scores, tokens and money."""
        c, t = calls_table, item_results_table
        call_stmt = (
            sa.select(
                c.c.model,
                c.c.suite,
                *_call_sums(c),
                *_extra_sums(c),
                _count_if(c.c.status == "error").label("errors"),
                _count_if(c.c.cached.is_(True)).label("cached"),
                sa.func.sum(sa.case((c.c.cached.is_(True), c.c.reproduce_nano), else_=0)).label("saved_nano"),
                # A judged suite's judge calls (role ``judge``, harness.run.judge), shown apart.
                _count_if(c.c.role == "judge").label("judge_calls"),
                sa.func.sum(sa.case((c.c.role == "judge", c.c.cost_nano), else_=0)).label("judge_nano"),
            )
            .where(c.c.run_id == run_id)
            .group_by(c.c.model, c.c.suite)
        )
        item_stmt = (
            sa.select(
                t.c.model,
                t.c.suite,
                _count_if(t.c.status == "scored").label("scored"),
                _count_if(t.c.correct.is_(True)).label("correct"),
                _count_if(t.c.status == "unusable").label("unusable"),
                _count_if(t.c.status == "not_run").label("not_run"),
                _count_if(t.c.status == "error").label("item_errors"),
                sa.func.sum(sa.case((t.c.status == "unusable", t.c.cost_nano), else_=0)).label(
                    "unusable_nano"
                ),
            )
            .where(t.c.run_id == run_id)
            .group_by(t.c.model, t.c.suite)
        )
        keys = sa.union(
            sa.select(c.c.model, c.c.suite, c.c.item_id, c.c.repeat).where(c.c.run_id == run_id),
            sa.select(t.c.model, t.c.suite, t.c.item_id, t.c.repeat).where(t.c.run_id == run_id),
        ).subquery()
        items_stmt = sa.select(keys.c.model, keys.c.suite, sa.func.count().label("items")).group_by(
            keys.c.model, keys.c.suite
        )
        report: dict[tuple[str, str], dict[str, Any]] = {}
        with self.begin_read() as conn:
            for stmt in (items_stmt, call_stmt, item_stmt):
                for row in conn.execute(stmt):
                    entry = report.setdefault((row.model, row.suite), _empty_report(row.model, row.suite))
                    entry.update(
                        {k: int(v or 0) for k, v in row._mapping.items() if k not in ("model", "suite")}
                    )
        for entry in report.values():
            entry["cache_write"] = entry["cache_write_5m"] + entry["cache_write_1h"]
        return [report[k] for k in sorted(report)]

    # -- costs across runs ----------------------------------------------------------------------------

    def cost_summary(
        self,
        *,
        by: Sequence[str] = ("model",),
        since: date | None = None,
        until: date | None = None,
        run_id: str | None = None,
        snapshots: bool = True,
    ) -> list[dict[str, Any]]:
        """Spend and tokens grouped by any of ``run, model, suite, day, provider``.

        Each row has the group keys, ``calls``, the token sums, ``spent_nano`` (settled cost),
        ``unsettled_nano`` (open reservations at their worst case), ``cached`` (calls answered from
        the response cache), ``saved_nano`` (what those answers cost when they were bought), the
        usage-unknown and provider-reported sums, and ``simulated`` (True, False or ``"mixed"``).
        ``since`` and ``until`` are inclusive UTC days of the calls' start times.

        Runs in a final status are read from their ``run_totals`` snapshot (computed and stored here on
        the first query that needs it, see :meth:`_snapshot_totals`); the others are summed from their
        calls. ``snapshots=False`` sums every run from its calls (the reference the tests compare to).
        """
        unknown = [k for k in by if k not in COST_GROUP_KEYS]
        if unknown:
            raise ValueError(f"cannot group costs by {', '.join(unknown)}; use {', '.join(COST_GROUP_KEYS)}")
        keys = list(dict.fromkeys(by))
        with_day = "day" in keys
        r, s = runs_table, run_totals_state_table
        only_run = [r.c.id == run_id] if run_id is not None else []
        if snapshots:
            with self.begin_read("summing costs") as conn:
                final = {row.id for row in conn.execute(sa.select(r.c.id, r.c.status).where(*only_run))
                         if row.status in TERMINAL_STATUSES}  # fmt: skip
                final -= self._ready_runs(conn, run_id)
            if final:
                self._snapshot_totals(sorted(final))
        c, t = calls_table, run_totals_table
        filters: list[sa.ColumnElement[bool]] = []
        totals_filters: list[sa.ColumnElement[bool]] = []
        if run_id is not None:
            filters.append(c.c.run_id == run_id)
            totals_filters.append(t.c.run_id == run_id)
        if since is not None:
            filters.append(c.c.started_at >= _day_start(since))
            totals_filters.append(t.c.day >= since.isoformat())
        if until is not None:
            filters.append(c.c.started_at < _day_start(until + timedelta(days=1)))
            totals_filters.append(t.c.day <= until.isoformat())
        groups: list[tuple[tuple[Any, ...], dict[str, int]]] = []
        with self.begin_read("summing costs") as conn:
            simulated = {row.id: bool(row.simulated) for row in conn.execute(
                sa.select(r.c.id, r.c.simulated).where(*only_run))}  # fmt: skip
            ready = self._ready_runs(conn, run_id) if snapshots else set()
            if ready:
                stmt = sa.select(t).where(
                    *totals_filters, t.c.run_id.in_(sa.select(s.c.run_id).where(s.c.state == "ready"))
                )
                for row in conn.execute(stmt):
                    m = row._mapping
                    key = (m["run_id"], m["model"], m["suite"], m["provider"], m["day"] if with_day else None)
                    groups.append((key, {k: int(m[k]) for k in migrations.RUN_TOTALS_SUMS}))
            if not ready:
                groups.extend(_sum_calls(conn, filters, with_day).items())
            else:
                live = sorted(set(simulated) - ready)
                for chunk in range(0, len(live), 500):
                    where = [*filters, c.c.run_id.in_(live[chunk : chunk + 500])]
                    groups.extend(_sum_calls(conn, where, with_day).items())
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for group, sums in groups:
            named = dict(zip(("run", "model", "suite", "provider", "day"), group, strict=True))
            values = {k: named[k] for k in keys}
            key = tuple(values[k] for k in keys)
            entry = out.get(key)
            if entry is None:
                entry = out[key] = {
                    **values,
                    **dict.fromkeys(migrations.RUN_TOTALS_SUMS, 0),
                    "simulated": None,
                }
            for name, value in sums.items():
                entry[name] += value
            sim = simulated.get(group[0], False)
            entry["simulated"] = sim if entry["simulated"] in (None, sim) else "mixed"
        for entry in out.values():
            entry["cache_write"] = entry["cache_write_5m"] + entry["cache_write_1h"]
        return [out[k] for k in sorted(out, key=lambda k: tuple("" if v is None else str(v) for v in k))]

    def _ready_runs(self, conn: Connection, run_id: str | None) -> set[str]:
        s = run_totals_state_table
        where = [s.c.state == "ready", *([s.c.run_id == run_id] if run_id is not None else [])]
        return {str(v) for v in conn.execute(sa.select(s.c.run_id).where(*where)).scalars()}

    def _snapshot_totals(self, run_ids: Sequence[str]) -> set[str]:
        """Compute and store the ``run_totals`` of finished runs; returns the runs now snapshotted.

        Never fails: on a read-only database, a lock wait that times out or any database error, the
        caller simply sums those runs from their calls. Correct against concurrent writers to
        ``calls`` without holding the write lock while summing:

        1. one short write transaction marks each run ``pending`` under a fresh token (if its status is
           still final); from its commit on, any write to the run's calls (or a resume) deletes the
           marker, through the triggers of ``m008_run_totals``;
        2. on PostgreSQL, ``LOCK TABLE calls IN SHARE MODE`` (released at once) waits for writers that
           were in flight before the markers existed (their trigger could not see them);
        3. the calls are summed in one read snapshot taken after that;
        4. one short write transaction turns the markers still ``pending`` with our token into
           ``ready`` and inserts the totals of exactly those runs. A marker deleted in between means the
           sums may be stale: that run is not stored.
        """
        r, s, t = runs_table, run_totals_state_table, run_totals_table
        token = secrets.token_hex(16)
        try:
            with self.begin_write("snapshotting run totals") as conn:
                final: list[str] = []
                for chunk in _chunks(run_ids):
                    rows = conn.execute(sa.select(r.c.id, r.c.status).where(r.c.id.in_(chunk)))
                    final.extend(row.id for row in rows if row.status in TERMINAL_STATUSES)
                for chunk in _chunks(final):
                    conn.execute(sa.delete(s).where(s.c.run_id.in_(chunk)))
                    conn.execute(sa.delete(t).where(t.c.run_id.in_(chunk)))
                if final:
                    conn.execute(
                        sa.insert(s), [{"run_id": i, "state": "pending", "token": token} for i in final]
                    )
            if not final:
                return set()
            if self.dialect == "postgresql":
                with self.begin_write("snapshotting run totals") as conn:
                    conn.execute(sa.text("LOCK TABLE calls IN SHARE MODE"))
            sums: dict[tuple[Any, ...], dict[str, int]] = {}
            with self.begin_read("snapshotting run totals") as conn:
                for chunk in _chunks(final):
                    sums.update(_sum_calls(conn, [calls_table.c.run_id.in_(chunk)], True))
            stored: set[str] = set()
            with self.begin_write("snapshotting run totals") as conn:
                for chunk in _chunks(final):
                    result = conn.execute(
                        sa.update(s)
                        .where(s.c.run_id.in_(chunk), s.c.token == token, s.c.state == "pending")
                        .values(state="ready")
                        .returning(s.c.run_id)
                    )
                    stored.update(str(v) for v in result.scalars())
                snapshot = [
                    {**dict(zip(("run_id", "model", "suite", "provider", "day"), key, strict=True)), **v}
                    for key, v in sums.items()
                    if key[0] in stored
                ]
                if snapshot:
                    conn.execute(sa.insert(t), snapshot)
            return stored
        except (StorageError, sa.exc.SQLAlchemyError, sqlite3.Error):
            return set()


_TOKEN_SUMS = (
    "input_uncached",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output_tokens",
    "reasoning_tokens",
)


def _count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def _call_sums(c: sa.Table) -> list[sa.ColumnElement[Any]]:
    return [
        sa.func.count().label("calls"),
        *(sa.func.sum(c.c[name]).label(name) for name in _TOKEN_SUMS),
        sa.func.sum(c.c.cost_nano).label("spent_nano"),
        sa.func.sum(sa.case((c.c.status == "reserved", c.c.reserved_nano), else_=0)).label("unsettled_nano"),
    ]


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _sum_calls(
    conn: Connection, filters: Sequence[sa.ColumnElement[bool]], with_day: bool
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Every sum ``tollbench costs`` prints, per (run, model, suite, provider, UTC day or None), summed
    from the call rows matching ``filters``. The one aggregation behind both the live query and the
    ``run_totals`` snapshots (so they cannot drift).

    Always groups by the leading columns of ix_calls_summary (an index-only scan in index order, no
    sort); the day is added only when asked for (snapshots always keep it).
    """
    c = calls_table
    group: list[sa.ColumnElement[Any]] = [c.c.run_id, c.c.model, c.c.suite, c.c.provider]
    if with_day:
        group.append(sa.func.date(c.c.started_at).label("day"))

    def key(row: Any) -> tuple[Any, ...]:
        head = tuple(row[:4])
        return (*head, _plain(row[4]) if with_day else None)

    stmt = sa.select(*group, *_call_sums(c)).where(*filters).group_by(*group)
    # Cache savings come from a second, small query over the cached rows (ix_calls_cached), so the
    # main one stays an index-only scan of ix_calls_summary.
    saved_stmt = (
        sa.select(
            *group,
            sa.func.count().label("cached"),
            sa.func.sum(sa.func.coalesce(c.c.reproduce_nano, 0)).label("saved_nano"),
        )
        .where(c.c.cached.is_(True), *filters)
        .group_by(*group)
    )
    # Usage-unknown and provider-reported calls: a third small query (ix_calls_unknown_or_reported).
    extra_stmt = sa.select(*group, *_extra_sums(c)).where(_extra_filter(c), *filters).group_by(*group)
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    zero = dict.fromkeys(migrations.RUN_TOTALS_SUMS, 0)
    for stmt_, names in (
        (stmt, ("calls", *_TOKEN_SUMS, "spent_nano", "unsettled_nano")),
        (saved_stmt, ("cached", "saved_nano")),
        (extra_stmt, _UNKNOWN_AND_REPORTED),
    ):
        for row in conn.execute(stmt_):
            entry = out.setdefault(key(row), dict(zero))
            m = row._mapping
            for name in names:
                entry[name] += int(m[name] or 0)
    return out


def _unknown_cond(c: sa.Table) -> sa.ColumnElement[bool]:
    """A charged call whose usage never arrived (reports show it as such, never as 0 tokens)."""
    return sa.and_(c.c.usage_known.is_(False), c.c.cost_nano > 0)


def _extra_filter(c: sa.Table) -> sa.ColumnElement[bool]:
    """The few rows :func:`_extra_sums` needs (the partial index ``ix_calls_unknown_or_reported``)."""
    return sa.or_(c.c.usage_known.is_(False), c.c.provider_cost_nano.is_not(None))


def _extra_sums(c: sa.Table) -> list[sa.ColumnElement[Any]]:
    """Usage-unknown calls, and what providers reported their calls cost beside what we computed."""
    unknown = _unknown_cond(c)
    reported = c.c.provider_cost_nano.is_not(None)
    return [
        _count_if(unknown).label("unknown_calls"),
        sa.func.sum(sa.case((unknown, c.c.cost_nano), else_=0)).label("unknown_nano"),
        sa.func.sum(sa.case((unknown, sa.func.coalesce(c.c.output_bound, 0)), else_=0)).label(
            "unknown_output_bound"
        ),
        _count_if(reported).label("reported_calls"),
        sa.func.sum(sa.case((reported, c.c.provider_cost_nano), else_=0)).label("reported_nano"),
        sa.func.sum(sa.case((reported, c.c.cost_nano), else_=0)).label("reported_ours_nano"),
    ]


def _empty_report(model: str, suite: str) -> dict[str, Any]:
    names = ("calls", "errors", "items", "scored", "correct", "unusable", "not_run", "item_errors")
    return {
        "model": model,
        "suite": suite,
        **dict.fromkeys(names, 0),
        **dict.fromkeys(_TOKEN_SUMS, 0),
        "spent_nano": 0,
        "unsettled_nano": 0,
        "unusable_nano": 0,
        "cache_write": 0,
        "cached": 0,
        "saved_nano": 0,
        **dict.fromkeys(_UNKNOWN_AND_REPORTED, 0),
        "judge_calls": 0,
        "judge_nano": 0,
    }


#: Sums of :func:`_call_sums` about usage-unknown calls and provider-reported costs.
_UNKNOWN_AND_REPORTED = (
    "unknown_calls",
    "unknown_nano",
    "unknown_output_bound",
    "reported_calls",
    "reported_nano",
    "reported_ours_nano",
)


def _owner_values(owner: RunOwner | None) -> dict[str, Any]:
    return {
        "owner_token": owner.token if owner else None,
        "owner_pid": owner.pid if owner else None,
        "owner_host": owner.host if owner else None,
    }


def _insert_new(dialect: str, table: sa.Table) -> Any:
    """``INSERT`` into ``table`` that skips rows whose primary key already exists (``ON CONFLICT DO
    NOTHING``, on SQLite and PostgreSQL), so concurrent writers of the same row both succeed."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    return stmt.on_conflict_do_nothing(index_elements=list(table.primary_key.columns))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tollbench")
    except Exception:  # pragma: no cover - not installed
        return "0+unknown"


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _precheck_sqlite(path: str, busy_timeout_s: float) -> None:
    """Refuse non-SQLite, corrupt and foreign files before anything writes to them."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        if not p.parent.is_dir():
            raise StorageError(f"{path}: cannot create the database; directory {p.parent} does not exist")
        return
    try:
        with p.open("rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StorageError(
            f"{path}: cannot read the database file ({exc.strerror}); check permissions"
        ) from exc
    if not head.startswith(_SQLITE_MAGIC):
        raise StorageError(
            f"{path}: not a SQLite database (or it is encrypted); move it away or pass --db with another path"
        )
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise storage_error(exc, path, "opening", busy_timeout_s) from exc
    except UnicodeDecodeError:  # a byte-flipped schema page SQLite itself does not notice
        raise StorageError(
            f"{path}: the database is corrupt (its schema is not readable); restore it from a backup "
            "or pass --db with another path"
        ) from None
    user_tables = {n for n in names if not n.startswith("sqlite_")}
    if user_tables and migrations.MIGRATIONS_TABLE not in user_tables:
        listed = ", ".join(sorted(user_tables)[:5])
        raise StorageError(
            f"{path}: not a tollbench database (it has other tables: {listed}); "
            "refusing to write into it - pass --db with a new file"
        )


def _sqlite_events(engine: Engine, busy_timeout_s: float, pragmas: Mapping[str, str | int]) -> None:
    for name, value in pragmas.items():
        if not re.fullmatch(r"[a-z_]+", name) or not re.fullmatch(r"[A-Za-z0-9_-]+", str(value)):
            raise ValueError(f"bad pragma {name}={value}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            for name, value in pragmas.items():
                cur.execute(f"PRAGMA {name} = {value}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("tollbench_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_events(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute(f"SET lock_timeout = {int(busy_timeout_s * 1000)}")
                # A frozen client (a paused process, a suspended machine) must not hold the run's row
                # locks for ever: the server ends a transaction left idle this long, so other
                # workers' waits (``lock_timeout``) end first in success (docs/workers.md).
                idle_ms = max(1000, int(busy_timeout_s * 500))
                cur.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
        finally:
            dbapi_conn.autocommit = autocommit
