"""Webhook notifications when a job ends: which targets fire, the JSON body, and its delivery.

:func:`fires` and :func:`summary_payload` are pure; :func:`deliver` is the adapter (aiohttp). A
delivery never raises: it answers a :class:`Delivery` the caller counts, logs or shows. Webhook URLs
carry secrets (a token in the query, a user and password), so nothing this module writes or
answers shows more of a URL than ``scheme://host[:port]/path`` (:func:`safe_url`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from supercheck.jobrows import FAILED, JobRow, JobTestRow, duration_ms

log = logging.getLogger(__name__)

MAX_FAILED_TESTS = 50  # names in the body's failedTests (counts.failed tells how many failed in all)


def _version() -> str:
    try:
        return metadata.version("supercheck")
    except metadata.PackageNotFoundError:
        return "unknown"


USER_AGENT = f"supercheck/{_version()}"
HEADERS = {"Content-Type": "application/json", "User-Agent": USER_AGENT}


# ---------------------------------------------------------------- pure


def fires(phase: str, on: Collection[str] | None, *, terminal_phases: Collection[str]) -> bool:
    """Whether a target whose ``on`` lists these phases is told of a job that reached ``phase``.

    Only a terminal phase fires; ``on`` empty or absent means every terminal phase. (The caller
    names the terminal phases, so that this stays independent of any one resource's phases.)
    """
    return phase in terminal_phases and (not on or phase in on)


def summary_payload(job: JobRow, tests: Iterable[JobTestRow] = (), *, kind: str = "JobRun") -> dict[str, Any]:
    """The JSON body of the notification: the job, its counts, the first 50 failed tests (in the
    order given), the report's location (null without one), its duration and times."""
    failed = [t.name for t in tests if t.outcome == FAILED][:MAX_FAILED_TESTS]
    report = {"bucket": job.report_bucket, "key": job.report_key} if job.report_bucket and job.report_key else None
    return {
        "kind": kind,
        "namespace": job.namespace,
        "name": job.name,
        "uid": job.uid,
        "phase": job.phase,
        "reason": job.reason,
        "message": job.message,
        "counts": {"total": job.total, "passed": job.passed, "failed": job.failed, "flaky": job.flaky,
                   "skipped": job.skipped, "notRun": job.not_run},
        "failedTests": failed,
        "report": report,
        "durationMs": duration_ms(job),
        "startedAt": job.started_at,
        "completedAt": job.completed_at,
    }


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path``: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` an error text must not show, raw and decoded, longest first."""
    try:
        parts = urlsplit(url)
        found = [url, parts.netloc if "@" in parts.netloc else "", parts.query, parts.fragment,
                 parts.username or "", parts.password or ""]
    except ValueError:
        found = [url]
    found += [unquote(s) for s in found] + [unquote(s.replace("+", " ")) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "…")
    return text


# ---------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class Delivery:
    """How a notification went: ``ok`` when a try got a 2xx answer; ``status`` the last HTTP status
    (None: no answer); ``tries`` the POSTs made; ``error`` why not (None when ok), URL made safe."""

    ok: bool
    status: int | None
    tries: int
    error: str | None = None


async def deliver(url: str, payload: dict[str, Any], *, tries: int = 3, backoff_seconds: float = 1.0,
                  timeout_seconds: float = 10.0, session: aiohttp.ClientSession | None = None) -> Delivery:
    """POST ``payload`` as JSON to ``url``; never raises (a task cancelled is still cancelled).

    Tried at most ``tries`` times: again after a connection error, a timeout (``timeout_seconds``
    per try), a 5xx or a 429, waiting ``backoff_seconds``, then twice as long each time; not after
    another 4xx, a redirect (not followed: a POST must not turn into a GET elsewhere), an invalid
    URL or an answer that is not HTTP. ``session``: the caller's (kept open), else one of its own for this delivery.
    """
    where, secrets = safe_url(url), _secrets(url)
    tries = max(1, tries)
    try:
        body = json.dumps(payload, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        return Delivery(False, None, 0, f"POST {where}: the payload is not JSON: {_scrub(str(exc), secrets)}")
    own = session is None
    try:
        client = session if session is not None else aiohttp.ClientSession()
        try:
            result = await _tries(client, url, body, where, secrets, tries, backoff_seconds, timeout_seconds)
        finally:
            if own:
                await client.close()
    except Exception as exc:  # noqa: BLE001 - a notification never breaks its caller; the error is the answer
        result = Delivery(False, None, 0, f"POST {where}: {type(exc).__name__}: {_scrub(str(exc), secrets)}")
    if result.ok:
        log.info("notified %s (HTTP %s, %d %s)", where, result.status, result.tries,
                 "try" if result.tries == 1 else "tries")
    else:
        log.warning("notification not delivered after %d %s: %s", result.tries,
                    "try" if result.tries == 1 else "tries", result.error)
    return result


async def _tries(client: aiohttp.ClientSession, url: str, body: bytes, where: str, secrets: list[str], tries: int,
                 backoff_seconds: float, timeout_seconds: float) -> Delivery:
    status: int | None = None
    error: str | None = None
    for n in range(1, tries + 1):
        if n > 1:
            await asyncio.sleep(backoff_seconds * 2 ** (n - 2))
        again, status, error = await _post(client, url, body, where, secrets, timeout_seconds)
        if error is None:
            return Delivery(True, status, n)
        if not again:
            return Delivery(False, status, n, error)
        log.info("notification to %s: try %d of %d failed: %s", where, n, tries, error)
    return Delivery(False, status, tries, error)


async def _post(client: aiohttp.ClientSession, url: str, body: bytes, where: str, secrets: list[str],
                timeout_seconds: float) -> tuple[bool, int | None, str | None]:
    """One POST: (worth another try, HTTP status, error or None when delivered)."""
    try:
        async with client.post(url, data=body, headers=HEADERS, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as resp:
            status = resp.status
            if 200 <= status < 300:
                return False, status, None
            again = status == 429 or status >= 500
            reason = _scrub(f" {resp.reason}", secrets) if resp.reason else ""
            what = " (redirects are not followed)" if 300 <= status < 400 else ""
            return again, status, f"POST {where}: HTTP {status}{reason}{what}"
    except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
        return True, None, f"POST {where}: no answer within {timeout_seconds:g} s"
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
        return False, None, f"POST {where}: invalid URL (an http or https URL with a host is needed)"
    except aiohttp.ClientConnectorError as exc:
        return True, None, f"POST {where}: cannot connect: {_scrub(str(exc.os_error), secrets)}"
    except (aiohttp.ClientConnectionError, OSError) as exc:  # the connection broke: disconnected, reset...
        return True, None, f"POST {where}: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
    except aiohttp.ClientError as exc:  # an answer that is not HTTP, and the like: it would say the same again
        return False, None, f"POST {where}: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
