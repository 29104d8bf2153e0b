"""Schema migrations for ``runs.db``, in the style of simonw/llm.

Each migration is a function ``mNNN_name(conn)`` registered with :func:`migration`, applied once, in
order, when a database is opened, and recorded in ``_tollbench_migrations``. A migration is never edited
once released: schema changes arrive as new functions. Migrations use SQLAlchemy Core and DDL that
runs unchanged on SQLite and PostgreSQL, and describe the tables *as they were at that step* (frozen
copies, never the live :mod:`harness.store.engine` models), so an old database upgrades the same way forever.

``_tollbench_meta`` holds ``schema_version`` (the number of the newest migration applied). A database
written by a newer tollbench has a higher number or migration names this version does not know, and
opening it is refused rather than risking a write with the wrong schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from harness.errors import StorageError

__all__ = [
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "META_TABLE",
    "SCHEMA_VERSION",
    "Migration",
    "applied_migrations",
    "migrate",
    "migration",
    "needs_migration",
]

Migration = Callable[[Connection], None]

MIGRATIONS: list[Migration] = []
MIGRATIONS_TABLE = "_tollbench_migrations"
META_TABLE = "_tollbench_meta"

#: Tables a tollbench database owns; any of them without the migrations table means "not ours".
OWN_TABLES = ("runs", "calls", "item_results", "prices", "endpoint_facts")

_NAME = re.compile(r"^m(\d{3})_[a-z0-9_]+$")

_bookkeeping = sa.MetaData()
_migrations_t = sa.Table(
    MIGRATIONS_TABLE,
    _bookkeeping,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)
_meta_t = sa.Table(
    META_TABLE,
    _bookkeeping,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration (its name must be ``mNNN_...`` with the next number)."""
    match = _NAME.match(fn.__name__)
    if match is None or int(match.group(1)) != len(MIGRATIONS) + 1:
        raise ValueError(f"migration {fn.__name__!r} must be named m{len(MIGRATIONS) + 1:03d}_<what>")
    MIGRATIONS.append(fn)
    return fn


def _number(name: str) -> int:
    match = _NAME.match(name)
    return int(match.group(1)) if match else 10**6


# ---------------------------------------------------------------------------------------------------
# The migrations. NEVER edit one that has been released; add a new one instead.
# ---------------------------------------------------------------------------------------------------


@migration
def m001_initial(conn: Connection) -> None:
    """Runs, calls (one row per attempt), item results and the prices used."""
    md = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    big = sa.BigInteger
    sa.Table(
        "runs",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("finished_at", ts, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("budget_nano", big, nullable=False),
        sa.Column("committed_nano", big, nullable=False),
        sa.Column("spent_nano", big, nullable=False),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("suites", sa.JSON, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("tollbench_version", sa.String(64), nullable=False),
        sa.Column("price_table_sha256", sa.String(64), nullable=False),
        sa.Column("heartbeat_at", ts, nullable=True),
    )
    sa.Table(
        "prices",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("row", sa.JSON, nullable=False),
        sa.Column("table_sha256", sa.String(64), nullable=False),
        sa.Column("first_used_at", ts, nullable=False),
    )
    sa.Table(
        "calls",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("provider_model", sa.String(200), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reserved_nano", big, nullable=False),
        sa.Column("cost_nano", big, nullable=True),
        sa.Column("usage_known", sa.Boolean, nullable=True),
        sa.Column("input_uncached", big, nullable=True),
        sa.Column("cache_read", big, nullable=True),
        sa.Column("cache_write_5m", big, nullable=True),
        sa.Column("cache_write_1h", big, nullable=True),
        sa.Column("output_tokens", big, nullable=True),
        sa.Column("reasoning_tokens", big, nullable=True),
        sa.Column("raw_usage", sa.JSON, nullable=True),
        sa.Column("price_id", sa.String(64), sa.ForeignKey("prices.id"), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("error_type", sa.String(200), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("started_at", ts, nullable=False),
        sa.Column("finished_at", ts, nullable=True),
        sa.Column("ttft_ms", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("retry_wait_ms", sa.Integer, nullable=True),
        sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    sa.Table(
        "item_results",
        md,
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("suite", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("repeat", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("correct", sa.Boolean, nullable=True),
        sa.Column("extracted", sa.Text, nullable=True),
        sa.Column("answer_text", sa.Text, nullable=True),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("cost_nano", big, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("final_call_id", sa.String(64), nullable=True),
        sa.Column("created_at", ts, nullable=False),
    )
    md.create_all(conn)


@migration
def m002_indexes(conn: Connection) -> None:
    """Indexes for reports, open-reservation lookups and cost queries.

    ``ix_calls_summary`` covers every column ``cost_summary`` reads, in the order it groups them, so
    summing a million calls is one index-only scan without a sort.
    """
    md = sa.MetaData()
    runs = sa.Table("runs", md, sa.Column("id", sa.String(64)), sa.Column("created_at", sa.DateTime))
    names = (
        "run_id", "model", "suite", "provider", "started_at", "status", "reserved_nano", "cost_nano",
        "input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output_tokens",
        "reasoning_tokens", "item_id", "repeat",
    )  # fmt: skip
    calls = sa.Table("calls", md, *(sa.Column(n, sa.String) for n in names))
    c = calls.c
    for index in (
        sa.Index("ix_runs_created_at", runs.c.created_at),
        sa.Index("ix_calls_run_status", c.run_id, c.status),
        sa.Index("ix_calls_run_items", c.run_id, c.model, c.suite, c.item_id, c.repeat),
        sa.Index("ix_calls_started_at", c.started_at),
        sa.Index("ix_calls_summary", *(c[n] for n in names[:14])),
    ):
        index.create(conn)


@migration
def m003_resume_cache(conn: Connection) -> None:
    """What resume, the response cache, export/import and reconcile need on each call row.

    ``request_hash`` is the response-cache key (sha256 of the canonical request, see
    :mod:`harness.run.cache`), ``request`` the canonical request itself and ``response`` the answer text
    with its normalised finish reason; ``sent_to`` names where the request went (``sim:<instance>`` for
    the simulator) so ``reconcile`` knows which invoice can prove it; a ``cached`` row points to the
    call whose answer it reused (``source_call_id``) and keeps that call's cost as ``reproduce_nano``;
    ``service_tier`` is the tier the provider reported (the call was priced at it; ``reprice`` needs it).
    """
    for column in (
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("request", sa.JSON, nullable=True),
        sa.Column("response", sa.JSON, nullable=True),
        sa.Column("sent_to", sa.String(200), nullable=True),
        sa.Column("source_call_id", sa.String(64), nullable=True),
        sa.Column("reproduce_nano", sa.BigInteger, nullable=True),
        sa.Column("service_tier", sa.String(32), nullable=True),
    ):
        type_ = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f'ALTER TABLE calls ADD COLUMN "{column.name}" {type_}'))
    md = sa.MetaData()
    calls = sa.Table(
        "calls", md, sa.Column("request_hash", sa.String(64)), sa.Column("cached", sa.Boolean),
        sa.Column("run_id", sa.String(64)),
    )  # fmt: skip
    sa.Index("ix_calls_request_hash", calls.c.request_hash).create(conn)
    sa.Index("ix_calls_cached", calls.c.cached, calls.c.run_id).create(conn)


@migration
def m004_run_owner(conn: Connection) -> None:
    """Who owns a run (docs/design.md invariant 10): the session that took it over last, as a random
    ``owner_token`` plus its ``owner_pid`` and ``owner_host`` (so another process can tell a dead
    owner on this host). Taking a run over is one conditional UPDATE of these columns and
    ``heartbeat_at``; NULL means nobody owns it (never run by this version, or released at its end).
    """
    for column in (
        sa.Column("owner_token", sa.String(64), nullable=True),
        sa.Column("owner_pid", sa.Integer, nullable=True),
        sa.Column("owner_host", sa.String(255), nullable=True),
    ):
        type_ = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f'ALTER TABLE runs ADD COLUMN "{column.name}" {type_}'))


@migration
def m005_provider_cost_and_endpoints(conn: Connection) -> None:
    """What the provider itself said a call cost, and what tollbench learned about endpoints.

    ``calls.provider_cost_nano`` is the provider-reported cost (OpenRouter ``usage.cost``, xAI
    ``cost_in_usd_ticks``), stored beside the computed ``cost_nano`` so a difference shows.
    ``calls.output_bound`` is an upper bound of the output tokens received by a usage-unknown call (what
    it was charged at least). ``endpoint_facts`` remembers what an endpoint was seen to do (for example
    ``no_stream_usage``: it ends streams without usage, so its calls are made without streaming).
    """
    for column in (
        sa.Column("provider_cost_nano", sa.BigInteger, nullable=True),
        sa.Column("output_bound", sa.BigInteger, nullable=True),
    ):
        type_ = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f'ALTER TABLE calls ADD COLUMN "{column.name}" {type_}'))
    md = sa.MetaData()
    sa.Table(
        "endpoint_facts",
        md,
        sa.Column("endpoint", sa.String(500), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("fact", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)
    # Reports sum usage-unknown and provider-reported calls apart from the index-only cost scan; a
    # partial index keeps that second query to the few rows it needs.
    calls = sa.Table(
        "calls", sa.MetaData(), sa.Column("usage_known", sa.Boolean),
        sa.Column("provider_cost_nano", sa.BigInteger), sa.Column("run_id", sa.String(64)),
    )  # fmt: skip
    where = sa.or_(calls.c.usage_known.is_(False), calls.c.provider_cost_nano.is_not(None))
    sa.Index(
        "ix_calls_unknown_or_reported", calls.c.run_id, sqlite_where=where, postgresql_where=where
    ).create(conn)


@migration
def m006_workers_pools(conn: Connection) -> None:
    """Several workers on one run, and budget pools across runs (issue 14; self-contained, renumber
    freely at a merge).

    ``run_workers``: one row per worker process of a run (its host, pid, lease, heartbeat, and how it
    ended). ``unit_claims``: one row per unit of a run (``seq`` is the plan's order); a unit is
    ``free``, ``claimed`` by one worker until ``lease_until`` (renewed by that worker's heartbeat), or
    ``done`` (its item result is committed, in the same transaction). ``pools``: a budget shared by
    runs, with its own ``committed_nano`` and ``spent_nano``; ``run_pools`` says which pool a run draws
    from (at most one).
    """
    md = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    big = sa.BigInteger
    sa.Table("runs", md, sa.Column("id", sa.String(64), primary_key=True))  # only for the foreign keys
    sa.Table(
        "run_workers",
        md,
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("worker_id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("lease_s", sa.Float, nullable=False),
        sa.Column("started_at", ts, nullable=False),
        sa.Column("heartbeat_at", ts, nullable=False),
        sa.Column("ended_at", ts, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
    )
    sa.Table(
        "unit_claims",
        md,
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("suite", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(200), primary_key=True),
        sa.Column("repeat", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_until", ts, nullable=True),
        sa.Column("claims", sa.Integer, nullable=False),
    )
    sa.Table(
        "pools",
        md,
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("budget_nano", big, nullable=False),
        sa.Column("committed_nano", big, nullable=False),
        sa.Column("spent_nano", big, nullable=False),
    )
    sa.Table(
        "run_pools",
        md,
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("pool", sa.String(200), sa.ForeignKey("pools.name"), nullable=False),
    )
    md.create_all(conn, tables=[md.tables[n] for n in ("run_workers", "unit_claims", "pools", "run_pools")])
    claims = md.tables["unit_claims"]
    sa.Index("ix_unit_claims_next", claims.c.run_id, claims.c.model, claims.c.state, claims.c.seq).create(
        conn
    )
    sa.Index("ix_unit_claims_worker", claims.c.run_id, claims.c.worker_id).create(conn)


@migration
def m007_batches(conn: Connection) -> None:
    """Batch APIs (issue 13): one row per provider batch of a run, and one per request in it.

    ``batches``: ``state`` is ``submitting`` (recorded, with its requests, before the provider is
    asked; ``provider_batch_id`` still empty), ``submitted`` (the provider's id recorded), ``ended``
    (every result settled), ``cancelling`` (a cancel was sent; its results are still to settle) or
    ``abandoned`` (never created: its reservations were released); ``role`` is ``target`` (the
    models' own calls) or ``judge`` (a judged suite's judge pass). ``batch_requests``: the request's
    deterministic ``custom_id``, the ``calls`` row reserved for it, and its unit.
    """
    md = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    sa.Table("runs", md, sa.Column("id", sa.String(64), primary_key=True))  # only for the foreign keys
    sa.Table(
        "batches",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provider_batch_id", sa.String(200), nullable=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("reserved_nano", sa.BigInteger, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("submitted_at", ts, nullable=True),
        sa.Column("ended_at", ts, nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
    )
    sa.Table(
        "batch_requests",
        md,
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("custom_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
    )
    md.create_all(conn, tables=[md.tables["batches"], md.tables["batch_requests"]])
    b = md.tables["batches"]
    sa.Index("ix_batches_run", b.c.run_id, b.c.state).create(conn)
    r = md.tables["batch_requests"]
    sa.Index("ix_batch_requests_call", r.c.call_id).create(conn)


#: The sums a ``run_totals`` row keeps (every sum ``tollbench costs`` prints), in their order.
RUN_TOTALS_SUMS = (
    "calls", "input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output_tokens",
    "reasoning_tokens", "spent_nano", "unsettled_nano", "cached", "saved_nano", "unknown_calls",
    "unknown_nano", "unknown_output_bound", "reported_calls", "reported_nano", "reported_ours_nano",
)  # fmt: skip

_TERMINAL_SQL = "('done', 'budget_exhausted', 'interrupted', 'failed')"


@migration
def m008_run_totals(conn: Connection) -> None:
    """Per-run cost totals, so ``tollbench costs`` over millions of calls reads a few rows (issue 16).

    ``run_totals`` holds one row per (run, model, suite, provider, UTC day of ``started_at``) of a run
    in a final status: every sum ``costs`` prints, computed from the run's calls by the same aggregation
    ``costs`` uses for the others. ``run_totals_state`` says which runs have a complete snapshot
    (``state`` = ``ready``; ``pending`` while one is being computed). The snapshot is valid by
    construction: triggers on ``calls`` (INSERT, UPDATE, DELETE) delete the snapshot of the call's run,
    and a trigger on ``runs`` deletes it when the run's status becomes non-final (a resume), so any
    write that could change a run's totals removes them in the same transaction. A running run has no
    snapshot, so on the hot path the triggers' deletes match nothing.
    """
    md = sa.MetaData()
    big = sa.BigInteger
    sa.Table(
        "run_totals",
        md,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("suite", sa.String(200), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        *(sa.Column(name, big, nullable=False) for name in RUN_TOTALS_SUMS),
    )
    sa.Table(
        "run_totals_state",
        md,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
    )
    md.create_all(conn)
    wipe = "DELETE FROM run_totals_state WHERE run_id = {r}; DELETE FROM run_totals WHERE run_id = {r};"
    old, new = wipe.format(r="OLD.run_id"), wipe.format(r="NEW.run_id")
    if conn.dialect.name == "postgresql":
        functions = {
            "calls": (
                f"IF TG_OP = 'DELETE' THEN {old} ELSE {new} "
                f"IF TG_OP = 'UPDATE' AND OLD.run_id <> NEW.run_id THEN {old} END IF; END IF;"
            ),
            "runs": wipe.format(r="NEW.id"),
        }
        for name, body in functions.items():
            conn.execute(
                sa.text(
                    f"CREATE FUNCTION tollbench_{name}_drop_totals() RETURNS trigger LANGUAGE plpgsql "
                    f"AS $$ BEGIN {body} RETURN NULL; END $$"
                )
            )
        conn.execute(
            sa.text(
                "CREATE TRIGGER calls_drop_totals AFTER INSERT OR UPDATE OR DELETE ON calls "
                "FOR EACH ROW EXECUTE FUNCTION tollbench_calls_drop_totals()"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER runs_drop_totals AFTER UPDATE OF status ON runs FOR EACH ROW "
                f"WHEN (NEW.status NOT IN {_TERMINAL_SQL}) EXECUTE FUNCTION tollbench_runs_drop_totals()"
            )
        )
        return
    for name, when, body in (
        ("calls_insert_drop_totals", "INSERT ON calls", new),
        ("calls_update_drop_totals", "UPDATE ON calls", new),
        ("calls_move_drop_totals", "UPDATE OF run_id ON calls WHEN OLD.run_id <> NEW.run_id", old),
        ("calls_delete_drop_totals", "DELETE ON calls", old),
        ("runs_drop_totals", f"UPDATE OF status ON runs WHEN NEW.status NOT IN {_TERMINAL_SQL}",
         wipe.format(r="NEW.id")),
    ):  # fmt: skip
        conn.execute(sa.text(f"CREATE TRIGGER {name} AFTER {when} BEGIN {body} END"))


SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this tollbench writes (number of the newest migration it knows)."""


# ---------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------


def applied_migrations(conn: Connection) -> list[str] | None:
    """Names of the applied migrations, or None when the database has no migrations table."""
    if not sa.inspect(conn).has_table(MIGRATIONS_TABLE):
        return None
    return [r[0] for r in conn.execute(sa.select(_migrations_t.c.name))]


def _stored_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(META_TABLE):
        return 0
    value = conn.execute(sa.select(_meta_t.c.value).where(_meta_t.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def _check_not_newer(conn: Connection, applied: Sequence[str], label: str) -> None:
    known = {fn.__name__ for fn in MIGRATIONS}
    unknown = sorted(set(applied) - known)
    stored = max([_stored_version(conn), *(_number(n) for n in unknown)], default=0)
    if unknown or stored > SCHEMA_VERSION:
        raise StorageError(
            f"{label}: written by a newer tollbench (schema {max(stored, SCHEMA_VERSION + 1)} > "
            f"{SCHEMA_VERSION}); upgrade tollbench to open it"
        )


def needs_migration(conn: Connection, label: str) -> bool:
    """Whether ``migrate`` has work to do (read-only; raises StorageError for a newer schema)."""
    applied = applied_migrations(conn)
    if applied is None:
        return True
    _check_not_newer(conn, applied, label)
    done = set(applied)
    return any(fn.__name__ not in done for fn in MIGRATIONS)


def migrate(conn: Connection, label: str, *, stop_after: str | None = None) -> list[str]:
    """Apply the missing migrations in order, inside the caller's (write-locked) transaction.

    Args:
        conn: A connection inside a transaction that holds the database's write lock.
        label: How to name the database in errors (a path or a password-free URL).
        stop_after: Apply migrations only up to and including this one (to build old databases in
            tests).

    Returns:
        The names of the migrations applied now.

    Raises:
        StorageError: The database belongs to something else, or a newer tollbench wrote it.
    """
    applied = applied_migrations(conn)
    if applied is None:
        existing = set(sa.inspect(conn).get_table_names())
        foreign = existing & set(OWN_TABLES) if conn.dialect.name != "sqlite" else existing
        if foreign:
            raise StorageError(
                f"{label}: not a tollbench database (it has other tables: {', '.join(sorted(foreign)[:5])}); "
                "refusing to write into it - pass --db with a new file"
            )
        _bookkeeping.create_all(conn)
        applied = []
    _check_not_newer(conn, applied, label)
    done = set(applied)
    now = datetime.now(UTC).isoformat()
    ran: list[str] = []
    for fn in MIGRATIONS:
        name = fn.__name__
        if name not in done:
            fn(conn)
            conn.execute(sa.insert(_migrations_t).values(name=name, applied_at=now))
            ran.append(name)
        if name == stop_after:
            break
    version = max((_number(n) for n in (*done, *ran)), default=0)
    if ran:
        conn.execute(sa.delete(_meta_t).where(_meta_t.c.key == "schema_version"))
        conn.execute(sa.insert(_meta_t).values(key="schema_version", value=str(version)))
    return ran
