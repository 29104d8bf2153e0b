"""Keeping secrets out of what tollbench stores and prints (docs/design.md invariant 8).

Two kinds of secret reach tollbench: API keys (from the environment) and credentials embedded in base
URLs (``https://user:pass@host/v1``, ``...?api_key=...``). A URL with credentials is *used* for sending,
but everything stored (run options, call rows, the cache key's endpoint, bundles) and printed (``--json``,
tables, error messages) goes through :func:`strip_url_credentials` / :func:`strip_urls_in_text` first.

Keys of any length are redacted:

* 12 characters or more: every occurrence, even inside a longer word (the historical rule).
* 4 to 11 characters (self-hosted servers use short keys such as ``"ollama"``): every *whole-token*
  occurrence, i.e. not glued to another letter, digit, ``_`` or ``-``; ordinary text around it is
  never cut into pieces.
* 1 to 3 characters: cannot be redacted without mangling ordinary text (a key ``"x"`` occurs in every
  algebra answer), so :func:`check_key_length` refuses such a key for a live run (exit 2) with a
  message saying to use a longer placeholder. :data:`MIN_KEY_LENGTH` is that limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MIN_KEY_LENGTH",
    "REDACTED",
    "SECRET_QUERY_PARAMS",
    "check_key_length",
    "redact_secrets",
    "strip_url_credentials",
    "strip_urls_in_text",
    "url_has_credentials",
    "url_secrets",
]

REDACTED = "[redacted]"

#: The shortest API key tollbench accepts for a live run (see the module docstring).
MIN_KEY_LENGTH = 4

#: Below this length a secret is redacted only where it stands as a whole token.
_SUBSTRING_LENGTH = 12

#: Query parameters that carry credentials (compared case-insensitively, ``-`` read as ``_``).
SECRET_QUERY_PARAMS = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "authorization",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "x_api_key",
        "session_token",
        "refresh_token",
        "id_token",
        "jwt",
        "private_token",
        "credential",
        "credentials",
    }
)

_TOKEN_CHARS = "A-Za-z0-9_\\-"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>\\]+")


def _secret_param(name: str) -> bool:
    key = name.strip().lower().replace("-", "_")
    return key in SECRET_QUERY_PARAMS or key.endswith(("_key", "_token", "_secret", "_password"))


def url_has_credentials(url: str) -> bool:
    """True when ``url`` carries ``user[:pass]@`` or a credential query parameter."""
    return strip_url_credentials(url) != url


def strip_url_credentials(url: str) -> str:
    """``url`` without ``user:pass@`` and without credential query parameters (``?key=``,
    ``?api_key=``, ``?token=``, ...; see :data:`SECRET_QUERY_PARAMS`). Their values become
    ``[redacted]`` in the query so the reader sees that something was removed; userinfo is dropped.

    A string ``urlsplit`` refuses (a malformed port, a stray ``[``) is cleaned by pattern instead.

    Example::

        >>> strip_url_credentials("https://bob:hunter2@llm.example/v1?api_key=abc&x=1")
        'https://llm.example/v1?api_key=%5Bredacted%5D&x=1'
    """
    if "@" not in url and "=" not in url:
        return url  # fast path: nothing that could carry a credential
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return _strip_by_pattern(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _secret_param(k) else v) for k, v in pairs], quote_via=quote)
    fragment = parts.fragment
    if fragment and "=" in fragment:
        fpairs = parse_qsl(fragment, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in fpairs):
            fragment = urlencode(
                [(k, REDACTED if _secret_param(k) else v) for k, v in fpairs], quote_via=quote
            )
    if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


_USERINFO = re.compile(r"(//)[^/?#]*@")
_QUERY_PAIR = re.compile(r"([?&#;])([^=&#;]+)=([^&#;]*)")


def _strip_by_pattern(url: str) -> str:
    """:func:`strip_url_credentials` for a string ``urlsplit`` refuses (a bad port, a stray ``[``)."""
    url = _USERINFO.sub(r"\1", url, count=1)
    return _QUERY_PAIR.sub(
        lambda m: f"{m.group(1)}{m.group(2)}={quote(REDACTED)}" if _secret_param(m.group(2)) else m.group(0),
        url,
    )


def url_secrets(url: str) -> list[str]:
    """The credential values inside ``url``: the userinfo's password (not the user name, usually a
    common word), and the values of
    credential query parameters (so they are redacted where they appear on their own, too)."""
    if "@" not in url and "=" not in url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out: list[str] = []
    if "@" in parts.netloc:
        password = parts.netloc.rsplit("@", 1)[0].partition(":")[2]
        out.append(unquote(password))
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if _secret_param(k):
            out.append(v)
    return [s for s in out if s]


def strip_urls_in_text(text: str) -> str:
    """Every ``scheme://...`` URL inside ``text`` passed through :func:`strip_url_credentials`."""
    if "://" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        core = url.rstrip(".,;:!?)]}")  # sentence punctuation after a URL is not part of it
        return strip_url_credentials(core) + url[len(core) :]

    return _URL_IN_TEXT.sub(one, text)


@lru_cache(maxsize=256)
def _whole_token(secret: str) -> re.Pattern[str]:
    return re.compile(f"(?<![{_TOKEN_CHARS}]){re.escape(secret)}(?![{_TOKEN_CHARS}])")


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by ``[redacted]``: long secrets (12+) wherever they occur,
    shorter ones where they stand as a whole token (see the module docstring). Empty secrets are
    ignored. Longest first, so a secret that contains another is removed whole."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if secret not in text:
            continue
        if len(secret) >= _SUBSTRING_LENGTH:
            text = text.replace(secret, REDACTED)
        else:
            text = _whole_token(secret).sub(REDACTED, text)
    return text


def check_key_length(key: str, variable: str) -> str | None:
    """A one-line refusal when ``key`` is too short to be kept out of stored text, else None."""
    if 0 < len(key) < MIN_KEY_LENGTH:
        return (
            f"{variable} is only {len(key)} character{'s' if len(key) != 1 else ''} long: a key that short "
            "cannot be told apart from ordinary text, so tollbench could not keep it out of the database; "
            f"use a key (or, for a server without authentication, a placeholder) of {MIN_KEY_LENGTH} or "
            "more characters"
        )
    return None
