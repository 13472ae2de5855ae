"""``supercheck-runner``: one attempt of one TestRun, in its pod.

    config (env) -> S3 preflight -> validate -> run under the deadline -> upload out/ ->
    result.json (last) -> termination message -> exit code

S3 unavailable (refused, timed out, 5xx) does not end the attempt: before the test, the test
runs anyway; while uploading, the runner retries until the upload window ends, printing a
progress line (``phase=Uploading``) the operator shows in the TestRun's status. A
misconfigured S3 (no such bucket, access denied) fails the attempt before the test runs.

This module is the imperative shell: every decision it acts on is made by a pure function
in a sibling module (validation policy, config generation, report parsing, classification,
key layout). What each exit code means: :class:`supercheck_contract.ExitCode`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import NoReturn

from botocore.exceptions import ClientError

from supercheck_contract import (
    LOG_PREFIX,
    RESULT_JSON_NAME,
    STORAGE_BACK,
    STORAGE_UNAVAILABLE,
    UPLOAD_STARTED,
    UPLOADING,
    ArtifactLocation,
    FailureClass,
    Progress,
    RunnerConfig,
    RunnerResult,
    UploadGrant,
    shard_files,
)
from supercheck_runner import (
    artifacts,
    gitsource,
    grant,
    job,
    k6,
    k6_summary,
    playwright,
    progress,
    project,
    tracing,
    validate,
)
from supercheck_runner.outcome import EngineOutcome, build_result, first_line, write_termination_message
from supercheck_runner.process import ProcessOutcome, become_subreaper, reap_orphans, run_supervised
from supercheck_runner.settings import (
    SYSTEM_CHROMIUM,
    SYSTEM_FFMPEG,
    SYSTEM_HEADLESS_SHELL,
    RunnerSettings,
    child_env,
)
from supercheck_runner.storage import where
from supercheck_runner.timer import (
    SMALL_CONNECT_TIMEOUT_SECONDS,
    SMALL_READ_TIMEOUT_SECONDS,
    SMALL_SDK_ATTEMPTS,
    UPLOAD_CONNECT_TIMEOUT_SECONDS,
    UPLOAD_READ_TIMEOUT_SECONDS,
    UPLOAD_SDK_ATTEMPTS,
    Deadline,
    default_margin,
    execution_budget,
    interrupt_grace,
    upload_give_up_at,
)
from supercheck_runner.use_options import use_options

VALIDATION_TIMEOUT_SECONDS = 60.0
GIT_FETCH_TIMEOUT_SECONDS = 300.0


class RunLog:
    """The runner's own lines: to stdout (``kubectl logs``) and into the console log artifact."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        self.line(f"{LOG_PREFIX}{message}")

    def progress(self, phase: str, reason: str, message: str) -> None:
        """A line the operator reads back from the container's log (``supercheck_contract.Progress``)."""
        self.line(Progress(phase=phase, reason=reason, message=message).line())

    def line(self, text: str) -> None:
        line = f"{text}\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            pass


def _tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_playwright(config: RunnerConfig, settings: RunnerSettings, work: Path, out: Path,
                   deadline: Deadline, stop: threading.Event, say: RunLog) -> EngineOutcome:
    suite = project.locate(Path(config.scriptPath), config.scriptName)
    shard = job.is_shard(config)
    if shard:  # a job's shard: the whole suite is mounted, every file of it is validated
        suite = project.Project(suite.root, None)
    files = validate.read_project(suite, settings.max_script_bytes)
    placed = playwright.prepare_workdir(work, files, suite.entry, settings.node_modules_dir)
    selected, total = job.selection(config, files) if shard else ([], 0)
    notes: list[str] = []  # said once validation has passed: a refused script's run says nothing of running

    def validated() -> None:
        validate.validate_playwright(
            work / "tests", placed.files, placed.entry, node=settings.node, validator=settings.validate_script,
            node_modules=settings.node_modules_dir, allowed=settings.allowed_modules,
            timeout=min(VALIDATION_TIMEOUT_SECONDS, max(1.0, deadline.remaining())),
        )
        say(f"validation passed: {placed}")
        tracing.enter("execution")
        if shard:
            say(f"{job.label(config)}: {len(selected)} of the job's {total} test files"
                + (f": {job.named(selected)}" if selected else ""))
        for note in notes:
            say(note)

    if shard and not selected:
        validated()
        return job.empty_shard(config, total)

    video_env, video = playwright.ffmpeg_shim(work, settings.node_modules_dir, os.environ,
                                              settings.ffmpeg_path or SYSTEM_FFMPEG)
    if not video:
        notes.append("no ffmpeg for Playwright: videos are off for this run")
    use, use_notes = use_options(config.playwrightUse)
    notes += use_notes
    progress_file = work / progress.PROGRESS_FILE
    options = playwright.PlaywrightOptions(
        out_dir=str(out),
        test_dir=str(work / "tests"),
        retries=config.playwrightRetries,
        trace=config.playwrightTrace,
        headless=config.playwrightHeadless,
        workers=config.playwrightWorkers,
        test_timeout_ms=config.playwrightTestTimeoutSeconds * 1000,
        video=video,
        video_mode=config.playwrightVideo,
        chromium_path=settings.chromium_path,
        no_sandbox=hasattr(os, "geteuid") and os.geteuid() == 0,  # Chromium's sandbox refuses root
        use=use,
        progress_reporter=str(settings.progress_reporter),
        progress_file=str(progress_file),
        test_match=placed.entry,
        test_files=tuple(selected),
        blob_name=job.blob_name(config) if shard else None,
    )
    if config.playwrightTrace not in playwright.TRACE_MODES:
        notes.append(f"unknown trace mode '{config.playwrightTrace}', using retain-on-failure")
    # Playwright starts while the scripts are validated; its config waits for this file, created
    # once they passed (render_config_module), so no script is loaded before.
    gate = work / ".validated"
    gate.unlink(missing_ok=True)
    config_path = work / "playwright.config.mjs"
    config_path.write_text(playwright.render_config_module(
        playwright.build_config(options), settings.chromium_path, SYSTEM_CHROMIUM, options.test_files, str(gate),
        headless_shell=SYSTEM_HEADLESS_SHELL if options.headless else None))
    env = child_env(os.environ, {
        **video_env,
        **playwright.writable_home(os.environ, work),
        "FORCE_COLOR": "0",
        "PLAYWRIGHT_HTML_OPEN": "never",
    })
    # `grace` before the deadline Playwright is interrupted (SIGINT, as Ctrl-C): the running tests
    # end as interrupted with their traces and the reports are written. At the deadline it is killed.
    grace = interrupt_grace(deadline.remaining())

    def ready() -> None:
        validated()
        say(f"running Playwright: {config.playwrightWorkers} workers, {config.playwrightRetries} retries, "
            f"trace {options.trace}, {config.playwrightTestTimeoutSeconds} s per test, "
            f"interrupted after {max(0.0, deadline.remaining() - grace):.1f} s"
            + (f", use {', '.join(sorted(use))}" if use else ""))
        gate.touch()

    # Each test file of a shard is announced as soon as it has ended: a thread follows the progress file.
    progress_file.unlink(missing_ok=True)
    tracker = progress.FileTracker(selected)
    follower = progress.Follower(progress_file, tracker, lambda ended: say.line(ended.line())) if shard else None
    if follower is not None:
        follower.start()
    try:
        proc = run_supervised(
            playwright.command(settings.node, settings.node_modules_dir, config_path),
            env=env, cwd=work, log_path=out / playwright.CONSOLE_LOG, deadline_at=deadline.at - grace,
            stop_requested=stop, kill_grace_seconds=grace, ready=ready,
        )
    finally:
        if follower is not None:
            follower.stop()
    say(f"Playwright ended: exit code {proc.exit_code}, {proc.duration_seconds:.1f} s, "
        f"peak memory {proc.peak_rss_bytes / 2**20:.0f} MiB" + (f", stopped ({proc.stopped})" if proc.stopped else ""))
    report = playwright.load_report(out / playwright.RESULTS_JSON)
    facts = playwright.summarize(report) if report is not None else None
    outcome = playwright.classify(facts, exit_code=proc.exit_code, timed_out=proc.timed_out,
                                  console_tail=_tail(out / playwright.CONSOLE_LOG),
                                  progress=progress.load(progress_file, stopped_ms=int(time.time() * 1000)))
    if proc.stopped == "signal":
        outcome = _stopped_by_signal(outcome)
    if (out / playwright.REPORT_INDEX).is_file():
        outcome.report = playwright.REPORT_INDEX
    if shard:
        outcome.message = f"{job.label(config)}: {outcome.message}"
        outcome.tests = list(tracker.ended.values())
    return outcome


def run_k6(config: RunnerConfig, settings: RunnerSettings, work: Path, out: Path,
           deadline: Deadline, stop: threading.Event, say: RunLog) -> EngineOutcome:
    refused = k6.refused_args(config.k6Args)
    if refused:  # the CRD refuses these too; a pod made without it (or by hand) still may not
        return EngineOutcome(FailureClass.VALIDATION, refused)
    if job.is_shard(config):
        return run_k6_shard(config, settings, work, out, deadline, stop, say)
    suite = project.locate(Path(config.scriptPath), config.scriptName)
    if suite.entry is None:
        raise validate.ValidationError([validate.Issue(None, None, "k6 runs one script: name it (configMapRef.key)")])
    files = validate.read_project(suite, settings.max_script_bytes)
    # The script and its modules at their paths (k6 resolves relative imports from the script's
    # folder); k6 reads TypeScript too (k6 >= 1.0); a script without a code suffix gets .js.
    suite_dir = work / "tests"
    shutil.rmtree(suite_dir, ignore_errors=True)
    placed = project.copy_into(files, suite.entry, suite_dir, ".js")
    assert placed.entry is not None
    # k6 runs in the suite's folder: its banner and errors name the script as the user did, and
    # handleSummary's relative files land there.
    script = Path(placed.entry)
    env = _k6_env(work)
    _validate_k6(settings, suite_dir, script, env, deadline)
    say("validation passed")
    tracing.enter("execution")
    outcome, proc = _k6_once(config, settings, script, suite_dir, out, env, deadline, stop, say)
    if proc.stopped == "signal":
        outcome = _stopped_by_signal(outcome)
    if (out / k6.REPORT_INDEX).is_file():
        outcome.report = k6.REPORT_INDEX
    return outcome


def run_k6_shard(config: RunnerConfig, settings: RunnerSettings, work: Path, out: Path,
                 deadline: Deadline, stop: threading.Event, say: RunLog) -> EngineOutcome:
    """A job's k6 shard: every test file of the suite validated, then each of the shard's files is its
    own `k6 run` (its own summary, thresholds and handleSummary), in turn, its artifacts under
    out/<its path without suffix>/, announced by a test-ended line once it has ended."""
    root = project.locate(Path(config.scriptPath), config.scriptName).root
    files = validate.read_project(project.Project(root, None), settings.max_script_bytes)
    suite_dir = work / "tests"
    shutil.rmtree(suite_dir, ignore_errors=True)
    project.copy_into(files, None, suite_dir, ".js")
    env = _k6_env(work)
    tests = job.job_tests(files, config.tests, config.type)
    for rel in tests:
        try:
            _validate_k6(settings, suite_dir, Path(rel), env, deadline)
        except validate.ValidationError as exc:
            raise validate.ValidationError([replace(i, file=i.file or rel) for i in exc.issues]) from exc
    say(f"validation passed: {len(tests)} test files of a suite of {len(files)} files")
    tracing.enter("execution")
    selected = shard_files(tests, config.shardIndex, config.shardCount)
    say(f"{job.label(config)}: {len(selected)} of the job's {len(tests)} test files"
        + (f": {job.named(selected)}" if selected else ""))
    if not selected:
        return job.empty_shard(config, len(tests))
    dirs = job.k6_artifact_dirs(selected)
    runs: list[job.K6File] = []
    signalled = False
    for rel in selected:
        if deadline.expired() or stop.is_set():
            signalled = stop.is_set()
            break
        outcome, proc = _k6_once(config, settings, Path(rel), suite_dir, out / dirs[rel], env, deadline, stop, say)
        run = job.K6File(rel, outcome, proc.duration_seconds)
        runs.append(run)
        ended = job.k6_test_ended(run)
        if ended is not None:
            say.line(ended.line())
            outcome.tests = [ended]
        if proc.stopped:
            signalled = proc.stopped == "signal"
            break
    result = job.k6_shard_outcome(config, selected, runs, deadline.expired())
    if signalled:
        result = _stopped_by_signal(result)
    result.tests = [t for r in runs for t in r.outcome.tests]
    return result


def _k6_env(work: Path) -> dict[str, str]:
    return child_env(os.environ, {**playwright.writable_home(os.environ, work), "K6_NO_USAGE_REPORT": "true"})


def _validate_k6(settings: RunnerSettings, suite_dir: Path, script: Path, env: dict[str, str],
                 deadline: Deadline) -> None:
    validate.validate_k6(suite_dir / script, k6=settings.k6, env=env, cwd=suite_dir,
                         timeout=min(VALIDATION_TIMEOUT_SECONDS, max(1.0, deadline.remaining())),
                         node=settings.node, validator=settings.validate_script, node_modules=settings.node_modules_dir)


def _k6_once(config: RunnerConfig, settings: RunnerSettings, script: Path, suite_dir: Path, out: Path,
             env: dict[str, str], deadline: Deadline, stop: threading.Event,
             say: RunLog) -> tuple[EngineOutcome, ProcessOutcome]:
    """One `k6 run` of ``script`` (relative to the suite's folder, k6's working directory) with its
    artifacts under ``out``, and its verdict."""
    (out / "report").mkdir(parents=True, exist_ok=True)
    cmd = k6.command(settings.k6, script, out, config.k6Args)
    say(f"running k6 on {script}" + (f" with {' '.join(config.k6Args)}" if config.k6Args else ""))
    # handleSummary writes its files in k6's working directory: what is new there afterwards is its.
    skip = {p.relative_to(suite_dir).parts[0] for p in (out, Path(env.get("HOME", "/"))) if p.is_relative_to(suite_dir)}
    before = k6_summary.snapshot(suite_dir, skip)
    proc = run_supervised(cmd, env={**env, **k6.dashboard_env(out, env)}, cwd=suite_dir,
                          log_path=out / k6.CONSOLE_LOG, deadline_at=deadline.at, stop_requested=stop)
    say(f"k6 ended: exit code {proc.exit_code}, {proc.duration_seconds:.1f} s, "
        f"peak memory {proc.peak_rss_bytes / 2**20:.0f} MiB" + (f", stopped ({proc.stopped})" if proc.stopped else ""))
    moved = k6_summary.collect(suite_dir, out, k6_summary.written(before, k6_summary.snapshot(suite_dir, skip)))
    if moved:
        say("handleSummary wrote " + ", ".join(f"{rel} (uploaded as {dest})" if rel != dest else rel
                                               for rel, dest in moved))
    outcome = k6.classify(k6.load_summary(out / k6.SUMMARY_JSON), exit_code=proc.exit_code,
                          timed_out=proc.timed_out, console_tail=_tail(out / k6.CONSOLE_LOG, 65536),
                          work=str(suite_dir))
    return outcome, proc


def _stopped_by_signal(outcome: EngineOutcome) -> EngineOutcome:
    # SIGTERM from the kubelet: the pod is being deleted or evicted (or, rarely, is past its own
    # deadline, which the operator sees as DeadlineExceeded). Not the test's verdict: retryable.
    return EngineOutcome(FailureClass.INFRASTRUCTURE,
                         "the runner was stopped by a signal before the test finished (pod deleted or evicted)",
                         summary=outcome.summary, k6=outcome.k6)


def fetch_suite(config: RunnerConfig, work: Path, deadline: Deadline, say: RunLog) -> RunnerConfig:
    """A suite from git (``gitUrl``): fetched into ``work/git``, and the config's ``scriptPath`` is then
    its folder (or ``scriptName`` in it). Other sources: the config as it is."""
    if not config.gitUrl:
        return config
    folder = gitsource.fetch(
        config.gitUrl, config.gitRevision, config.gitPath, work / "git",
        username=os.environ.get(gitsource.USERNAME_ENV, ""), password=os.environ.get(gitsource.PASSWORD_ENV, ""),
        timeout_seconds=min(GIT_FETCH_TIMEOUT_SECONDS, max(1.0, deadline.remaining())), log=say,
    )
    name = config.scriptName.strip("/")
    return config.model_copy(update={"scriptPath": str(folder / name if name else folder)})


def run_merge(config: RunnerConfig, settings: RunnerSettings, work: Path, out: Path, deadline: Deadline,
              stop: threading.Event, say: RunLog, client: artifacts.S3Client) -> EngineOutcome:
    """A Playwright job's last step: the blob reports of its shards (``mergeFrom`` prefixes, under
    ``blob/``) merged into one HTML report, one JUnit XML and one JSON report. No validation, no
    browser. PASSED when the merge worked (the job's verdict is the operator's)."""
    merge_dir = work / "merge"
    blobs = merge_dir / "blobs"
    shutil.rmtree(merge_dir, ignore_errors=True)
    blobs.mkdir(parents=True)
    merged: list[str] = []
    missing: list[str] = []
    at = where(settings.s3_endpoint_url)
    for number, prefix in enumerate(config.mergeFrom, 1):
        try:
            keys = job.blob_keys(artifacts.list_keys(client, config.bucket, job.blob_folder(prefix)))
            # With a grant the keys are those it may read, not a listing: a shard that wrote no blob
            # report (it had no test file to run) has none there.
            keys = [key for key in keys if _download(client, config.bucket, key,
                                                     blobs / job.local_blob_name(number, key))]
        except Exception as exc:  # noqa: BLE001 - every S3 error is classified and said
            problem = artifacts.classify_error(exc, config.bucket, settings.s3_endpoint_url)
            return EngineOutcome(FailureClass.INFRASTRUCTURE,
                                 f"could not read the blob reports under s3://{config.bucket}/{prefix}/ "
                                 f"from {at}: {problem}")
        (merged if keys else missing).append(prefix)
    say(f"downloaded the blob reports of {len(merged)} of {len(config.mergeFrom)} shards"
        + (f"; none under {', '.join(missing)}" if missing else ""))
    if not merged:
        return EngineOutcome(FailureClass.INFRASTRUCTURE,
                             "no blob report to merge: none under " + (", ".join(missing) or "mergeFrom (empty)"))
    config_path = merge_dir / "merge.config.mjs"
    config_path.write_text(job.render_merge_config(job.merge_config(str(work / "tests"), str(out))))
    env = child_env(os.environ, {**playwright.writable_home(os.environ, work), "FORCE_COLOR": "0",
                                 "PLAYWRIGHT_HTML_OPEN": "never"})
    proc = run_supervised(
        playwright.merge_command(settings.node, settings.node_modules_dir, config_path, blobs),
        env=env, cwd=merge_dir, log_path=out / playwright.CONSOLE_LOG, deadline_at=deadline.at, stop_requested=stop,
    )
    say(f"merge ended: exit code {proc.exit_code}, {proc.duration_seconds:.1f} s"
        + (f", stopped ({proc.stopped})" if proc.stopped else ""))
    if proc.stopped == "signal":
        return _stopped_by_signal(EngineOutcome(FailureClass.INFRASTRUCTURE, ""))
    if proc.timed_out:
        return EngineOutcome(FailureClass.TIMEOUT, "timed out while merging the blob reports")
    report = playwright.load_report(out / job.MERGED_JSON)
    if proc.exit_code != 0 or report is None or not (out / playwright.REPORT_INDEX).is_file():
        return EngineOutcome(FailureClass.INFRASTRUCTURE, f"the merge of the blob reports failed (exit code "
                                                          f"{proc.exit_code}): "
                                                          f"{first_line(_tail(out / playwright.CONSOLE_LOG)[-2000:])}")
    facts = playwright.summarize(report)
    return EngineOutcome(FailureClass.NONE, job.merge_message(playwright.counts_text(facts.summary), merged, missing),
                         summary=facts.summary, report=playwright.REPORT_INDEX)


def _download(client: artifacts.S3Client, bucket: str, key: str, dest: Path) -> bool:
    """Download one object; False when it does not exist."""
    try:
        client.download_file(bucket, key, str(dest))
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            dest.unlink(missing_ok=True)
            return False
        raise


def execute(config: RunnerConfig, settings: RunnerSettings, work: Path, out: Path,
            deadline: Deadline, stop: threading.Event, say: RunLog,
            client: artifacts.S3Client | None = None) -> EngineOutcome:
    engines = {"playwright": run_playwright, "k6": run_k6}
    engine = engines.get(config.type)
    if engine is None:
        return EngineOutcome(FailureClass.VALIDATION, f"unknown test type '{config.type}' (playwright or k6)")
    issues = job.shard_issues(config)
    if issues:
        return EngineOutcome(FailureClass.VALIDATION, f"runner misconfigured: {validate.format_issues(issues)}")
    if config.mode == job.MERGE:
        if client is None:
            return EngineOutcome(FailureClass.INFRASTRUCTURE, "merge mode needs S3")
        tracing.enter("execution")  # a merge validates nothing
        try:
            return run_merge(config, settings, work, out, deadline, stop, say, client)
        except Exception as exc:  # noqa: BLE001 - a bug of ours must still end in a result, not a bare crash
            say("runner error:\n" + traceback.format_exc())
            return EngineOutcome(FailureClass.INFRASTRUCTURE, f"runner error: {type(exc).__name__}: {exc}")
    try:
        config = fetch_suite(config, work, deadline, say)
        return engine(config, settings, work, out, deadline, stop, say)
    except gitsource.GitSourceError as exc:
        if isinstance(exc, gitsource.GitNetworkError) and deadline.expired():
            return EngineOutcome(FailureClass.TIMEOUT, f"timed out fetching the suite: {exc}")
        return EngineOutcome(exc.failure, str(exc))
    except validate.ValidationError as exc:
        return EngineOutcome(FailureClass.VALIDATION, f"invalid script: {exc}")
    except validate.NetworkUnavailable as exc:
        return EngineOutcome(FailureClass.NETWORK, str(exc))
    except validate.ValidatorUnavailable as exc:
        if deadline.expired():
            return EngineOutcome(FailureClass.TIMEOUT, f"timed out during validation: {exc}")
        return EngineOutcome(FailureClass.INFRASTRUCTURE, str(exc))
    except FileNotFoundError as exc:
        return EngineOutcome(FailureClass.INFRASTRUCTURE, f"missing file: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug of ours must still end in a result, not a bare crash
        say("runner error:\n" + traceback.format_exc())
        return EngineOutcome(FailureClass.INFRASTRUCTURE, f"runner error: {type(exc).__name__}: {exc}")


def _wall(monotonic_at: float) -> str:
    """A ``time.monotonic()`` instant as UTC wall-clock time, for people."""
    return (datetime.now(UTC) + timedelta(seconds=monotonic_at - time.monotonic())).strftime("%Y-%m-%dT%H:%M:%SZ")


def uploader_for(client: artifacts.S3Client, config: RunnerConfig, settings: RunnerSettings, give_up_at: float,
                 stop: threading.Event, say: RunLog) -> artifacts.Uploader:
    """An uploader retrying until ``give_up_at`` (or SIGTERM), announcing each wait as an ``Uploading``
    progress line."""
    at = where(settings.s3_endpoint_url)

    def waiting(w: artifacts.Waiting) -> None:
        say.progress(UPLOADING, STORAGE_UNAVAILABLE,
                     f"{w.problem.text}; {w.what} not uploaded yet, retrying until {_wall(w.give_up_at)}")

    def back(left: int, total: int) -> None:
        say.progress(UPLOADING, STORAGE_BACK, f"{at} answers again; uploading the other {left} of {total} files")

    return artifacts.Uploader(
        client, config.bucket, endpoint=settings.s3_endpoint_url, concurrency=settings.upload_concurrency,
        give_up_at=give_up_at, backoff=artifacts.Backoff(settings.upload_backoff_seconds,
                                                         settings.upload_backoff_max_seconds),
        on_wait=waiting, on_back=back, stopped=stop.is_set, sleep=stop.wait,
    )


def _named(names: list[str], shown: int = 8) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def caps_for(config: RunnerConfig, upload_grant: UploadGrant | None) -> artifacts.Caps:
    """The run's caps (RunnerConfig), and the grant's per-file limit when there is a grant."""
    return artifacts.Caps(config.maxArtifactBytes, config.maxArtifactFiles,
                          upload_grant.maxObjectBytes if upload_grant is not None else None)


def upload(uploader: artifacts.Uploader, config: RunnerConfig, out: Path, outcome: EngineOutcome,
           say: RunLog, caps: artifacts.Caps | None = None) -> tuple[ArtifactLocation, str | None, list[str]]:
    """Upload out/ within ``caps`` (default: the config's); returns the location, a note for the
    message when files were left out or lost, and those files (paths relative to the prefix, as
    ``RunnerResult.notUploaded``)."""
    # Announced (before the plan: the line also lands in console.log, which is uploaded), so the
    # operator shows the run Uploading while its files go up.
    say.progress(UPLOADING, UPLOAD_STARTED, f"the test ended; uploading its files to s3://{config.bucket}/"
                 f"{config.prefix}/")
    planned = artifacts.plan(out, config.prefix)
    caps = caps or caps_for(config, None)
    items, left_out = artifacts.within_caps(planned, config.prefix, caps)
    report = uploader.upload_all(items)
    outcome.uploaded, outcome.not_uploaded = artifacts.listing(config.prefix, planned, report)
    say(f"uploaded {len(report.uploaded)} files, {report.bytes / 2**20:.1f} MiB in {report.seconds:.2f} s "
        f"to s3://{config.bucket}/{config.prefix}/"
        + (f" (waited {report.waited:.1f} s for S3)" if report.waited else ""))
    report_key = artifacts.object_key(config.prefix, outcome.report) if outcome.report else None
    start = len(artifacts.object_key(config.prefix, ""))
    lost = [item.key[start:] for item in items if item.key in report.failed]
    notes = []
    if left_out:
        names = [item.key[start:] for item in left_out]
        notes.append(f"{len(left_out)} of {len(planned)} artifacts left out, "
                     f"{sum(i.size for i in left_out) / 2**20:.1f} MiB ({caps.describe()}): {_named(names)}")
        say(f"left out by the caps ({caps.describe()}): {', '.join(names)}")
    if lost:
        cause = report.problem.text if report.problem else next(iter(report.failed.values()))
        window = (", gave up: the runner was stopped by a signal" if report.stopped else
                  f", gave up after the {config.uploadWindowSeconds} s upload window" if report.waited else "")
        notes.append(f"{len(lost)} of {len(items)} artifacts not uploaded ({cause}{window}): {_named(lost)}")
        say(f"not uploaded: {', '.join(lost)}")
        if report_key in report.failed:
            report_key = None
    if report_key is not None and report_key in {item.key for item in left_out}:
        report_key = None
    lost = [item.key[start:] for item in left_out] + lost
    return (ArtifactLocation(bucket=config.bucket, prefix=config.prefix, report=report_key),
            "; ".join(notes) or None, lost)


def store_results(clients: tuple[artifacts.S3Client, artifacts.S3Client], config: RunnerConfig,
                  settings: RunnerSettings, out: Path, outcome: EngineOutcome, started: float,
                  stop: threading.Event, say: RunLog, caps: artifacts.Caps | None = None) -> RunnerResult:
    """Upload out/, then result.json (last), retrying both through an S3 outage within the upload
    window; the result says what could not be stored."""
    client, small_client = clients
    give_up_at = upload_give_up_at(time.monotonic(), started, config.timeoutSeconds, config.uploadWindowSeconds)
    location, note, lost = upload(uploader_for(client, config, settings, give_up_at, stop, say), config, out,
                                  outcome, say, caps)
    if note:
        outcome.message = f"{outcome.message} [{note}]"
    result = build_result(outcome, location, int((time.monotonic() - started) * 1000))
    result.notUploaded = lost
    # A small body: the client with short timeouts, so a last try after the window stays short.
    uploader = uploader_for(small_client, config, settings, give_up_at, stop, say)
    try:
        uploader.put_result(config.prefix, result.model_dump_json(exclude_none=True))
    except Exception as exc:  # noqa: BLE001 - the termination message still carries the verdict
        say(f"{RESULT_JSON_NAME} not uploaded: {uploader.classify(exc).text}")
        result.notUploaded = [*lost, RESULT_JSON_NAME]
        result.message = f"{result.message} [{RESULT_JSON_NAME} not uploaded]"
    return result


def finish(result: RunnerResult, settings: RunnerSettings, say: RunLog) -> int:
    error = write_termination_message(result, settings.termination_message_path)
    if error:
        say(error)
    verdict = "passed" if result.passed else result.failureClass.value
    say(f"result: {verdict} (exit code {result.exitCode}): {result.message}")
    return result.exitCode


def main(argv: list[str] | None = None) -> NoReturn:
    """The process: one attempt, then exit with its code. Everything the attempt leaves is written
    by then (S3, the termination message, stdout), so the interpreter's own teardown is skipped:
    freeing boto3's and pydantic's objects one by one took 0.1 s of every run's slot."""
    try:
        code = _main(argv)
    finally:
        tracing.current.close()  # the last spans, within tracing.FLUSH_SECONDS
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    become_subreaper()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        settings = RunnerSettings.from_env()
        config = RunnerConfig.from_env()
    except Exception as exc:  # noqa: BLE001 - a misconfigured pod must still say why
        say = RunLog(Path("/dev/null"))
        settings = RunnerSettings.from_env({k: v for k, v in os.environ.items()
                                            if k == "SUPERCHECK_TERMINATION_MESSAGE_PATH"})
        result = build_result(EngineOutcome(FailureClass.INFRASTRUCTURE, f"runner misconfigured: {exc}"), None, 0)
        return finish(result, settings, say)

    work = Path(config.workDir)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)  # everything under out/ is uploaded: nothing stale
    out.mkdir(parents=True, exist_ok=True)
    say = RunLog(out / "console.log")
    span_attributes: dict[str, str | int] = {"supercheck.namespace": config.namespace, "supercheck.run": config.runName,
                                              "supercheck.attempt": config.attempt}
    tracing.current = tracing.start(os.environ, span_attributes)
    margin = settings.timeout_margin_seconds
    margin = default_margin(config.timeoutSeconds) if margin is None else margin
    deadline = Deadline.after(execution_budget(config.timeoutSeconds, margin), start=started)
    say(f"{config.type} run {config.namespace}/{config.runName}, attempt {config.attempt}: "
        f"timeout {config.timeoutSeconds} s, the test is stopped after {deadline.at - started:.0f} s")

    try:
        upload_grant = grant.load()
    except grant.GrantError as exc:
        outcome = EngineOutcome(FailureClass.INFRASTRUCTURE, f"runner misconfigured: {exc}")
        return finish(build_result(outcome, None, int((time.monotonic() - started) * 1000)), settings, say)
    if upload_grant is not None:  # the endpoint the messages name is the grant's
        settings = replace(settings, s3_endpoint_url=grant.endpoint(upload_grant))
    endpoint = settings.s3_endpoint_url
    try:
        clients = s3_clients(settings, upload_grant)
        if upload_grant is None:
            outage = artifacts.preflight(clients[1], config.bucket, endpoint)
        else:
            outage = artifacts.preflight_post(clients[1], config.bucket,
                                              artifacts.object_key(config.prefix, playwright.CONSOLE_LOG),
                                              say.path.read_bytes() if say.path.is_file() else b"", endpoint)
    except (ValueError, artifacts.S3Unavailable) as exc:
        fix = "" if isinstance(exc, artifacts.S3Unavailable) else ": fix the operator's S3_ENDPOINT_URL"
        outcome = EngineOutcome(FailureClass.INFRASTRUCTURE, f"before running: {exc}{fix}")
        return finish(build_result(outcome, None, int((time.monotonic() - started) * 1000)), settings, say)
    if outage is not None:
        say(f"{outage.text}: S3 looks down rather than misconfigured, so the test runs anyway and its files "
            f"are uploaded when S3 is back (retrying for up to {config.uploadWindowSeconds} s once the test ends)")

    tracing.enter("validation")
    try:
        outcome = execute(config, settings, work, out, deadline, stop, say, clients[0])
    finally:
        reap_orphans()
    if outcome.failure not in (FailureClass.NONE, FailureClass.TEST_FAILURE):
        tracing.current.fail(f"{outcome.failure.value}: {outcome.message}")
    tracing.enter("upload")

    return finish(store_results(clients, config, settings, out, outcome, started, stop, say,
                                caps_for(config, upload_grant)), settings, say)


def s3_clients(settings: RunnerSettings,
               upload_grant: UploadGrant | None) -> tuple[artifacts.S3Client, artifacts.S3Client]:
    """Two clients: one for the artifacts, one with short timeouts for the preflight and result.json.
    Through the pod's grant when it has one (the operator's pods always do), else with a key from the
    environment (the runner used on its own)."""
    pool = max(10, settings.upload_concurrency * 2)
    if upload_grant is not None:
        return (grant.GrantClient(upload_grant, pool=pool, connect_timeout=UPLOAD_CONNECT_TIMEOUT_SECONDS,
                                  read_timeout=UPLOAD_READ_TIMEOUT_SECONDS, attempts=UPLOAD_SDK_ATTEMPTS),
                grant.GrantClient(upload_grant, connect_timeout=SMALL_CONNECT_TIMEOUT_SECONDS,
                                  read_timeout=SMALL_READ_TIMEOUT_SECONDS, attempts=SMALL_SDK_ATTEMPTS))
    endpoint = settings.s3_endpoint_url
    return (artifacts.make_client(endpoint, settings.s3_region, pool=pool),
            artifacts.make_client(endpoint, settings.s3_region, connect_timeout=SMALL_CONNECT_TIMEOUT_SECONDS,
                                  read_timeout=SMALL_READ_TIMEOUT_SECONDS, attempts=SMALL_SDK_ATTEMPTS))


if __name__ == "__main__":
    main()
