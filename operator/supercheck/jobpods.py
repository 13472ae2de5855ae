"""A JobRun's runner objects, built by pure functions: the suite's files and tests, its snapshot
ConfigMap, one pod per shard attempt and the report merge pod.

A shard pod is a TestRun pod in every respect the user controls (env, envFrom, resources, the
Playwright and k6 options, the security context): :func:`shard_spec` views the job as such a
TestRun, and :func:`supercheck.podspec.runner_pod` builds the pod with the shard's own
:class:`~supercheck.podspec.PodShape` (name, runner config, deadline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supercheck.config import Settings
from supercheck.jobmodels import JobRunSpec
from supercheck.models import ConfigMapKeyRef, ScriptSource, TestRunSpec
from supercheck.podspec import (
    SCRIPT_DIR,
    PodShape,
    ResourceSet,
    RunRef,
    bounded_name,
    configmap_name,
    env_references,
    resolve_resources,
    runner_config,
    runner_pod,
    script_configmap,
)
from supercheck.scriptfiles import Layout, ScriptFile
from supercheck_contract import BUCKETS, blob_report_key, is_test_file, job_prefix, shard_prefix

# A test of spec.tests[] is the file <name><suffix> (a name that is already a test file stays as it is).
TEST_SUFFIX = {"playwright": ".spec.ts", "k6": ".test.js"}
MERGE_TIMEOUT_SECONDS = 300
MERGE_SHARD = "merge"
GIT_USERNAME_KEY, GIT_PASSWORD_KEY = "username", "password"


@dataclass(frozen=True)
class Test:
    name: str  # the user's name (spec.tests[].name), or the file's path in the suite
    file: str  # its path in the suite's folder


@dataclass(frozen=True)
class Suite:
    """The job's files (key in the snapshot -> path in the pod's folder) and its tests, sorted by file."""

    layout: Layout
    tests: tuple[Test, ...]


def bucket(spec: JobRunSpec) -> str:
    return BUCKETS["playwright-job"] if spec.type == "playwright" else BUCKETS["k6"]


def test_file(name: str, test_type: str) -> str:
    return name if is_test_file(name, test_type) else name + TEST_SUFFIX[test_type]


def suite_from_tests(spec: JobRunSpec) -> Suite:
    """spec.tests[]: each test is the file named after it."""
    tests = sorted((Test(t.name, test_file(t.name, spec.type)) for t in spec.tests or []), key=lambda t: t.file)
    return Suite(Layout(tuple(ScriptFile(t.file, t.file) for t in tests), None), tuple(tests))


def suite_from_keys(spec: JobRunSpec, keys: Sequence[str]) -> Suite:
    """testsFrom.configMapRef: every key lands at its own name; the test files among them are the tests."""
    files = sorted(keys)
    tests = tuple(Test(k, k) for k in files if is_test_file(k, spec.type))
    return Suite(Layout(tuple(ScriptFile(k, k) for k in files), None), tests)


def shard_count(spec: JobRunSpec, running_capacity: int, tests: int | None) -> int:
    """The runner pods the job asks for at once: its parallelism, never more than the capacity nor
    (when the tests are known) than the tests."""
    wanted = min(spec.parallelism, max(1, running_capacity))
    return max(1, min(wanted, tests)) if tests else wanted


def shard_spec(spec: JobRunSpec, ref: RunRef) -> TestRunSpec:
    """The job as the TestRun each of its pods resembles: the whole snapshot ConfigMap as the suite."""
    return TestRunSpec.model_construct(
        type=spec.type,
        script=ScriptSource.model_construct(inline=None, configMapRef=ConfigMapKeyRef.model_construct(
            name=configmap_name(ref.name), key=None, path=None, files=[])),
        priority=spec.priority, timeoutSeconds=spec.timeoutSeconds, env=spec.env, envFrom=spec.envFrom,
        resources=spec.resources, playwright=spec.playwright, k6=spec.k6, ttlSecondsAfterFinished=None, notify=[])


def resources(spec: JobRunSpec, ref: RunRef, settings: Settings) -> ResourceSet:
    """Each pod's limits (raises :class:`supercheck.podspec.ResourceBoundsError`)."""
    return resolve_resources(shard_spec(spec, ref), settings)


def job_timeout_seconds(spec: JobRunSpec, settings: Settings) -> int:
    return spec.timeoutSeconds or max(1, settings.job_execution_timeout_ms // 1000)


def required_references(spec: JobRunSpec) -> list[tuple[str, str, str | None, str]]:
    """The ConfigMaps and Secrets the job needs before it starts: (kind, name, key, where)."""
    refs: list[tuple[str, str, str | None, str]] = []
    for i, t in enumerate(spec.tests or []):
        if t.script.configMapRef is not None:
            refs.append(("ConfigMap", t.script.configMapRef.name, t.script.configMapRef.key,
                         f"spec.tests[{i}].script.configMapRef"))
    src = spec.testsFrom
    if src is not None and src.configMapRef is not None:
        refs.append(("ConfigMap", src.configMapRef.name, None, "spec.testsFrom.configMapRef"))
    if src is not None and src.git is not None and src.git.credentials is not None:
        refs.append(("Secret", src.git.credentials.secretRef.name, GIT_PASSWORD_KEY,
                     "spec.testsFrom.git.credentials.secretRef"))
    return refs + env_references(spec.env, spec.envFrom)


def snapshot_configmap(ref: RunRef, spec: JobRunSpec, data: Mapping[str, str],
                       binary_data: Mapping[str, str] | None = None) -> dict[str, Any]:
    return script_configmap(ref, shard_spec(spec, ref), data, binary_data)


def job_video(spec: JobRunSpec) -> str:
    """A job records no videos unless asked: a suite's passing tests would each be recorded only to be
    thrown away (the spec's advice: limit video capture), and a failing test's trace already holds its
    screenshots and DOM snapshots. A TestRun films its failing tests' retries (podspec.TESTRUN_VIDEO)."""
    pw = spec.playwright
    return pw.video if pw is not None and pw.video is not None else "off"


def shard_pod_name(job: str, shard: int, attempt: int) -> str:
    return bounded_name(job, f"-s{shard}-a{attempt}")


def merge_pod_name(job: str, attempt: int) -> str:
    return bounded_name(job, f"-merge-a{attempt}")


def _deadline(timeout: int, settings: Settings) -> int:
    return timeout + settings.runner_upload_window_seconds + settings.runner_deadline_margin_seconds


def _git_env(spec: JobRunSpec) -> tuple[dict[str, Any], ...]:
    git = spec.testsFrom.git if spec.testsFrom else None
    if git is None or git.credentials is None:
        return ()
    name = git.credentials.secretRef.name
    return tuple({"name": env, "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": optional}}}
                 for env, key, optional in (("SUPERCHECK_GIT_USERNAME", GIT_USERNAME_KEY, True),
                                            ("SUPERCHECK_GIT_PASSWORD", GIT_PASSWORD_KEY, False)))


def shard_pod(ref: RunRef, spec: JobRunSpec, suite: Suite | None, shard: int, shards: int, attempt: int,
              timeout: int, settings: Settings, limits: ResourceSet,
              trace_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Shard ``shard`` of ``shards``, attempt ``attempt``: the whole suite mounted (or fetched from
    git: ``suite`` None), running its :func:`supercheck_contract.shard_files` within ``timeout`` s.
    ``trace_env``: the pod's part of the job's trace (:func:`supercheck.podspec.runner_pod`)."""
    as_run = shard_spec(spec, ref)
    layout = suite.layout if suite is not None else Layout((), None)
    git = spec.testsFrom.git if spec.testsFrom else None
    config = runner_config(ref, as_run, attempt, settings, layout).model_copy(update={
        "scriptPath": SCRIPT_DIR, "scriptName": "", "timeoutSeconds": timeout, "bucket": bucket(spec),
        "prefix": shard_prefix(ref.namespace, ref.name, ref.uid, shard, attempt),
        "shardIndex": shard, "shardCount": shards,
        "tests": [t.file for t in suite.tests] if suite is not None else [],
        "gitUrl": git.url if git else "", "gitRevision": (git.revision or "") if git else "",
        "gitPath": (git.path or "") if git else "",
        "playwrightVideo": job_video(spec),
    })
    shape = PodShape(name=shard_pod_name(ref.name, shard, attempt), shard=str(shard), config=config,
                     deadline_seconds=_deadline(timeout, settings), extra_env=_git_env(spec),
                     script_volume=suite is not None)
    return runner_pod(ref, as_run, attempt, settings, limits, layout, shape, trace_env)


def merge_reads(shards: Sequence[tuple[int, str]]) -> list[str]:
    """What a merge pod may read: each shard's blob report, (index, prefix of its last attempt) ->
    :func:`supercheck_contract.blob_report_key`. Derived, not reported: the shard's runner names its
    blob report after its index, so the operator needs nothing from the shard to grant exactly it."""
    return [blob_report_key(prefix, index) for index, prefix in shards]


def merge_pod(ref: RunRef, spec: JobRunSpec, shard_prefixes: Sequence[str], attempt: int, settings: Settings,
              limits: ResourceSet, trace_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pod that merges the shards' blob reports into one HTML report and one JUnit XML under the
    job's prefix. It runs no user code: no user env, no suite."""
    as_run = shard_spec(spec, ref)
    config = runner_config(ref, as_run, attempt, settings, Layout((), None)).model_copy(update={
        "scriptPath": SCRIPT_DIR, "scriptName": "", "timeoutSeconds": MERGE_TIMEOUT_SECONDS,
        "bucket": bucket(spec), "prefix": job_prefix(ref.namespace, ref.name, ref.uid),
        "mode": "merge", "mergeFrom": list(shard_prefixes),
    })
    shape = PodShape(name=merge_pod_name(ref.name, attempt), shard=MERGE_SHARD, config=config,
                     deadline_seconds=_deadline(MERGE_TIMEOUT_SECONDS, settings), script_volume=False,
                     user_env=False)
    return runner_pod(ref, as_run, attempt, settings, limits, Layout((), None), shape, trace_env)
