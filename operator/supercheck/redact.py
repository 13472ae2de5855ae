"""Secrets out of the text that leaves the operator: status messages, Events, log lines and rows.

Every reader of a TestRun sees its status and its Events, so an error text the operator passes on
must not carry a password. The texts at risk are those of Redis, PostgreSQL and the API server,
which may quote a connection string, and a connection string may hold a password:

* in a URL's user info: ``redis://:pw@h``, ``rediss://u:pw@h``, ``postgresql://u:pw@h/db``;
* in a URL's query: ``?password=pw``, ``&sslpassword=pw``;
* in a libpq keyword DSN: ``host=h password=pw user=u``, ``password='p w'`` (quoted, ``\\'`` escapes);
* as a JSON field (``"password": "pw"``), an ``Authorization`` value (``Bearer …``), or an
  environment assignment (``PGPASSWORD=pw``, ``AWS_SECRET_ACCESS_KEY=…``).

:func:`redact` replaces each such value with :data:`MASK` and keeps the rest (host, port, user,
database), which is what makes an error useful. The patterns are the first layer; the second is
exact: the operator's own secrets (its configured passwords and keys, :func:`remember`) are
replaced wherever they appear, in whatever form the text carries them.

:func:`location` is a connection string reduced to where it points (``host:port/db``), for the
messages that name a service; :class:`RedactingFilter` applies :func:`redact` to the operator's
log records (and so to the Events Kopf posts from them).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

# Names whose value is a secret, matched where they end (so also sslpassword, PGPASSWORD,
# db_password…): password, passwd, pwd, secret… (AWS_SECRET_ACCESS_KEY, client_secret), token,
# api key, and the parts of a presigned S3 URL that grant access. Every repetition is bounded, and
# each pattern starts at a fixed word: no position of a long text costs more than a few steps
# (a log line may hold a whole spec).
_SECRET_NAME = (r"(?:password|passwd|pwd|secret[A-Za-z0-9_-]{0,64}|token|api[_-]?key"
                r"|x-amz-signature|x-amz-credential|x-amz-security-token)")

# scheme://user:password@host — the password may hold an unencoded '@' (the last one ends it).
_USERINFO = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/?#@'\"]{0,256}:)"
    r"(?P<secret>[^\s/?#'\"]{0,1024})@")
# name=value (a URL query, a keyword DSN, an environment assignment); the value bare or quoted.
_ASSIGNMENT = re.compile(
    rf"(?P<head>{_SECRET_NAME}[ \t]{{0,8}}=[ \t]{{0,8}})"
    r"(?P<secret>'(?:[^'\\]|\\.){0,4096}'?|\"(?:[^\"\\]|\\.){0,4096}\"?|[^\s&;,'\"#)}\]]{1,4096})",
    re.IGNORECASE)
# "name": "value" (JSON, a Python dict's repr), the name ending in one of the words above.
_FIELD = re.compile(
    rf"(?P<head>{_SECRET_NAME}[\"'][ \t]{{0,8}}:[ \t]{{0,8}})"
    r"(?P<secret>\"(?:[^\"\\]|\\.){0,4096}\"|'(?:[^'\\]|\\.){0,4096}')",
    re.IGNORECASE)
# Authorization: Bearer <token> / Basic <base64>.
_AUTHORIZATION = re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})")

_PATTERNS = (_USERINFO, _FIELD, _ASSIGNMENT, _AUTHORIZATION)

# Shorter known secrets are not replaced by value: a password of 3 characters would mangle any
# text that happens to contain them (the patterns above still hide it where it is assigned).
MIN_KNOWN_LENGTH = 4

_known: set[str] = set()
_known_lock = threading.Lock()
_known_sorted: tuple[str, ...] = ()


def _masked(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if not secret:
        return match.group(0)
    quote_char = secret[0] if secret[0] in "'\"" else ""
    return f"{match.group('head')}{quote_char}{MASK}{quote_char}" + ("@" if match.re is _USERINFO else "")


def redact(text: str) -> str:
    """``text`` with every password, token and known secret replaced by :data:`MASK`."""
    if not text:
        return text
    for secret in _known_sorted:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_masked, text)
    return text


# The free-text fields of a run's status (messages of the run, its conditions, attempts, shards,
# merge and notifications; a test's failure), the only ones that may quote an error.
TEXT_FIELDS = frozenset({"message", "failure"})


def redact_fields(value: Any, fields: frozenset[str] = TEXT_FIELDS) -> Any:
    """A copy of a JSON value with the strings under ``fields`` (at any depth) redacted; every other
    string (names, keys, test names) is left exactly as it is."""
    if isinstance(value, dict):
        return {k: (redact(v) if k in fields and isinstance(v, str) else redact_fields(v, fields))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_fields(v, fields) for v in value]
    return value


def remember(*secrets: str | None) -> None:
    """The operator's own secrets, replaced wherever they appear (raw, URL-encoded and decoded)."""
    global _known_sorted
    with _known_lock:
        for secret in secrets:
            if not secret or len(secret) < MIN_KNOWN_LENGTH:
                continue
            _known.update(s for s in (secret, quote(secret, safe=""), unquote(secret)) if len(s) >= MIN_KNOWN_LENGTH)
        _known_sorted = tuple(sorted(_known, key=len, reverse=True))


def forget_all() -> None:
    """Drop the remembered secrets (tests)."""
    global _known_sorted
    with _known_lock:
        _known.clear()
        _known_sorted = ()


def connection_secrets(dsn: str | None) -> list[str]:
    """The secret parts of a connection string (URL or keyword DSN): its password(s) and token(s)."""
    if not dsn:
        return []
    found: list[str] = []
    for pattern in (_USERINFO, _FIELD, _ASSIGNMENT):
        for match in pattern.finditer(dsn):
            value = match.group("secret")
            if value[:1] in "'\"":
                value = value[1:-1] if len(value) > 1 and value[-1] == value[0] else value[1:]
                value = re.sub(r"\\(.)", r"\1", value)
            found.append(value)
    return [s for s in found if s]


def remember_connections(dsns: Iterable[str | None]) -> None:
    """Remember the secret parts of the operator's connection strings (Redis, PostgreSQL)."""
    for dsn in dsns:
        remember(*connection_secrets(dsn))


def location(dsn: str | None) -> str:
    """Where a connection string points, with nothing secret: ``host:port/path`` of a URL (no user
    info, query or fragment), ``host:port/dbname`` of a keyword DSN."""
    if not dsn:
        return ""
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            return "<invalid URL>"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}{f':{port}' if port else ''}{parts.path}" or "<no host>"
    words = dict(re.findall(r"([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn))
    clean = {k.lower(): v.strip("'") for k, v in words.items()}
    host = clean.get("host") or clean.get("hostaddr") or "localhost"
    port = clean.get("port")
    db = clean.get("dbname")
    return f"{host}{f':{port}' if port else ''}{f'/{db}' if db else ''}"


class RedactingFilter(logging.Filter):
    """Redacts a log record in place: its message (arguments merged in), its traceback and stack.

    Installed on the root logger's handlers (every line the operator prints) and on Kopf's
    per-object logger (whose warnings Kopf also posts as Events), by :func:`install`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


KOPF_OBJECT_LOGGER = "kopf.objects"


def install(handlers: Iterable[logging.Handler] | None = None) -> RedactingFilter:
    """Redact every record the root logger's handlers write and every record Kopf's per-object
    logger posts as an Event (its handler is attached to that logger, not to the root)."""
    flt = RedactingFilter()
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        handler.addFilter(flt)
    logging.getLogger(KOPF_OBJECT_LOGGER).addFilter(flt)
    return flt
