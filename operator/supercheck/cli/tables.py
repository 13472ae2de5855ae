"""``supercheck get``: TestRuns and JobRuns in one table, as ``kubectl get`` prints its columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from supercheck.clock import human_duration, parse_iso

HEADERS = ("NAME", "KIND", "TYPE", "PHASE", "RESULT", "DURATION", "AGE")
HEADERS_ALL = ("NAMESPACE", *HEADERS)


def age(created: str | None, now: datetime) -> str:
    when = parse_iso(created) if created else None
    return human_duration((now - when).total_seconds()) if when else ""


def row(kind: str, body: Mapping[str, Any], now: datetime, with_namespace: bool) -> tuple[str, ...]:
    meta, spec, st = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    result = st.get("result") or ""
    if kind == "JobRun" and not result and st.get("progressText"):
        result = st["progressText"]
    cells = (meta.get("name", ""), kind, spec.get("type", ""), st.get("phase") or "", result,
             st.get("duration") or "", age(meta.get("creationTimestamp"), now))
    return (meta.get("namespace", ""), *cells) if with_namespace else cells


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
    return "\n".join(lines)


def runs_table(runs: Sequence[tuple[str, Mapping[str, Any]]], with_namespace: bool,
               now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    ordered = sorted(runs, key=lambda kb: (kb[1].get("metadata", {}).get("namespace", ""),
                                           kb[1].get("metadata", {}).get("creationTimestamp", ""),
                                           kb[1].get("metadata", {}).get("name", "")))
    return table([row(k, b, now, with_namespace) for k, b in ordered], HEADERS_ALL if with_namespace else HEADERS)
