"""Playwright: the generated config, the run, and reading the verdict back from the JSON report.

Layout of the work directory (``SUPERCHECK_WORK_DIR``, an emptyDir)::

    node_modules -> $SUPERCHECK_NODE_MODULES   so the spec's `import ... from '@playwright/test'`
                                               resolves to the image's pinned copy (ESM ignores NODE_PATH)
    tests/test.spec.ts                         the script, copied from its read-only mount
    playwright.config.mjs                      generated from the run's settings
    out/                                       everything under it is uploaded as the artifacts
        playwright-results.json  junit.xml  report/ (HTML)  test-results/ (traces, screenshots, videos)
        console.log

The pure parts, :func:`build_config`, :func:`summarize` and :func:`classify`, take and return
plain data and are unit-tested; the run itself is :func:`supercheck_runner.__main__.run_playwright`.
The report is JSON, read as plain mappings (``Mapping[str, Any]``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supercheck_contract import FailureClass, TestSummary
from supercheck_runner.outcome import EngineOutcome, error_summary, first_line, strip_ansi
from supercheck_runner.progress import CutOff, Progress
from supercheck_runner.project import Placed, copy_into
from supercheck_runner.use_options import USE_OPTIONS

RESULTS_JSON = "playwright-results.json"
JUNIT_XML = "junit.xml"
REPORT_DIR = "report"
REPORT_INDEX = f"{REPORT_DIR}/index.html"
BLOB_DIR = "blob"  # a job's shard: Playwright's blob report, merged with the other shards' (merge mode)
TEST_RESULTS_DIR = "test-results"
CONSOLE_LOG = "console.log"

VIDEO_MODES = {"off", "on", "retain-on-failure", "on-first-retry"}
TRACE_MODES = {"off", "on", "retain-on-failure", "on-first-retry", "on-all-retries", "retain-on-first-failure"}

# Flags that keep Chromium off the network at start (no update checks, no sync, no field
# trials) and working in a container (/dev/shm is 64 MiB in a pod by default).
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
)

# Errors that mean the browser or the page died under the test, not that the test was wrong.
CRASH_PATTERNS = (
    re.compile(r"\bPage crashed\b", re.I),
    re.compile(r"\bTarget crashed\b", re.I),
    re.compile(r"\bBrowser (?:has been )?closed\b", re.I),
    re.compile(r"Target page, context or browser has been closed", re.I),
    re.compile(r"\bbrowser has disconnected\b", re.I),
    re.compile(r"browserType\.launch: (?!Executable doesn't exist)", re.I),
)
# The browser binary is missing: the image is broken, which no retry of the test will fix soon.
MISSING_BROWSER = re.compile(r"Executable doesn't exist", re.I)
# A `use` option Chromium refuses when it creates the context: every test fails the same way.
INVALID_TIMEZONE = re.compile(r"Invalid timezone ID: (\S+)")
GLOBAL_TIMEOUT = re.compile(r"Timed out waiting .* for the (?:test suite|entire test run) to run", re.I)


@dataclass(frozen=True)
class PlaywrightOptions:
    out_dir: str
    test_dir: str
    retries: int = 1
    trace: str = "retain-on-failure"
    headless: bool = True
    workers: int = 2
    test_timeout_ms: int = 30_000  # each test's; the run's deadline is the runner's (SIGINT, see __main__)
    video: bool = True  # an ffmpeg exists: videos can be recorded at all
    video_mode: str = "retain-on-failure"  # Playwright's `video` when they can
    chromium_path: str | None = None  # None: bundled if present, else fallback_chromium
    fallback_chromium: str = "/usr/bin/chromium"
    no_sandbox: bool = False
    use: Mapping[str, Any] = field(default_factory=dict)  # the run's `use` options (use_options.use_options)
    progress_reporter: str | None = None  # runner-image/progress-reporter.mjs
    progress_file: str | None = None
    test_match: str | None = None  # the script's path under test_dir; None: Playwright's default (every test file)
    # A job's shard: exactly these files (paths under test_dir) run, matched by their full paths
    # (render_config_module), and a blob report named blob_name is written under out_dir/blob/.
    test_files: tuple[str, ...] = ()
    blob_name: str | None = None


def build_config(o: PlaywrightOptions) -> dict[str, Any]:
    """The Playwright config as plain data (it becomes ``export default`` in the config module).

    No ``globalTimeout``: at the run's deadline the runner interrupts Playwright (SIGINT), which
    ends the running tests as ``interrupted`` with their traces and screenshots saved. Playwright's
    own global timeout reports them as skipped, without attachments, and leaves their trace
    chunks behind."""
    trace = o.trace if o.trace in TRACE_MODES else "retain-on-failure"
    out = o.out_dir.rstrip("/")
    args = list(CHROMIUM_ARGS) + (["--no-sandbox"] if o.no_sandbox else [])
    reporters: list[list[Any]] = [
        ["list"],
        ["json", {"outputFile": f"{out}/{RESULTS_JSON}"}],
        ["junit", {"outputFile": f"{out}/{JUNIT_XML}"}],
        ["html", {"outputFolder": f"{out}/{REPORT_DIR}", "open": "never"}],
    ]
    if o.blob_name:
        reporters.append(["blob", {"outputDir": f"{out}/{BLOB_DIR}", "fileName": o.blob_name}])
    if o.progress_reporter and o.progress_file:
        reporters.append([o.progress_reporter, {"outputFile": o.progress_file}])
    return {
        "testDir": o.test_dir,
        "outputDir": f"{out}/{TEST_RESULTS_DIR}",
        "retries": max(0, o.retries),
        "workers": max(1, o.workers),
        "timeout": max(1000, o.test_timeout_ms),
        "reportSlowTests": None,
        "reporter": reporters,
        **({"testMatch": o.test_match} if o.test_match and not o.test_files else {}),
        "projects": [{"name": "chromium", "use": {"browserName": "chromium"}}],
        "use": {
            **{k: v for k, v in o.use.items() if k in USE_OPTIONS},
            "headless": o.headless,
            "trace": trace,
            "screenshot": "only-on-failure",
            "video": (o.video_mode if o.video_mode in VIDEO_MODES else "retain-on-failure") if o.video else "off",
            "launchOptions": {"args": args},
        },
    }


GATE_WAIT_SECONDS = 300  # the config gives up waiting for the gate: a runner gone, not a slow validation


def render_config_module(config: Mapping[str, Any], chromium_path: str | None, fallback_chromium: str,
                         test_files: Sequence[str] = (), gate: str | None = None,
                         headless_shell: str | None = None) -> str:
    """The config module. The only logic in it is choosing Chromium, which needs Playwright's own
    registry: the pinned browser; else, for a headless run, ``headless_shell`` when it exists (the
    old headless mode's own binary, which Playwright itself uses for headless runs: about 150 MiB
    less than the whole browser for one test, and faster to start); else the bundled browser when
    the image has it, else the system one; and, for a job's
    shard, ``testMatch`` as regular expressions of the ``test_files``' full paths under testDir
    (a string pattern is a glob Playwright prefixes with ``**/``, so ``a.spec.ts`` would also
    run ``lib/a.spec.ts``, and ``[`` or ``*`` in a name would be patterns).

    With a ``gate`` (a file's path), the module waits for that file to exist before it gives
    Playwright its config: Playwright starts (node, its own modules, @playwright/test: 0.3 s and
    more) while the runner validates the scripts, and loads none of them before the runner has
    created the gate, once they passed. When they do not, the runner kills Playwright, still waiting."""
    match = ("" if not test_files else
             f"const testFiles = {json.dumps(list(test_files))};\n"
             "const escape = (text) => text.replace(/[.*+?^${}()|[\\]\\\\]/g, '\\\\$&');\n"
             "config.testMatch = testFiles.map((file) => new RegExp('^' + escape(path.resolve(config.testDir, file)) "
             "+ '$'));\n")
    return (
        "// Generated by supercheck-runner for one run (runner-image/supercheck_runner/playwright.py).\n"
        "import fs from 'node:fs';\n"
        "import path from 'node:path';\n"
        "import { chromium } from '@playwright/test';\n\n"
        f"const config = {json.dumps(config, indent=2)};\n"
        f"const pinned = {json.dumps(chromium_path)};\n"
        f"const fallback = {json.dumps(fallback_chromium)};\n"
        f"const headlessShell = {json.dumps(headless_shell)};\n"
        + match + "\n"
        "function executablePath() {\n"
        "  if (pinned) return pinned;\n"
        "  if (headlessShell && fs.existsSync(headlessShell)) return headlessShell;\n"
        "  try {\n"
        "    const bundled = chromium.executablePath();\n"
        "    if (bundled && fs.existsSync(bundled)) return bundled;\n"
        "  } catch {}\n"
        "  return fallback;\n"
        "}\n\n"
        "config.use.launchOptions.executablePath = executablePath();\n"
        + ("" if gate is None else
           f"const gate = {json.dumps(gate)};\n"
           f"const giveUpAt = Date.now() + {GATE_WAIT_SECONDS * 1000};\n"
           "while (!fs.existsSync(gate)) {\n"
           "  if (Date.now() > giveUpAt) throw new Error('supercheck-runner did not open the gate');\n"
           "  await new Promise((resolve) => setTimeout(resolve, 5));\n"
           "}\n")
        + "export default config;\n"
    )


# --- reading the JSON report --------------------------------------------------------------


@dataclass
class Failure:
    title: str
    error: str
    status: str  # the last attempt's status: failed, timedOut, interrupted...


@dataclass
class ReportFacts:
    summary: TestSummary
    failures: list[Failure] = field(default_factory=list)  # final outcome "unexpected"
    errors: list[str] = field(default_factory=list)  # errors outside any test (load errors, global timeout)
    cut_off: list[CutOff] = field(default_factory=list)  # running when the run was stopped
    not_started: int = 0  # never began before the run was stopped


def _walk_specs(suites: Iterable[Mapping[str, Any]],
                parents: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    for suite in suites:
        # The file's suite title is the file name; describe() titles follow it.
        title: str | None = suite.get("title")
        titles = (*parents, title) if title else parents
        for spec in suite.get("specs", []):
            yield titles, spec
        yield from _walk_specs(suite.get("suites", []), titles)


def summarize(report: Mapping[str, Any]) -> ReportFacts:
    """Counts from the JSON report: one entry per test (per project), its final status decides.

    Playwright's status words: ``expected`` (passed, or failed as test.fail() said), ``unexpected``,
    ``flaky`` (failed, then passed on a retry), ``skipped`` (also: did not run before a global timeout).
    """
    s = TestSummary()
    failures: list[Failure] = []
    cut_off: list[CutOff] = []
    not_started = 0
    for titles, spec in _walk_specs(report.get("suites", [])):
        for test in spec.get("tests", []):
            s.total += 1
            status = test.get("status")
            results = test.get("results", [])
            last = results[-1] if results else {}
            title = " › ".join([*titles[1:], spec.get("title", "")])
            if last.get("status") == "interrupted" or (status == "skipped" and not _explicitly_skipped(test)):
                if results:
                    duration = last.get("duration")
                    where = f"{spec['file']}:{spec.get('line', '')}".rstrip(":") if spec.get("file") else ""
                    cut_off.append(CutOff(title, where,
                                          duration / 1000 if isinstance(duration, (int, float)) else None))
                else:
                    not_started += 1
            if status == "expected":
                s.passed += 1
            elif status == "flaky":
                s.flaky += 1
            elif status == "skipped":
                s.skipped += 1
            else:
                s.failed += 1
                error = (last.get("error") or {}).get("message") or ""
                if not error and last.get("errors"):
                    error = last["errors"][0].get("message", "")
                failures.append(Failure(title=title, error=strip_ansi(error), status=last.get("status", "")))
    errors = [strip_ansi(e.get("message", "")) for e in report.get("errors", [])]
    return ReportFacts(summary=s, failures=failures, errors=errors, cut_off=cut_off, not_started=not_started)


def _explicitly_skipped(test: Mapping[str, Any]) -> bool:
    """test.skip()/fixme() leave an annotation or a 'skipped' result; tests cut off by a global
    timeout have a skipped status and no result, or an interrupted one."""
    if any(a.get("type") in ("skip", "fixme") for a in test.get("annotations", [])):
        return True
    results = test.get("results", [])
    return (bool(results) and all(r.get("status") == "skipped" for r in results)
            and test.get("expectedStatus") == "skipped")


def is_crash(error: str) -> bool:
    return any(p.search(error) for p in CRASH_PATTERNS)


def counts_text(s: TestSummary) -> str:
    return f"{s.passed} passed, {s.failed} failed, {s.flaky} flaky, {s.skipped} skipped of {s.total}"


def timeout_message(counts: str, cut_off: Sequence[CutOff], not_started: int, *, shown: int = 5) -> str:
    """Which tests ran out of time: those running when the run was stopped, by name."""
    text = f"timed out: {counts}"
    if cut_off:
        names = ", ".join(str(c) for c in cut_off[:shown])
        more = f" and {len(cut_off) - shown} more" if len(cut_off) > shown else ""
        text += f"; still running at the deadline: {names}{more}"
    if not_started:
        text += f"; {not_started} not started"
    return text


def classify(facts: ReportFacts | None, *, exit_code: int | None, timed_out: bool,
             console_tail: str = "", progress: Progress | None = None) -> EngineOutcome:
    """The failure class of a Playwright run, from its report and how the process ended.

    ``progress`` (the progress reporter's events) names the tests still running at a timeout
    and counts what finished when Playwright was killed before writing its report.
    Order matters: a timeout explains everything after it; a crash outranks assertion failures
    (the retry may well pass); a script that does not load is invalid, not failing.
    """
    if facts is None:
        if timed_out and progress is not None and progress.total is not None:
            s = progress.summary()
            message = timeout_message(counts_text(s), progress.running(), progress.not_started())
            return EngineOutcome(FailureClass.TIMEOUT, message.replace(
                "timed out:", "timed out (Playwright was killed before writing its report):", 1), summary=s)
        if timed_out:
            return EngineOutcome(FailureClass.TIMEOUT, "timed out before Playwright wrote its report")
        if MISSING_BROWSER.search(console_tail):
            return EngineOutcome(FailureClass.INFRASTRUCTURE, "Chromium is missing: " + first_line(console_tail))
        return EngineOutcome(
            FailureClass.INFRASTRUCTURE,
            f"Playwright ended (exit code {exit_code}) without a report: {first_line(console_tail[-2000:])}",
        )
    s = facts.summary
    counts = counts_text(s)
    if timed_out or any(GLOBAL_TIMEOUT.search(e) for e in facts.errors):
        cut_off = facts.cut_off or (progress.running() if progress is not None else [])
        return EngineOutcome(FailureClass.TIMEOUT, timeout_message(counts, cut_off, facts.not_started), summary=s)
    crashes = [f for f in facts.failures if is_crash(f.error) and f.status != "timedOut"]
    missing = [f for f in facts.failures if MISSING_BROWSER.search(f.error)]
    if missing:
        return EngineOutcome(FailureClass.INFRASTRUCTURE, "Chromium is missing: " + first_line(missing[0].error),
                             summary=s)
    if crashes:
        return EngineOutcome(
            FailureClass.BROWSER_CRASH,
            f"browser crash in '{crashes[0].title}': {first_line(crashes[0].error)} ({counts})",
            summary=s,
        )
    if s.total == 0:
        detail = first_line(facts.errors[0]) if facts.errors else "no tests found"
        return EngineOutcome(FailureClass.VALIDATION, f"the script defines no runnable test: {detail}", summary=s)
    if facts.errors and s.failed == 0 and s.passed + s.flaky == 0:
        return EngineOutcome(FailureClass.VALIDATION, f"the script failed to load: {first_line(facts.errors[0])}",
                             summary=s)
    timezone = next((m for f in facts.failures if (m := INVALID_TIMEZONE.search(f.error))), None)
    if timezone and s.passed + s.flaky == 0:
        message = (f"spec.playwright.timezoneId: Chromium does not know the time zone '{timezone.group(1)}'; "
                   f"use an IANA name such as Europe/Berlin ({counts})")
        return EngineOutcome(FailureClass.VALIDATION, message, summary=s)
    if s.failed:
        shown = "; ".join(f"'{f.title}': {error_summary(f.error)}" for f in facts.failures[:3])
        more = f"; and {len(facts.failures) - 3} more" if len(facts.failures) > 3 else ""
        return EngineOutcome(FailureClass.TEST_FAILURE, f"{counts}. {shown}{more}", summary=s)
    if facts.errors:
        return EngineOutcome(FailureClass.TEST_FAILURE, f"{counts}; error outside tests: {first_line(facts.errors[0])}",
                             summary=s)
    return EngineOutcome(FailureClass.NONE, counts, summary=s)


# --- the shell ----------------------------------------------------------------------------


def prepare_workdir(work: Path, files: Mapping[str, Path], entry: str | None, node_modules: Path) -> Placed:
    """Copy the script and its files under tests/ at their paths (a script without a code suffix
    gets .ts), link node_modules, make out/. The script runs by its path (``testMatch``), so its
    name need not look like a test file's; a whole suite runs every test file."""
    tests = work / "tests"
    shutil.rmtree(tests, ignore_errors=True)
    tests.mkdir(parents=True, exist_ok=True)
    placed = copy_into(files, entry, tests, ".ts")
    link = work / "node_modules"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(node_modules, target_is_directory=True)
    (work / "out").mkdir(parents=True, exist_ok=True)
    return placed


def ffmpeg_shim(work: Path, node_modules: Path, environ: Mapping[str, str],
                ffmpeg: str | None) -> tuple[dict[str, str], bool]:
    """Videos need Playwright's ffmpeg, installed with its browsers. Where it is absent (a
    checkout whose browsers could not be downloaded) but a system ffmpeg exists, present that
    one to Playwright through a browsers directory of our own (Chromium is passed by path, so
    nothing else is looked up there).

    Returns (environment additions, whether videos can be recorded). Without any ffmpeg, videos
    are turned off rather than failing every test at context creation."""
    try:
        browsers = json.loads((node_modules / "playwright-core" / "browsers.json").read_text())["browsers"]
        revision = next(b["revision"] for b in browsers if b["name"] == "ffmpeg")
    except (OSError, KeyError, StopIteration, ValueError):
        return {}, True
    registry = (environ.get("PLAYWRIGHT_BROWSERS_PATH")
                or str(Path(environ.get("HOME", "/root")) / ".cache/ms-playwright"))
    if registry == "0":
        registry = str(node_modules / "playwright-core" / ".local-browsers")
    if (Path(registry) / f"ffmpeg-{revision}" / "ffmpeg-linux").exists():
        return {}, True
    if not ffmpeg or not Path(ffmpeg).exists():
        return {}, False
    shim = work / "browsers" / f"ffmpeg-{revision}"
    shim.mkdir(parents=True, exist_ok=True)
    target = shim / "ffmpeg-linux"
    if not target.exists():
        target.symlink_to(ffmpeg)
    return {"PLAYWRIGHT_BROWSERS_PATH": str(work / "browsers")}, True


def load_report(path: Path) -> Mapping[str, Any] | None:
    try:
        report: Mapping[str, Any] = json.loads(path.read_text())
        return report
    except (OSError, ValueError):
        return None


def command(node: str, node_modules: Path, config_path: Path) -> list[str]:
    return [node, str(node_modules / "@playwright" / "test" / "cli.js"), "test", "--config", str(config_path)]


def merge_command(node: str, node_modules: Path, config_path: Path, blobs: Path) -> list[str]:
    """``playwright merge-reports``: the blob reports in ``blobs``, the reporters from the config
    (supercheck_runner.job.merge_config)."""
    return [node, str(node_modules / "@playwright" / "test" / "cli.js"), "merge-reports", "--config",
            str(config_path), str(blobs)]


def writable_home(environ: Mapping[str, str], work: Path) -> dict[str, str]:
    """Chromium writes to $HOME (crash pads, caches); a read-only root filesystem has none."""
    home = environ.get("HOME")
    if home and os.access(home, os.W_OK):
        return {}
    path = work / "home"
    path.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(path)}
