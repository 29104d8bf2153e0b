"""What every command of the CLI shares: one-line failures and exit codes, opening the database, the
``--db`` option, simulator URL checks, and the console.

The command modules (:mod:`harness.cli.main`, :mod:`harness.cli.ops`, :mod:`harness.cli.estimate`) import
from here, never from each other's internals, so the imports go one way: ``cli`` registers the other
modules' commands; they depend only on this module.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from harness.errors import ConfigError, StorageError

if TYPE_CHECKING:  # rich is imported when something is printed with it
    from rich.console import Console
    from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

#: The simulated budget when ``--sim`` is given without ``--budget``.
DEFAULT_SIM_BUDGET = Decimal("100")


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _one_line(message: str, limit: int = 600) -> str:
    """``message`` as one line for stderr: whitespace collapsed, URL credentials and secret-looking
    environment values removed (docs/design.md invariant 8), markup-free, and at most ``limit`` characters."""
    from harness.redact import redact_secrets, strip_urls_in_text
    from harness.store.engine import Redactor

    text = redact_secrets(strip_urls_in_text(" ".join(message.split())), Redactor().secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"Error: {_one_line(message)}", err=True)
    raise _Exit(code)


def _cell(value: Any) -> Text:
    """A table cell or line of data, never read as rich markup (a run id or model may hold ``[/]``)."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def check_sim_url(url: str) -> str | None:
    """Why ``url`` is not acceptable as ``--sim-url`` (None when it is): it must be ``http://`` to a
    loopback host (127.0.0.0/8, ::1 or localhost), parsed, not matched by prefix (so
    ``http://127.0.0.1.evil.example`` and ``http://localhost@10.0.0.1`` are refused), with no
    credentials and a valid port."""
    import ipaddress
    from urllib.parse import urlsplit

    why = "--sim-url must be a loopback http:// URL (the simulator is never a remote service)"
    try:
        parts = urlsplit(url.strip())
        _ = parts.port
    except ValueError:
        return f"{why}; {url!r} does not parse as a URL with a valid port"
    if parts.scheme != "http" or not parts.hostname:
        return why
    if "@" in parts.netloc:
        return f"{why}; it must not carry user@ credentials"
    host = parts.hostname
    if host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return None if loopback else f"{why}; {host!r} is not 127.0.0.0/8, ::1 or localhost"


def probe_sim_url(url: str, timeout_s: float = 5.0) -> str | None:
    """Why no simulator answers at ``url`` (None when one does), checked before a run row exists."""
    import urllib.error
    import urllib.request

    base = url.strip().rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(base + "/sim/invoice", timeout=timeout_s) as resp:
            json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return f"{base} answered HTTP {exc.code} to GET /sim/invoice: it is not a tollbench simulator"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        detail = getattr(reason, "strerror", None) or str(reason)
        return (
            f"no simulator answers at {base} ({detail}); start one with `tollbench sim serve`, "
            "or drop --sim-url to let --sim start its own"
        )
    return None


def _stdout() -> Console:
    from rich.console import Console

    console = Console()
    # Piped or captured output gets a wide table instead of one squeezed to 80 columns.
    return console if console.is_terminal else Console(width=200)


def db_option(f: F) -> F:
    return click.option(
        "--db",
        envvar="TOLLBENCH_DB",
        default=None,
        metavar="PATH_OR_URL",
        help="Database file or PostgreSQL URL [env TOLLBENCH_DB; default ./runs.db].",
    )(f)


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="For a preset (aa): each suite's data as DIR/<suite>/ or DIR/<suite>.jsonl|parquet|csv; "
        "a suite not there comes from its usual source (docs/suites.md).",
    )(f)


def preset_of(suites: Sequence[str], data: Path | None, data_dir: Path | None) -> Any:
    """The preset named by SUITES (``aa``), or None; a preset runs alone and takes ``--data-dir``."""
    from suites.presets import get_preset

    named = [s for s in suites if get_preset(s) is not None]
    if not named:
        if data_dir is not None:
            _fail("--data-dir is for presets (aa); a suite takes --data FILE")
        return None
    if len(suites) != 1:
        _fail(f"the preset {named[0]} runs on its own: drop the other suites")
    if data is not None:
        _fail(f"{named[0]}: a preset takes --data-dir DIR (each suite's data in DIR/<suite>/), not --data")
    return get_preset(named[0])


def _sqlite_path(db: str | None) -> Path | None:
    """The file of a SQLite ``--db`` (None for PostgreSQL or an in-memory database)."""
    from sqlalchemy.engine import make_url

    from harness.store.engine import resolve_db_url

    url = make_url(resolve_db_url(db))
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:"):
        return None
    return Path(path)


def _open_store(db: str | None, *, create: bool = True) -> Any:
    """Open the database; with ``create=False`` (commands that only look at existing runs) a SQLite
    file that does not exist is a one-line error instead of a new empty database."""
    from harness.store.engine import Store

    try:
        if not create and (path := _sqlite_path(db)) is not None and not path.exists():
            _fail(f"no database at {path} (pass --db PATH_OR_URL, or set TOLLBENCH_DB)", 2)
        return Store.open(db)
    except StorageError as exc:
        _fail(str(exc), 2)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("psycopg", "psycopg2", "psycopg_binary"):
            _fail(
                "a PostgreSQL --db needs the PostgreSQL driver, which is not installed: "
                "pip install 'tollbench[postgres]'"
            )
        raise
    except (UnicodeDecodeError, sqlite3.DatabaseError) as exc:
        _fail(f"{_db_label(db)}: {_corrupt_message(exc)}")


def _db_label(db: str | None) -> str:
    path = _sqlite_path(db)
    return str(path) if path is not None else "the database"


def _corrupt_message(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:120]
    return (
        f"the database is corrupt ({type(exc).__name__}: {detail}); restore it from a backup or move it away"
    )


def _corruption(exc: BaseException) -> BaseException | None:
    """The sqlite error inside ``exc``'s cause chain that says the file is damaged, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        text = str(cur)
        if isinstance(cur, UnicodeDecodeError) or (
            isinstance(cur, sqlite3.DatabaseError)
            and any(
                m in text
                for m in ("malformed", "Could not decode", "not a database", "file is not a database")
            )
        ):
            return cur
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return None


def _parse_budget(text: str | None) -> Decimal | None:
    if text is None:
        return None
    from harness.pricing.money import parse_usd
    from harness.run.plan import check_budget_usd

    try:
        value = parse_usd(text)
        check_budget_usd(value)
    except ValueError as exc:
        _fail(f"--budget: {exc}")
    except ConfigError as exc:
        _fail(str(exc))
    return value
