"""The runner result contract: the one agreement between the operator and the runner pod.

Both sides import this module and nothing else of each other:

* the operator builds the runner's environment with :meth:`RunnerConfig.to_env`;
  the runner reads it back with :meth:`RunnerConfig.from_env`;
* the runner ends with one of the :class:`ExitCode` values and writes a compact
  :class:`RunnerResult` as its termination message (at most 4 KiB, the limit
  Kubernetes enforces) and the full result as ``result.json`` in S3, last;
* the operator reads the termination message back with :func:`decode_termination_message`
  and maps ``(exit code, result)`` to a :class:`FailureClass` with :func:`classify_exit`;
* while it runs, the runner announces a phase the operator cannot see from the pod (it has
  no API token to say so itself) as a :class:`Progress` line on stdout, and the operator reads
  the last one back from the container's log with :func:`last_progress`.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
RESULT_JSON_NAME = "result.json"
OOM_EXIT_CODE = 137


class ExitCode(enum.IntEnum):
    """Exit codes of ``supercheck-runner``. Chosen clear of 137 (SIGKILL/OOM) and k6's 99."""

    PASSED = 0
    TEST_FAILED = 10
    VALIDATION = 11
    TIMEOUT = 12
    BROWSER_CRASH = 13
    INFRASTRUCTURE = 14
    NETWORK = 15


# A str mixin rather than enum.StrEnum: StrEnum would change what str() and f-strings print.
class FailureClass(str, enum.Enum):  # noqa: UP042
    """Why an attempt did not pass. Drives the retry policy (the outcome table in docs/operator.md)."""

    NONE = "none"
    TEST_FAILURE = "test_failure"
    VALIDATION = "validation"
    TIMEOUT = "timeout"
    OOM = "oom"
    BROWSER_CRASH = "browser_crash"
    INFRASTRUCTURE = "infrastructure"
    NETWORK = "network"  # a remote module, DNS or a connection failed before the test could run
    POD_LOST = "pod_lost"


_EXIT_TO_CLASS = {
    ExitCode.PASSED: FailureClass.NONE,
    ExitCode.TEST_FAILED: FailureClass.TEST_FAILURE,
    ExitCode.VALIDATION: FailureClass.VALIDATION,
    ExitCode.TIMEOUT: FailureClass.TIMEOUT,
    ExitCode.BROWSER_CRASH: FailureClass.BROWSER_CRASH,
    ExitCode.INFRASTRUCTURE: FailureClass.INFRASTRUCTURE,
    ExitCode.NETWORK: FailureClass.NETWORK,
}


def exit_code_for(failure: FailureClass) -> ExitCode:
    for code, cls in _EXIT_TO_CLASS.items():
        if cls == failure:
            return code
    return ExitCode.INFRASTRUCTURE


def classify_exit(exit_code: int | None, reason: str | None = None) -> FailureClass:
    """Map a terminated container to a failure class, without a runner result.

    ``reason`` is the container state's reason (``OOMKilled``, ``Error``...).
    An unknown non-zero exit code means the runner died without speaking: the pod was lost.
    """
    if reason == "OOMKilled" or exit_code == OOM_EXIT_CODE:
        return FailureClass.OOM
    if exit_code is None:
        return FailureClass.POD_LOST
    try:
        return _EXIT_TO_CLASS[ExitCode(exit_code)]
    except ValueError:
        return FailureClass.POD_LOST


class TestSummary(BaseModel):
    """Playwright counts (status.summary)."""

    model_config = ConfigDict(populate_by_name=True)
    __test__ = False  # not a pytest test class

    total: int = 0
    passed: int = 0
    failed: int = 0
    flaky: int = 0
    skipped: int = 0


class K6Summary(BaseModel):
    """k6 verdict (status.k6)."""

    model_config = ConfigDict(populate_by_name=True)

    thresholdsPassed: bool = True
    checksPassed: int = 0
    checksFailed: int = 0
    iterations: int = 0
    httpReqDurationP95Ms: float | None = None


class ArtifactLocation(BaseModel):
    """Where the attempt's artifacts are in S3 (status.artifacts)."""

    bucket: str
    prefix: str
    report: str | None = Field(default=None, description="Key of the HTML report")


class ArtifactFile(BaseModel):
    """One uploaded object, relative to the attempt's prefix (result.json lists them)."""

    key: str
    bytes: int


class RunnerResult(BaseModel):
    """What one runner attempt produced. ``uploaded``, ``notUploaded`` and ``tests`` are in result.json only,
    never in the termination message (4 KiB)."""

    exitCode: int
    failureClass: FailureClass
    message: str = ""
    summary: TestSummary | None = None
    k6: K6Summary | None = None
    artifacts: ArtifactLocation | None = None
    durationMs: int | None = None
    uploaded: list[ArtifactFile] = Field(default_factory=list)
    notUploaded: list[str] = Field(default_factory=list)
    tests: list[TestEnded] = Field(default_factory=list)  # a job's shard: every test file it ran

    @property
    def passed(self) -> bool:
        return self.failureClass == FailureClass.NONE


def encode_termination_message(result: RunnerResult) -> str:
    """Compact JSON within Kubernetes' 4 KiB limit; the message is shortened first, never the counts."""
    data = result.model_dump(mode="json", exclude_none=True, exclude={"uploaded", "notUploaded", "tests"})
    text = json.dumps(data, separators=(",", ":"))
    while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and data.get("message"):
        msg = data["message"]
        data["message"] = msg[: max(0, len(msg) // 2 - 1)] + "…"
        if len(msg) < 8:
            data["message"] = ""
        text = json.dumps(data, separators=(",", ":"))
    return text


def decode_termination_message(text: str | None) -> RunnerResult | None:
    """The runner's result, or None when the message is absent or not ours (e.g. a kill)."""
    if not text:
        return None
    try:
        return RunnerResult.model_validate_json(text)
    except ValueError:
        return None


UPLOAD_GRANT_ENV = "SUPERCHECK_UPLOAD_GRANT"  # the path of the grant file in a runner pod
UPLOAD_GRANT_PATH = "/var/run/supercheck/upload/grant.json"  # where the operator mounts it

# W3C Trace Context of the attempt a runner pod runs (its spans are children of it); set with the
# OTEL_EXPORTER_OTLP_* variables only when the operator traces (docs/tracing.md).
TRACEPARENT_ENV = "TRACEPARENT"


DEFAULT_MAX_ARTIFACT_BYTES = 1024**3  # per attempt
DEFAULT_MAX_ARTIFACT_FILES = 5000  # per attempt
DEFAULT_MAX_OBJECT_BYTES = 100 * 1024**2  # per file: a grant's maxObjectBytes


class PresignedRead(BaseModel):
    """One object a runner may read: a presigned GET (a job's merge pod reads its shards' blob reports)."""

    key: str
    url: str


class UploadGrant(BaseModel):
    """What one runner pod may do in S3, minted by the operator for that pod alone (no shared key).

    It may POST objects whose key starts with ``prefix`` (a presigned POST policy: ``url`` and the
    form ``fields``, to which the runner adds ``key``, ``Content-Type`` and the file), each at most
    ``maxObjectBytes``, until ``expires``; and GET exactly the objects in ``reads``. It cannot list,
    read or write anything else."""

    bucket: str
    prefix: str
    url: str
    fields: dict[str, str]
    expires: str  # ISO 8601, UTC
    maxObjectBytes: int
    reads: list[PresignedRead] = Field(default_factory=list)


class RunnerConfig(BaseModel):
    """Everything the runner needs, passed as environment variables of the runner container."""

    type: str  # "playwright" | "k6"
    # The script in its mounted folder, beside the files it imports; the folder itself when the whole
    # folder is the suite (a ConfigMap without key: every test file runs).
    scriptPath: str
    # The script's path in that folder, the name the user gave (configMapRef path or key, or
    # <run name>.spec.ts / <run name>.js for an inline script); reports use it. Empty for a whole suite.
    scriptName: str = ""
    timeoutSeconds: int
    runName: str
    namespace: str
    attempt: int
    bucket: str
    prefix: str
    playwrightRetries: int = 1
    playwrightTrace: str = "retain-on-failure"
    # Playwright's `video`: retain-on-failure records every test and keeps the failures' videos.
    playwrightVideo: str = "retain-on-failure"
    playwrightHeadless: bool = True
    playwrightWorkers: int = 2
    playwrightTestTimeoutSeconds: int = 30  # per test (Playwright's own default), not the run's budget
    # Playwright `use` options set without editing the script: baseURL, viewport, locale, timezoneId,
    # extraHTTPHeaders.
    playwrightUse: dict[str, Any] = Field(default_factory=dict)
    k6Args: list[str] = Field(default_factory=list)
    workDir: str = "/tmp/supercheck"
    # How long the runner keeps retrying its uploads while S3 is unavailable, from the start of the
    # upload (and never past timeoutSeconds + this after its start); the pod's deadline includes it.
    uploadWindowSeconds: int = Field(default=300, ge=0)
    # Caps on what one attempt stores (result.json is always written and not counted): the most
    # useful files first (the reports, the logs, then traces and screenshots, then the rest); what
    # does not fit is listed in ``RunnerResult.notUploaded`` and said in the message.
    maxArtifactBytes: int = Field(default=DEFAULT_MAX_ARTIFACT_BYTES, ge=0)
    maxArtifactFiles: int = Field(default=DEFAULT_MAX_ARTIFACT_FILES, ge=0)
    # A JobRun's pod. ``shardCount`` 0: a TestRun. Otherwise this pod is shard ``shardIndex`` (1-based)
    # of ``shardCount`` and runs :func:`shard_files` of the suite's test files: ``tests`` when the
    # operator knows them (tests[] and ConfigMap sources), else those found by :func:`is_test_file`
    # (a git source). Every file of the suite is validated before any test runs. Each test file
    # that ends is announced as a :class:`TestEnded` line; Playwright also writes a blob report
    # (``blob/`` in the artifacts) for the merge.
    shardIndex: int = Field(default=0, ge=0)
    shardCount: int = Field(default=0, ge=0)
    tests: list[str] = Field(default_factory=list)
    # "run" (a test or a shard) or "merge": merge the Playwright blob reports found under the S3
    # prefixes ``mergeFrom`` (same bucket) into one HTML report and one JUnit XML under ``prefix``.
    mode: str = "run"
    mergeFrom: list[str] = Field(default_factory=list)
    # A suite fetched in the pod: ``git clone`` of gitUrl at gitRevision, the suite is the folder
    # gitPath of it. Credentials, when given, come as SUPERCHECK_GIT_USERNAME / SUPERCHECK_GIT_PASSWORD.
    gitUrl: str = ""
    gitRevision: str = ""
    gitPath: str = ""

    def to_env(self) -> dict[str, str]:
        env = {}
        for name, value in self.model_dump().items():
            if isinstance(value, (list, dict, bool)):
                value = json.dumps(value)
            env[_env_name(name)] = str(value)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunnerConfig:
        environ = os.environ if environ is None else environ
        data: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            key = _env_name(name)
            if key not in environ:
                continue
            raw = environ[key]
            if field.annotation in (bool, list[str], dict[str, Any]):
                data[name] = json.loads(raw)
            else:
                data[name] = raw
        return cls.model_validate(data)


def _env_name(field: str) -> str:
    snake = "".join("_" + c if c.isupper() else c.upper() for c in field)
    return "SUPERCHECK_" + snake.lstrip("_")


def artifact_prefix(namespace: str, name: str, uid: str, attempt: int) -> str:
    """Unique per run and attempt: a later run of the same name never overwrites an earlier one."""
    return f"{namespace}/{name}/{uid}/attempt-{attempt}"


def blob_report_key(shard_prefix: str, shard: int) -> str:
    """Where a Playwright shard's blob report lands (``blob/shard-<N>.zip`` under its attempt's prefix):
    the one object of a shard the job's merge pod reads, so the operator can grant exactly it."""
    return f"{shard_prefix.strip('/')}/blob/shard-{shard}.zip"


def job_prefix(namespace: str, name: str, uid: str) -> str:
    """A JobRun's folder: its merged report (``report/index.html``, ``junit.xml``) and its shards'."""
    return f"{namespace}/{name}/{uid}"


def shard_prefix(namespace: str, name: str, uid: str, shard: int, attempt: int) -> str:
    return f"{job_prefix(namespace, name, uid)}/shard-{shard}/attempt-{attempt}"


# ---------------------------------------------------------------- a job's tests

# Playwright's default testMatch, **/*.@(spec|test).?(c|m)[jt]s?(x), on a file name; k6 test files
# are named the same way, or *.k6.js / *.k6.ts (any other file of a suite is a helper it imports).
_TEST_FILE = {"playwright": re.compile(r"\.(spec|test)\.[cm]?[jt]sx?$"),
              "k6": re.compile(r"\.(spec|test|k6)\.[cm]?[jt]s$")}


def is_test_file(path: str, test_type: str) -> bool:
    """Whether a suite's file is a test (one test of a job) rather than a helper it imports."""
    pattern = _TEST_FILE.get(test_type)
    return bool(pattern and pattern.search(path.rsplit("/", 1)[-1]))


def shard_files(files: list[str], index: int, count: int) -> list[str]:
    """The test files shard ``index`` (1-based) of ``count`` runs: round robin over the sorted
    files, so each shard gets the same files on every attempt, and the operator and the runner
    agree without talking."""
    if count <= 0:
        return sorted(files)
    return [f for i, f in enumerate(sorted(files)) if i % count == index - 1]


class TestOutcome(str, enum.Enum):  # noqa: UP042 - see FailureClass
    """How one test (a test file of a job) ended. A file's outcome is that of its worst test case:
    failed over flaky over passed; skipped only when every case was skipped."""

    __test__ = False

    PASSED = "passed"
    FAILED = "failed"
    FLAKY = "flaky"
    SKIPPED = "skipped"
    NOT_RUN = "notRun"  # the job ended (timeout, cancel, error) before this test ran: never printed by a runner


TEST_ENDED_TAG = "test-ended "
TEST_FAILURE_LIMIT = 300


class TestEnded(BaseModel):
    """One test file of a job has ended, printed by the runner as it happens:
    ``[supercheck] test-ended {"file":"login.spec.ts","outcome":"passed","durationMs":812,"retries":0}``.
    ``cases`` is how many test cases the file has; ``failure``: the first failing case and its error."""

    __test__ = False

    file: str
    outcome: TestOutcome
    durationMs: int = 0
    retries: int = 0
    cases: int = 0
    failure: str = ""

    def line(self) -> str:
        data = self.model_dump(mode="json")
        data["failure"] = " ".join(self.failure.split())[:TEST_FAILURE_LIMIT]
        return LOG_PREFIX + TEST_ENDED_TAG + json.dumps(data, separators=(",", ":"))


def tests_ended(log: str) -> list[TestEnded]:
    """Every test-ended line of a runner's log, in order (a file printed twice: the last wins)."""
    found: dict[str, TestEnded] = {}
    head = LOG_PREFIX + TEST_ENDED_TAG
    for raw in log.split("\n"):
        if not raw.startswith(head):
            continue
        try:
            ended = TestEnded.model_validate_json(raw[len(head):].rstrip())
        except ValueError:
            continue
        found.pop(ended.file, None)
        found[ended.file] = ended
    return list(found.values())


RunnerResult.model_rebuild()


# The artifact buckets. The operator picks one by test type ("playwright", "k6"); a Playwright JobRun
# uses "playwright-job"; a Monitor's synthetic check (Playwright or k6) "monitor". The local environment
# creates all four.
BUCKETS = {
    "playwright": "playwright-test-artifacts",
    "playwright-job": "playwright-job-artifacts",
    "k6": "k6-performance-artifacts",
    "monitor": "playwright-monitor-artifacts",
}


# ---------------------------------------------------------------- progress lines (runner -> operator)

LOG_PREFIX = "[supercheck] "  # the runner's own lines on stdout; a test's line starting so is escaped
UPLOADING = "Uploading"  # the only phase a runner announces: the test has ended, its files are not stored yet
STORAGE_UNAVAILABLE = "StorageUnavailable"  # reason: S3 cannot be reached; the runner retries
STORAGE_BACK = "StorageBack"  # reason: S3 answers again; the remaining files are going up
UPLOAD_STARTED = "Uploading"  # reason: the test ended and its files are going up (announced at the start)
PROGRESS_MESSAGE_LIMIT = 512
_PROGRESS = re.compile(r"^" + re.escape(LOG_PREFIX) + r"phase=(?P<phase>[A-Za-z]+) reason=(?P<reason>[A-Za-z]+): "
                       r"(?P<message>.*)$")


class Progress(BaseModel):
    """A phase the runner is in, printed as one stdout line:
    ``[supercheck] phase=Uploading reason=StorageUnavailable: S3 at http://...: connection refused; ...``."""

    phase: str
    reason: str
    message: str

    def line(self) -> str:
        """The line without its trailing newline; the message is kept to one line and shortened."""
        message = " ".join(self.message.split())
        if len(message) > PROGRESS_MESSAGE_LIMIT:
            message = message[: PROGRESS_MESSAGE_LIMIT - 1] + "…"
        return f"{LOG_PREFIX}phase={self.phase} reason={self.reason}: {message}"


def last_progress(log_tail: str) -> Progress | None:
    """The newest progress line of a log's tail, or None when the tail has none."""
    for raw in reversed(log_tail.split("\n")):  # not splitlines(): a "\r" must not start a line here
        m = _PROGRESS.match(raw.rstrip())
        if m:
            return Progress(phase=m["phase"], reason=m["reason"], message=m["message"][:PROGRESS_MESSAGE_LIMIT])
    return None
