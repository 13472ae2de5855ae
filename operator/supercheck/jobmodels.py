"""The JobRun vocabulary: a suite of tests run as one job, split into shards (one runner pod each).

Like :mod:`supercheck.models` for TestRun, these models are the one source of the JobRun CRD
(``python -m supercheck.crdgen``). What a JobRun shares with a TestRun (env, resources, the
Playwright and k6 options, the phases) is imported from there, so the two kinds never drift.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from supercheck.models import (
    KEY_PATTERN,
    NOT_OPERATOR_SECRET_RULES,
    TEST_TIMEOUT_ABOVE_RUN,
    AttemptRecord,
    Condition,
    EnvFromSource,
    EnvVar,
    K6Options,
    Notification,
    NotifyTarget,
    Phase,
    PlaywrightOptions,
    Resources,
    _Model,
    check_not_operator_secret,
    check_object_name,
    object_name_field,
)
from supercheck.vocabulary import SlotState
from supercheck_contract import FailureClass, TestOutcome, TestSummary

MAX_TESTS = 500
MAX_PARALLELISM = 64
TEST_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"

MSG_ONE_TESTS_SOURCE = "set exactly one of spec.tests (the tests listed) or spec.testsFrom (a ConfigMap or git)"
MSG_ONE_FROM = "set exactly one of spec.testsFrom.configMapRef or spec.testsFrom.git"
MSG_UNIQUE_TEST_NAMES = "each spec.tests[].name must be unique within the JobRun"
MSG_K6_OPTIONS = "spec.k6 applies only to type k6; use spec.playwright for type playwright"
MSG_PW_OPTIONS = "spec.playwright applies only to type playwright; use spec.k6 for type k6"
MSG_ONE_TEST_SCRIPT = ("set exactly one of spec.tests[].script.inline or spec.tests[].script.configMapRef "
                       "(name and key); a suite with helper files is spec.testsFrom")


class TestKeyRef(_Model):
    __test__ = False

    name: str = Field(min_length=1, max_length=253, description="ConfigMap in the JobRun's namespace")
    key: str = Field(min_length=1, max_length=253, pattern=KEY_PATTERN, description="Key holding the test's script")


class TestScript(_Model):
    """Exactly one of `inline` or `configMapRef` (one key: a test of a job is one file; a suite with
    helper files is `spec.testsFrom`)."""

    __test__ = False
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.inline) != has(self.configMapRef)", "message": MSG_ONE_TEST_SCRIPT}]})

    inline: str | None = Field(default=None, min_length=1, max_length=1_000_000, description="The script itself")
    configMapRef: TestKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TestScript:
        if (self.inline is None) == (self.configMapRef is None):
            raise ValueError(MSG_ONE_TEST_SCRIPT)
        return self


class JobTest(_Model):
    """One test of the job: a script, inline or in a ConfigMap key."""

    name: str = Field(min_length=1, max_length=100, pattern=TEST_NAME_PATTERN,
                      description="The test's name (lower case, digits, - _ .); its file is <name>.spec.ts "
                      "(k6: <name>.test.js)")
    script: TestScript


class SuiteConfigMapRef(_Model):
    name: str = Field(min_length=1, max_length=253,
                      description="ConfigMap in the JobRun's namespace: each key that is a test file "
                      "(*.spec.ts, *.test.js, ...; k6 also *.k6.js) is one test, the other keys are "
                      "files the tests import")


class GitSecretRef(_Model):
    """The Secret of a git suite's credentials: the run's own, never one the operator owns."""

    model_config = ConfigDict(json_schema_extra=NOT_OPERATOR_SECRET_RULES)

    name: str = object_name_field("Secret in the JobRun's namespace (a DNS subdomain: lower case)")

    @model_validator(mode="after")
    def _not_operators(self) -> GitSecretRef:
        check_object_name(self.name, "spec.testsFrom.git.credentials.secretRef.name")
        check_not_operator_secret(self.name, "spec.testsFrom.git.credentials.secretRef.name")
        return self


class GitCredentials(_Model):
    secretRef: GitSecretRef = Field(description="A Secret with `username` and `password` (or a token as "
                                    "password) for HTTPS")


class GitSource(_Model):
    url: str = Field(min_length=1, max_length=2048, pattern=r"^(https?|git)://[^\s]+$",
                     description="Repository URL, https://, http:// or git:// (credentials never in the URL: "
                     "use credentials.secretRef)")
    revision: str | None = Field(default=None, max_length=256, pattern=r"^[A-Za-z0-9._/@+-]+$",
                                 description="Branch, tag or commit; default the remote's HEAD")
    path: str | None = Field(default=None, max_length=1024,
                             pattern=r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)*$",
                             description="The suite's folder in the repository, default its root")
    credentials: GitCredentials | None = None


class TestsFrom(_Model):
    __test__ = False
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.configMapRef) != has(self.git)", "message": MSG_ONE_FROM}]})

    configMapRef: SuiteConfigMapRef | None = None
    git: GitSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TestsFrom:
        if (self.configMapRef is None) == (self.git is None):
            raise ValueError(MSG_ONE_FROM)
        return self


class JobRunSpec(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.tests) != has(self.testsFrom)", "message": MSG_ONE_TESTS_SOURCE},
        {"rule": "self.type == 'k6' || !has(self.k6)", "message": MSG_K6_OPTIONS},
        {"rule": "self.type == 'playwright' || !has(self.playwright)", "message": MSG_PW_OPTIONS},
        {"rule": "!has(self.playwright) || !has(self.playwright.testTimeoutSeconds) || "
                 "!has(self.timeoutSeconds) || self.playwright.testTimeoutSeconds <= self.timeoutSeconds",
         "message": TEST_TIMEOUT_ABOVE_RUN},
    ]})

    type: Literal["playwright", "k6"]
    tests: list[JobTest] | None = Field(default=None, min_length=1, max_length=MAX_TESTS,
                                        description="The tests, each a name and a script")
    testsFrom: TestsFrom | None = None
    parallelism: int = Field(default=1, ge=1, le=MAX_PARALLELISM,
                             description="Runner pods working on the job at once (at most RUNNING_CAPACITY)")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first")
    timeoutSeconds: int | None = Field(default=None, ge=1, le=86400,
                                       description="The whole job's budget; default JOB_EXECUTION_TIMEOUT_MS / 1000")
    env: list[EnvVar] = Field(default_factory=list, max_length=256)
    envFrom: list[EnvFromSource] = Field(default_factory=list, max_length=32)
    resources: Resources | None = Field(default=None, description="Limits of each runner pod")
    playwright: PlaywrightOptions | None = None
    k6: K6Options | None = None
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0, le=31_536_000,
                                                description="Delete the JobRun this long after it ends")
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> JobRunSpec:
        if (self.tests is None) == (self.testsFrom is None):
            raise ValueError(MSG_ONE_TESTS_SOURCE)
        names = [t.name for t in self.tests or []]
        if len(set(names)) != len(names):
            raise ValueError(MSG_UNIQUE_TEST_NAMES)
        if self.type != "k6" and self.k6 is not None:
            raise ValueError(MSG_K6_OPTIONS)
        if self.type != "playwright" and self.playwright is not None:
            raise ValueError(MSG_PW_OPTIONS)
        pw = self.playwright
        if pw and pw.testTimeoutSeconds and self.timeoutSeconds and pw.testTimeoutSeconds > self.timeoutSeconds:
            raise ValueError(TEST_TIMEOUT_ABOVE_RUN)
        return self


class JobProgress(_Model):
    total: int = 0
    completed: int = 0
    passed: int = 0
    failed: int = 0
    flaky: int = 0
    skipped: int = 0


class TestStatus(_Model):
    """One test of the job as it stands (``outcome`` absent: not ended yet)."""

    __test__ = False

    name: str
    file: str
    shard: int | None = None
    outcome: TestOutcome | None = None
    durationMs: int | None = None
    retries: int | None = None
    failure: str | None = None


class ShardStatus(_Model):
    """One shard: the runner pod(s) working through its part of the tests, attempt after attempt."""

    index: int
    tests: int = 0
    attempts: int = 0
    podName: str | None = None
    state: Literal["Pending", "Running", "Uploading", "Retrying", "Done", "Failed", "Error"] = "Pending"
    failureClass: FailureClass | None = None
    message: str | None = None
    nextAttemptAt: str | None = None
    report: str | None = Field(default=None, description="Key of the last attempt's HTML report")
    summary: TestSummary | None = Field(default=None, description="Playwright: the last attempt's test cases")
    attemptHistory: list[AttemptRecord] = Field(default_factory=list)


class MergeStatus(_Model):
    attempts: int = 0
    podName: str | None = None
    state: Literal["Pending", "Running", "Done", "Error"] = "Pending"
    message: str | None = None


class JobArtifacts(_Model):
    bucket: str
    prefix: str
    report: str | None = Field(default=None, description="Key of the merged HTML report")
    junit: str | None = Field(default=None, description="Key of the merged JUnit XML")


class JobRunStatus(_Model):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None
    queuedAt: str | None = None
    retryAfterSeconds: int | None = None
    slot: SlotState | None = Field(default=None, description="What the capacity ledger holds for this job")
    slots: int | None = Field(default=None, description="Running slots the job holds at once (its shards)")
    queueSeq: int | None = None
    failureClass: FailureClass | None = None
    result: str | None = Field(default=None, description="One-line outcome, e.g. 11 passed, 1 failed")
    progressText: str | None = Field(default=None, description="Tests ended of all, e.g. 37/40")
    duration: str | None = None
    progress: JobProgress | None = None
    summary: TestSummary | None = Field(
        default=None, description="Playwright: the test cases of the merged report (a file may hold several)")
    tests: list[TestStatus] = Field(default_factory=list)
    shards: list[ShardStatus] = Field(default_factory=list)
    merge: MergeStatus | None = None
    artifacts: JobArtifacts | None = None
    notifications: list[Notification] = Field(default_factory=list)
    recorded: bool = Field(default=False, description="The final rows are in PostgreSQL (jobs, job_tests)")
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = Field(
        default=None, description="metadata.generation of the spec the operator last acted on")
    # Tracing (docs/tracing.md): set at admission when the operator traces, as a TestRun's.
    traceId: str | None = Field(default=None, description="The job's OpenTelemetry trace id (32 hex digits)")
    traceParent: str | None = Field(
        default=None, description="W3C traceparent of the job's root span: a restarted operator continues the trace"
    )

