"""The Playwright `use` options a TestRun sets without editing its script (spec.playwright:
baseURL, viewport, locale, timezoneId, extraHTTPHeaders), as the runner config carries them
(``RunnerConfig.playwrightUse``), checked before they go into the generated config.

The operator's schema has validated them already; this keeps the runner from passing anything
else (launchOptions, executablePath...) into the config, whoever wrote the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _url(value: Any) -> str | None:
    ok = isinstance(value, str) and value.startswith(("http://", "https://"))
    return None if ok else "an http(s) URL"


def _viewport(value: Any) -> str | None:
    ok = isinstance(value, dict) and set(value) == {"width", "height"} and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values())
    return None if ok else "{width, height} in pixels"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a string"


def _headers(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return None if ok else "a map of header names to strings"


# The `use` options a TestRun may set (spec.playwright), each with its check (the expected shape, or None).
USE_OPTIONS: dict[str, Callable[[Any], str | None]] = {
    "baseURL": _url,
    "viewport": _viewport,
    "locale": _text,
    "timezoneId": _text,
    "extraHTTPHeaders": _headers,
}


def use_options(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The options the config may carry, and a note for each one left out."""
    kept: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in raw.items():
        check = USE_OPTIONS.get(name)
        expected = check(value) if check else None
        if check is None:
            notes.append(f"use option '{name}' ignored: the runner sets only {', '.join(USE_OPTIONS)}")
        elif expected:
            notes.append(f"use option '{name}' ignored: expected {expected}, got {value!r}")
        else:
            kept[name] = value
    return kept, notes
