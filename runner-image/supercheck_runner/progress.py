"""What Playwright was doing when it was stopped: read from the progress reporter's events.

``runner-image/progress-reporter.mjs`` appends one JSON line per event as it happens (run
began with N tests, test began, test ended with its status, run ended), so the file is there
even when Playwright is killed before its JSON report is written. From it:

* the tests still running when the run's deadline stopped Playwright (began and never ended,
  or ended ``interrupted``), named in the result's message;
* the counts of what finished, when there is no JSON report to count from;
* in a job's shard, each test file that has ended (:class:`FileTracker`, fed line by line by
  :class:`Follower` while Playwright runs), announced as a ``test-ended`` line.

:func:`parse` and :class:`FileTracker` are pure (lines in, facts out) and tolerate a last line cut
short by a kill.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supercheck_contract import TestEnded, TestOutcome, TestSummary
from supercheck_runner.outcome import error_summary

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


# --- a job's shard: test files as they end ------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    """The final result of one test case of a file."""

    title: str
    line: int
    outcome: str  # expected, unexpected, flaky, skipped
    status: str  # of the final attempt: passed, failed, timedOut, skipped, interrupted
    duration_ms: int
    retry: int
    doubtful: bool  # skipped without test.skip()/fixme(): by a failure before it in a serial group, or cut off
    error: str = ""  # the first error of its attempts (a flaky case: of the attempt that failed)


# Playwright's outcome of a test case -> the file's outcome it implies; the worst case decides.
_CASE_OUTCOMES = {"unexpected": TestOutcome.FAILED, "flaky": TestOutcome.FLAKY, "expected": TestOutcome.PASSED,
                  "skipped": TestOutcome.SKIPPED}
_WORST_FIRST = (TestOutcome.FAILED, TestOutcome.FLAKY, TestOutcome.PASSED)


def file_ended(file: str, cases: Sequence[_Case]) -> TestEnded:
    """One test file's line from its cases' final results: failed over flaky over passed, skipped only
    when every case was skipped; the durations of the final attempts summed; the most retries any
    case used; the first failing case (first by its line in the file) with its error in one line."""
    outcomes = [_CASE_OUTCOMES.get(c.outcome, TestOutcome.FAILED) for c in cases]
    outcome = next((o for o in _WORST_FIRST if o in outcomes), TestOutcome.SKIPPED)
    failure = ""
    if outcome in (TestOutcome.FAILED, TestOutcome.FLAKY):
        wanted = "unexpected" if outcome == TestOutcome.FAILED else "flaky"
        first = min((c for c in cases if c.outcome == wanted), key=lambda c: c.line)
        failure = f"{first.title}: {error_summary(first.error) or first.status}"
    return TestEnded(file=file, outcome=outcome, durationMs=sum(c.duration_ms for c in cases),
                     retries=max((c.retry for c in cases), default=0), cases=len(cases), failure=failure)


@dataclass
class FileTracker:
    """Which test files of a shard have ended, from the progress events as they come (:meth:`feed`).

    A file has ended when each of its test cases (their number per file comes with the run's
    ``begin``) has its final result: passed, or failed with no retry left. A file with a case that
    was interrupted (the run's deadline) never ends. A case skipped without test.skip()/fixme() is
    doubtful: a failure before it in a serial group skipped it, or the run was cut off; its file is
    announced at the run's end, and only if the run was not interrupted. ``files``: the shard's
    test files; one that has no test at all ends, skipped with no case, when the run begins."""

    files: Sequence[str] = ()
    expected: dict[str, int] | None = None  # file -> number of test cases, from `begin`
    cases: dict[str, dict[str, _Case]] = field(default_factory=dict)  # file -> test id -> final result
    errors: dict[str, str] = field(default_factory=dict)  # test id -> its first error
    cut: set[str] = field(default_factory=set)  # files with an interrupted case
    ended: dict[str, TestEnded] = field(default_factory=dict)  # announced, in order
    held: set[str] = field(default_factory=set)  # complete but doubtful: waiting for the run's end

    def feed(self, line: str) -> list[TestEnded]:
        """One line of the progress file; the files that ended with it."""
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("event")
        if kind == "begin":
            return self._begin(event)
        if kind == "testEnd":
            return self._test_end(event)
        if kind == "end":
            return self._end(str(event.get("status", "")))
        return []

    def _begin(self, event: dict[str, Any]) -> list[TestEnded]:
        raw = event.get("files")
        self.expected = {str(f): int(n) for f, n in raw.items()} if isinstance(raw, dict) else {}
        if not int(event.get("total") or 0):
            return []  # nothing to run (a file that did not load): the verdict says why
        return [self._announce(TestEnded(file=f, outcome=TestOutcome.SKIPPED))
                for f in self.files if f not in self.expected]

    def _test_end(self, event: dict[str, Any]) -> list[TestEnded]:
        test_id = str(event.get("id", ""))
        file = str(event.get("file", ""))
        error = event.get("error")
        if isinstance(error, str) and error and test_id not in self.errors:
            self.errors[test_id] = error
        if not event.get("final", True) or not file:
            return []
        status = str(event.get("status", ""))
        if status == "interrupted":
            self.cut.add(file)
            return []
        annotations = set(event.get("annotations") or ())
        duration = event.get("duration")
        self.cases.setdefault(file, {})[test_id] = _Case(
            title=str(event.get("title", "")), line=int(event.get("line") or 0),
            outcome=str(event.get("outcome", "")), status=status,
            duration_ms=int(duration) if isinstance(duration, (int, float)) else 0,
            retry=int(event.get("retry") or 0),
            doubtful=status == "skipped" and not SKIP_ANNOTATIONS & annotations,
            error=self.errors.get(test_id, ""))
        if file in self.cut or self.expected is None or len(self.cases[file]) < self.expected.get(file, 1 << 30):
            return []
        if any(c.doubtful for c in self.cases[file].values()):
            self.held.add(file)
            return []
        return [self._announce(self._line(file))]

    def _end(self, status: str) -> list[TestEnded]:
        held, self.held = sorted(self.held), set()
        if status in ("interrupted", "timedout"):
            return []
        return [self._announce(self._line(f)) for f in held if f not in self.cut]

    def _line(self, file: str) -> TestEnded:
        return file_ended(file, list(self.cases[file].values()))

    def _announce(self, ended: TestEnded) -> TestEnded:
        self.ended.pop(ended.file, None)
        self.ended[ended.file] = ended
        return ended


class Follower:
    """Reads the progress file while Playwright writes it, from a thread: every complete line goes to
    ``tracker``, and each file that ends to ``announce`` (at most ``interval`` seconds after the
    reporter wrote it). :meth:`stop` reads what is left."""

    def __init__(self, path: Path, tracker: FileTracker, announce: Callable[[TestEnded], None],
                 interval: float = 0.1):
        self.path = path
        self.tracker = tracker
        self.announce = announce
        self.interval = interval
        self._offset = 0
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-follower", daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._read()
        if self._partial:  # a last line without its newline (a kill)
            line, self._partial = self._partial, b""
            self._lines([line])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return  # not written yet
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._lines(lines)

    def _lines(self, lines: list[bytes]) -> None:
        for raw in lines:
            for ended in self.tracker.feed(raw.decode("utf-8", "replace")):
                self.announce(ended)
