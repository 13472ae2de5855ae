"""What a run says, as the CLI shows it: pure functions over the run's object (a dict from the API).

``view`` reads the object into a :class:`View`; ``line`` and ``bar`` render it; ``verdict`` says how
it ended; ``exit_code`` is the contract: 0 passed, 1 failed, 2 anything else that ended it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supercheck.models import TERMINAL_PHASES, Phase

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2  # Error, TimedOut, Cancelled, Rejected, the CLI's own timeout, a run that vanished
TERMINAL = {p.value for p in TERMINAL_PHASES}
POSITION = re.compile(r"position (\d+)")
MAX_FAILURES_SHOWN = 10


@dataclass(frozen=True)
class View:
    kind: str
    name: str
    phase: str
    reason: str = ""
    message: str = ""
    position: int | None = None
    attempts: int = 0
    total: int | None = None
    completed: int | None = None
    passed: int | None = None
    failed: int | None = None
    result: str = ""
    retry_after: int | None = None
    timeout_seconds: int | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def key(self) -> tuple[Any, ...]:
        """What makes a new line worth printing: the phase, the queue position, the counts, the reason."""
        return (self.phase, self.reason, self.position, self.attempts, self.completed, self.failed, self.total)


def view(kind: str, body: Mapping[str, Any]) -> View:
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    spec = body.get("spec") or {}
    phase = st.get("phase") or "Pending"
    message = st.get("message") or ""
    position = None
    if phase == Phase.QUEUED.value and (m := POSITION.search(message)):
        position = int(m.group(1))
    counts = st.get("progress") if kind == "JobRun" else None
    summary = st.get("summary")
    total = completed = passed = failed = None
    if counts and counts.get("total"):
        total, completed = counts.get("total"), counts.get("completed", 0)
        passed, failed = counts.get("passed", 0), counts.get("failed", 0)
    elif summary and summary.get("total"):
        total, passed, failed = summary.get("total"), summary.get("passed", 0), summary.get("failed", 0)
        completed = (passed or 0) + (failed or 0) + summary.get("flaky", 0) + summary.get("skipped", 0)
    return View(kind=kind, name=meta.get("name", ""), phase=phase, reason=st.get("reason") or "",
                message=message, position=position, attempts=st.get("attempts") or 0, total=total,
                completed=completed, passed=passed, failed=failed, result=st.get("result") or "",
                retry_after=st.get("retryAfterSeconds"), timeout_seconds=spec.get("timeoutSeconds"))


def clock_text(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def state_text(v: View) -> str:
    """The run's state in a few words: phase, queue position or counts."""
    parts = [v.phase]
    if v.position is not None:
        parts.append(f"position {v.position} in the queue")
    elif v.phase == Phase.QUEUED.value and v.message:
        parts.append(v.message)
    if v.total:
        counts = f"{v.completed}/{v.total} tests"
        if v.failed:
            counts += f", {v.failed} failed"
        parts.append(counts)
    if v.attempts > 1 and not v.terminal:
        parts.append(f"attempt {v.attempts}")
    if v.phase in (Phase.PENDING.value, Phase.UPLOADING.value) and v.reason:
        parts.append(v.reason)
    return ", ".join(parts)


def line(v: View, elapsed: float) -> str:
    """One plain line (a pipe, a CI log): ``[12s] shop-x1 Running, 3/5 tests``."""
    return f"[{clock_text(elapsed)}] {v.name} {state_text(v)}"


def bar(v: View, elapsed: float, width: int = 80) -> str:
    """The terminal's live line: a bar of tests done (a JobRun's progress) or, while there is no count,
    of the time used of the run's timeout; then the state."""
    cells = 24
    if v.total:
        fraction = (v.completed or 0) / v.total
    elif v.timeout_seconds and v.phase in (Phase.RUNNING.value, Phase.UPLOADING.value):
        fraction = min(1.0, elapsed / v.timeout_seconds)
    else:
        fraction = 0.0
    if v.terminal and not v.total:
        fraction = 1.0
    filled = int(round(fraction * cells))
    text = f"[{'#' * filled}{'-' * (cells - filled)}] {clock_text(elapsed):>6} {v.name} {state_text(v)}"
    return text[: max(10, width - 1)]


def exit_code(phase: str | None) -> int:
    if phase == Phase.PASSED.value:
        return EXIT_PASSED
    if phase == Phase.FAILED.value:
        return EXIT_FAILED
    return EXIT_ERROR


def failed_tests(kind: str, body: Mapping[str, Any]) -> list[str]:
    """A JobRun's failed tests (name: first failure); a TestRun names its own in its message."""
    st = body.get("status") or {}
    if kind != "JobRun":
        return []
    out = []
    for t in st.get("tests") or []:
        if t.get("outcome") == "failed":
            failure = (t.get("failure") or "").strip().splitlines()
            out.append(f"{t.get('file') or t.get('name')}: {failure[0]}" if failure else str(t.get("file")))
    return out


def verdict(kind: str, body: Mapping[str, Any], namespace: str, elapsed: float) -> list[str]:
    """What is printed when the run ends: the verdict, why, the failing tests and where the report is."""
    v = view(kind, body)
    st = body.get("status") or {}
    head = f"{v.phase.upper()}: {kind} {v.name}"
    if v.result:
        head += f" ({v.result})"
    head += f" in {st.get('duration') or clock_text(elapsed)}"
    lines = [head]
    if v.phase != Phase.PASSED.value and v.message:
        lines.append(f"  {v.reason}: {v.message}" if v.reason else f"  {v.message}")
    failures = failed_tests(kind, body)
    if failures:
        lines.append("  failed tests:")
        lines += [f"    - {f}" for f in failures[:MAX_FAILURES_SHOWN]]
        if len(failures) > MAX_FAILURES_SHOWN:
            lines.append(f"    ... and {len(failures) - MAX_FAILURES_SHOWN} more")
    art = st.get("artifacts") or {}
    if art.get("report"):
        lines.append(f"  report: s3://{art['bucket']}/{art['report']}")
        lines.append(f"    download it: supercheck report {v.name} -n {namespace}")
    elif art.get("bucket"):
        lines.append(f"  artifacts: s3://{art['bucket']}/{art.get('prefix', '')}/")
    return lines
