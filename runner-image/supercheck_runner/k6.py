"""k6: the command line, and the verdict from its summary export and exit code.

Artifacts written under the out directory::

    k6-summary.json        --summary-export, with the trend stats avg, min, med, max, p(90), p(95), p(99)
    k6-metrics.json.gz     --out json=..., every sample (gzip: a load test writes a lot of them)
    report/index.html      the web dashboard's HTML export (k6 skips it for runs too short to chart)
    console.log

The verdict: thresholds and checks decide. k6 exits 99 when a threshold is crossed; that is
the test failing (``Failed``), not the run breaking (``Error``). A failed check does not
change k6's exit code, but a check is an assertion, so any failed check fails the run too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from supercheck_contract import FailureClass, K6Summary
from supercheck_contract.reserved import refused_k6_args_message
from supercheck_runner import k6_output
from supercheck_runner.outcome import EngineOutcome

SUMMARY_JSON = "k6-summary.json"
METRICS_JSON = "k6-metrics.json.gz"
REPORT_INDEX = "report/index.html"
CONSOLE_LOG = "console.log"
TREND_STATS = "avg,min,med,max,p(90),p(95),p(99)"

# k6's documented exit codes (go.k6.io/k6/errext/exitcodes); 97 and 98 are k6 Cloud's.
THRESHOLDS_FAILED = 99
SETUP_TIMEOUT = 100
TEARDOWN_TIMEOUT = 101
GENERIC_TIMEOUT = 102
STOPPED_FROM_REST_API = 103
INVALID_CONFIG = 104
EXTERNAL_ABORT = 105
CANNOT_START_REST_API = 106
SCRIPT_EXCEPTION = 107
SCRIPT_ABORTED = 108
GO_PANIC = 109
MARKED_AS_FAILED = 110
GENERIC_ERROR = 255  # any other error, e.g. a command-line flag k6 does not know

# What a k6 exit code means for the run. The script ran and the system under test (or the
# script's own logic) made it fail: test_failure. k6 refused the options: validation.
EXIT_MEANINGS: dict[int, tuple[FailureClass, str]] = {
    SETUP_TIMEOUT: (FailureClass.TEST_FAILURE, "setup() ran past its time limit"),
    TEARDOWN_TIMEOUT: (FailureClass.TEST_FAILURE, "teardown() ran past its time limit"),
    GENERIC_TIMEOUT: (FailureClass.INFRASTRUCTURE, "k6 timed out"),
    STOPPED_FROM_REST_API: (FailureClass.INFRASTRUCTURE, "k6 was stopped through its REST API"),
    INVALID_CONFIG: (FailureClass.VALIDATION, "k6 refused the test's options"),
    EXTERNAL_ABORT: (FailureClass.INFRASTRUCTURE, "k6 was stopped by a signal from outside the runner"),
    CANNOT_START_REST_API: (FailureClass.INFRASTRUCTURE, "k6 could not start its REST API"),
    SCRIPT_EXCEPTION: (FailureClass.TEST_FAILURE, "the script threw an exception"),
    SCRIPT_ABORTED: (FailureClass.TEST_FAILURE, "the script aborted the test"),
    GO_PANIC: (FailureClass.INFRASTRUCTURE, "k6 crashed (a Go panic)"),
    MARKED_AS_FAILED: (FailureClass.TEST_FAILURE, "the script marked the test as failed"),
}
TEST_FAILURE_CODES = {THRESHOLDS_FAILED} | {c for c, (cls, _) in EXIT_MEANINGS.items()
                                            if cls == FailureClass.TEST_FAILURE}
FIXES = {INVALID_CONFIG: "fix the script's options or the run's k6Args"}
FLAG_ERROR = re.compile(r"^(unknown (shorthand )?flag|invalid argument .* flag|flag needs an argument|bad flag syntax)")


def refused_args(user_args: Sequence[str]) -> str | None:
    """Why the run's k6Args may not be passed (the first one that would override an output of
    :func:`command`, open k6's REST API or write outside the output folder), or None."""
    return refused_k6_args_message(user_args)


def command(k6: str, script: Path, out: Path, user_args: Sequence[str]) -> list[str]:
    """``k6 run`` with our outputs; the run's own arguments (k6Args) come before the script so
    they can override options (``--vus``, ``--duration``) as on any k6 command line. An argument
    that would override our outputs is refused first (:func:`refused_args`): raises ValueError."""
    refused = refused_args(user_args)
    if refused:
        raise ValueError(refused)
    return [
        k6, "run",
        "--no-color",
        "--address", "",  # no REST API server: nothing listens, and parallel runs don't collide on :6565
        "--summary-trend-stats", TREND_STATS,
        "--summary-export", str(out / SUMMARY_JSON),
        "--out", f"json={out / METRICS_JSON}",
        *user_args,
        str(script),
    ]


def dashboard_env(out: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The web dashboard, exported to a file at the end; port -1: no HTTP server.

    The aggregation period defaults to 2 s (k6's own 10 s leaves short runs without a chart);
    a K6_WEB_DASHBOARD_PERIOD in the pod's environment wins."""
    return {
        "K6_WEB_DASHBOARD": "true",
        "K6_WEB_DASHBOARD_EXPORT": str(out / REPORT_INDEX),
        "K6_WEB_DASHBOARD_PORT": "-1",
        "K6_WEB_DASHBOARD_PERIOD": environ.get("K6_WEB_DASHBOARD_PERIOD", "2s"),
    }


def summarize(export: Mapping[str, Any]) -> tuple[K6Summary, list[str], list[str]]:
    """From the summary export: the K6Summary, the crossed thresholds and the failed checks.

    In the export, a threshold's value is true when it was *crossed*."""
    metrics = export.get("metrics", {})
    crossed = [
        f"{name}: {expr}"
        for name, metric in sorted(metrics.items())
        for expr, failed in (metric.get("thresholds") or {}).items()
        if failed
    ]
    checks = metrics.get("checks") or {}
    duration = metrics.get("http_req_duration") or {}
    p95 = duration.get("p(95)")
    failed_checks = [
        f"{c.get('name')} ({c.get('fails')} of {c.get('passes', 0) + c.get('fails', 0)} failed)"
        for c in _all_checks(export.get("root_group") or {})
        if c.get("fails")
    ]
    summary = K6Summary(
        thresholdsPassed=not crossed,
        checksPassed=int(checks.get("passes", 0)),
        checksFailed=int(checks.get("fails", 0)),
        iterations=int((metrics.get("iterations") or {}).get("count", 0)),
        httpReqDurationP95Ms=round(float(p95), 3) if p95 is not None else None,
    )
    return summary, crossed, failed_checks


def _all_checks(group: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from (group.get("checks") or {}).values()
    for sub in (group.get("groups") or {}).values():
        yield from _all_checks(sub)


def classify(export: Mapping[str, Any] | None, *, exit_code: int | None, timed_out: bool,
             console_tail: str = "", work: str | None = None) -> EngineOutcome:
    """The verdict, then any handleSummary trouble as a note (the reports it wrote are not the verdict)."""
    outcome = _verdict(export, exit_code=exit_code, timed_out=timed_out, console_tail=console_tail, work=work)
    problems = k6_output.summary_problems(console_tail, work)
    if problems:
        outcome.message += f"; handleSummary: {problems[0]}"
    return outcome


def _verdict(export: Mapping[str, Any] | None, *, exit_code: int | None, timed_out: bool,
             console_tail: str, work: str | None) -> EngineOutcome:
    summary = crossed = failed_checks = None
    if export is not None:
        summary, crossed, failed_checks = summarize(export)

    def said() -> str:
        return k6_output.first_sentence(console_tail, work) or "k6 said nothing about it"

    if timed_out:
        return EngineOutcome(FailureClass.TIMEOUT, "timed out: k6 was stopped at the deadline" +
                             (" (partial summary kept)" if summary else ""), k6=summary)
    if exit_code not in (0, None, THRESHOLDS_FAILED):
        fetch = k6_output.module_fetch_failure(console_tail)
        if fetch is not None:  # at start-up: validation fetched it, the run could not
            failure = FailureClass.NETWORK if fetch.network else FailureClass.VALIDATION
            return EngineOutcome(failure, k6_output.fetch_message(fetch), k6=summary)
    if exit_code == THRESHOLDS_FAILED or crossed:
        detail = ", ".join(crossed or []) or said()
        return EngineOutcome(FailureClass.TEST_FAILURE, f"thresholds crossed: {detail}", k6=summary)
    if exit_code is not None and exit_code in EXIT_MEANINGS:
        failure, meaning = EXIT_MEANINGS[exit_code]
        fix = f"; {FIXES[exit_code]}" if exit_code in FIXES else ""
        return EngineOutcome(failure, f"{meaning} (k6 exit code {exit_code}): {said()}{fix}", k6=summary)
    if exit_code == GENERIC_ERROR and FLAG_ERROR.match(said()):
        return EngineOutcome(FailureClass.VALIDATION, f"k6 refused the run's arguments (k6Args): {said()}", k6=summary)
    if exit_code is None:
        return EngineOutcome(FailureClass.INFRASTRUCTURE, f"k6 could not be started: {said()}", k6=summary)
    if exit_code != 0:
        return EngineOutcome(FailureClass.INFRASTRUCTURE, f"k6 failed (exit code {exit_code}): {said()}", k6=summary)
    if summary is None:
        return EngineOutcome(FailureClass.INFRASTRUCTURE, "k6 ended without writing its summary")
    if summary.checksFailed:
        shown = ", ".join(failed_checks[:3]) if failed_checks else f"{summary.checksFailed} failed"
        return EngineOutcome(FailureClass.TEST_FAILURE, f"checks failed: {shown}", k6=summary)
    p95_ms = summary.httpReqDurationP95Ms
    p95 = f", http_req_duration p(95) {p95_ms} ms" if p95_ms is not None else ""
    return EngineOutcome(
        FailureClass.NONE,
        f"thresholds passed; {summary.checksPassed} checks passed; {summary.iterations} iterations{p95}",
        k6=summary,
    )


def load_summary(path: Path) -> Mapping[str, Any] | None:
    try:
        export: Mapping[str, Any] = json.loads(path.read_text())
        return export
    except (OSError, ValueError):
        return None
