"""What Playwright was doing when it was stopped: read from the progress reporter's events.

``runner-image/progress-reporter.mjs`` appends one JSON line per event as it happens (run
began with N tests, test began, test ended with its status, run ended), so the file is there
even when Playwright is killed before its JSON report is written. From it:

* the tests still running when the run's deadline stopped Playwright (began and never ended,
  or ended ``interrupted``), named in the result's message;
* the counts of what finished, when there is no JSON report to count from.

:func:`parse` is pure (lines in, facts out) and tolerates a last line cut short by a kill.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supercheck_contract import TestSummary

PROGRESS_FILE = "playwright-progress.jsonl"

# An explicit test.skip()/test.fixme() leaves one of these annotations; a test cut off does not.
SKIP_ANNOTATIONS = frozenset({"skip", "fixme"})


@dataclass(frozen=True)
class CutOff:
    """A test that was running when the run was stopped."""

    title: str
    location: str = ""
    seconds: float | None = None  # how long it had been running

    def __str__(self) -> str:
        where = f"{self.location}, " if self.location else ""
        ran = f"{where}ran {self.seconds:.1f} s" if self.seconds is not None else where.rstrip(", ")
        return f"'{self.title}'" + (f" ({ran})" if ran else "")


@dataclass
class _Test:
    title: str
    location: str
    began_ms: int
    status: str | None = None  # None while it runs
    outcome: str | None = None  # expected, unexpected, flaky, skipped (Playwright's test.outcome())
    annotations: tuple[str, ...] = ()
    duration_ms: int | None = None

    @classmethod
    def began(cls, event: dict[str, Any]) -> _Test:
        return cls(str(event.get("title", "")), str(event.get("location", "")), int(event.get("time") or 0))


@dataclass
class Progress:
    total: int | None = None  # None: the run never began (Playwright failed before collecting)
    tests: dict[str, _Test] = field(default_factory=dict)  # by test id: its latest attempt
    finished: dict[str, str] = field(default_factory=dict)  # test id -> outcome of its last ended attempt
    ended: bool = False  # Playwright got to onEnd
    last_ms: int = 0  # time of the last event
    stopped_ms: int | None = None  # when Playwright was stopped (epoch ms), if known

    def running(self) -> list[CutOff]:
        """Tests whose latest attempt began and did not end, or ended interrupted, in start order."""
        now = max(self.last_ms, self.stopped_ms or 0)
        cut = []
        for t in sorted(self.tests.values(), key=lambda t: t.began_ms):
            if t.status is None:
                cut.append(CutOff(t.title, t.location, max(0.0, (now - t.began_ms) / 1000)))
            elif t.status == "interrupted" or (t.status == "skipped" and not SKIP_ANNOTATIONS & set(t.annotations)):
                seconds = t.duration_ms / 1000 if t.duration_ms is not None else None
                cut.append(CutOff(t.title, t.location, seconds))
        return cut

    def not_started(self) -> int:
        return max(0, (self.total or 0) - len(self.tests))

    def summary(self) -> TestSummary:
        """Counts as Playwright's JSON report gives them: the outcome of a test's attempts that
        ended (an interrupted attempt does not count); a test with none is skipped."""
        s = TestSummary(total=max(self.total or 0, len(self.tests)))
        for outcome in self.finished.values():
            if outcome == "expected":
                s.passed += 1
            elif outcome == "flaky":
                s.flaky += 1
            elif outcome == "unexpected":
                s.failed += 1
        s.skipped = s.total - s.passed - s.flaky - s.failed
        return s


def parse(lines: Iterable[str]) -> Progress:
    progress = Progress()
    for line in lines:
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            continue  # the last line of a killed run may be cut short
        if not isinstance(event, dict):
            continue
        kind = event.get("event")
        progress.last_ms = max(progress.last_ms, int(event.get("time") or 0))
        test_id = str(event.get("id", ""))
        if kind == "begin":
            progress.total = int(event.get("total") or 0)
        elif kind == "testBegin":
            progress.tests[test_id] = _Test.began(event)
        elif kind == "testEnd":
            test = progress.tests.setdefault(test_id, _Test.began(event))
            test.status = str(event.get("status", ""))
            test.outcome = str(event.get("outcome", ""))
            test.annotations = tuple(str(a) for a in event.get("annotations") or ())
            duration = event.get("duration")
            test.duration_ms = int(duration) if isinstance(duration, (int, float)) else None
            if test.status != "interrupted":
                progress.finished[test_id] = test.outcome
        elif kind == "end":
            progress.ended = True
    return progress


def load(path: Path, stopped_ms: int | None = None) -> Progress | None:
    """The progress file, or None when Playwright never wrote one. ``stopped_ms``: when Playwright
    ended (epoch ms), so a test that never ended is said to have run until then."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            progress = parse(f)
    except OSError:
        return None
    progress.stopped_ms = stopped_ms
    return progress
