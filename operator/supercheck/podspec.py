"""The runner's Kubernetes objects, built by pure functions over plain data.

One ConfigMap per TestRun holds the script and its files (a snapshot taken at admission, owned
by the TestRun; :mod:`supercheck.scriptfiles` says where each file goes); one Pod per attempt
runs ``supercheck-runner`` with the contract's environment (:meth:`RunnerConfig.to_env`), and
one Secret per pod holds that pod's upload grant (:func:`upload_secret`): no S3 key reaches a pod.
Nothing here talks to the API server, so every field is unit-tested (the style of
k6-operator's ``pkg/resources/jobs``).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from supercheck.config import Settings
from supercheck.models import API_VERSION, DEFAULT_TEST_TIMEOUT_SECONDS, EnvFromSource, EnvVar, TestRunSpec
from supercheck.quantity import parse_quantity
from supercheck.scriptfiles import Layout, layout, script_name
from supercheck.vocabulary import (
    GROUP,
    JOBRUN_KIND,
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_JOBRUN,
    LABEL_JOBRUN_UID,
    LABEL_MANAGED_BY,
    LABEL_MONITOR,
    LABEL_SHARD,
    LABEL_TESTRUN,
    LABEL_TESTRUN_UID,
    LABEL_TYPE,
    MANAGER,
    TESTRUN_KIND,
)
from supercheck_contract import (
    BUCKETS,
    TERMINATION_MESSAGE_PATH,
    UPLOAD_GRANT_ENV,
    UPLOAD_GRANT_PATH,
    RunnerConfig,
    UploadGrant,
    artifact_prefix,
)
from supercheck_contract.reserved import UPLOAD_SECRET_SUFFIX

CONTAINER_NAME = "runner"
SCRIPT_DIR = "/supercheck/script"
WORK_DIR = "/tmp/supercheck"
# The container starts in the emptyDir itself, not in WORK_DIR: a runtime creates a missing
# workingDir as root with mode 0755 (runc), which the runner's non-root user could not write;
# the runner makes WORK_DIR itself, as its own user (docs/security.md, "The local environment").
POD_WORKING_DIR = "/tmp"
MAX_NAME = 63
UPLOAD_VOLUME = "upload-grant"
GRANT_DIR, GRANT_FILE = posixpath.split(UPLOAD_GRANT_PATH)
# A grant outlives its pod's deadline by this much: the deadline counts from the pod's start, and
# a pod may wait this long to be scheduled and pull its image before it starts.
GRANT_EXPIRY_MARGIN_SECONDS = 600


@dataclass(frozen=True)
class RunRef:
    """The identity of a TestRun (or a JobRun), as the objects it owns need it."""

    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    kind: str = TESTRUN_KIND

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], dict(meta.get("labels") or {}),
                   str(body.get("kind") or TESTRUN_KIND))


@dataclass(frozen=True)
class ResourceSet:
    """Limits of the runner container (requests are equal: the pod gets what it is promised)."""

    cpu: str
    memory: str
    ephemeral_storage: str

    def as_k8s(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral_storage}


class ResourceBoundsError(ValueError):
    """A TestRun asks for more than the operator is configured to give."""


# A TestRun's video when its spec names none: Playwright's on-first-retry. A failing test is
# retried once by default (PLAYWRIGHT_RETRIES) and its retry is filmed, and the failure's own trace
# (retain-on-failure) already holds its screencast and DOM snapshots; recording every first try
# (retain-on-failure) keeps an ffmpeg per test running: about 80 MiB PSS, a one-test run's tree
# ~610 MiB with it and ~530 without (hack/bench_runner.py).
TESTRUN_VIDEO = "on-first-retry"


def bounded_name(base: str, suffix: str, limit: int = MAX_NAME) -> str:
    """``<base><suffix>`` within ``limit`` characters; a long base is cut and made unique by a hash."""
    name = f"{base}{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{base[:keep].rstrip('-.')}-{digest}{suffix}"


def pod_name(run_name: str, attempt: int) -> str:
    """Deterministic per attempt: creating it twice is AlreadyExists, never a second pod."""
    return bounded_name(run_name, f"-a{attempt}")


def configmap_name(run_name: str) -> str:
    return bounded_name(run_name, "-script")


def resolve_resources(spec: TestRunSpec, settings: Settings) -> ResourceSet:
    """The run's limits: its own request or the configured default, never above the configured maximum."""
    asked = spec.resources
    chosen = ResourceSet(
        cpu=(asked and asked.cpu) or settings.runner_default_cpu,
        memory=(asked and asked.memory) or settings.default_memory,
        ephemeral_storage=(asked and asked.ephemeralStorage) or settings.runner_default_ephemeral_storage,
    )
    problems = []
    for field, value, maximum, setting in (
        ("cpu", chosen.cpu, settings.runner_max_cpu, "RUNNER_MAX_CPU"),
        ("memory", chosen.memory, settings.runner_max_memory, "RUNNER_MAX_MEMORY"),
        ("ephemeralStorage", chosen.ephemeral_storage, settings.runner_max_ephemeral_storage,
         "RUNNER_MAX_EPHEMERAL_STORAGE"),
    ):
        amount = parse_quantity(value)
        if amount <= 0:
            problems.append(f"spec.resources.{field}={value} must be more than 0")
        elif amount > parse_quantity(maximum):
            problems.append(f"spec.resources.{field}={value} is above the operator's maximum {maximum} ({setting})")
    if problems:
        raise ResourceBoundsError("; ".join(problems) + "; ask for less or raise the operator's bounds")
    return chosen


def timeout_seconds(spec: TestRunSpec, settings: Settings) -> int:
    return spec.timeoutSeconds or settings.default_timeout_seconds


def owner_reference(run: RunRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": run.kind,
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _label_value(value: str) -> str:
    value = value[:63]
    return value if _LABEL_VALUE.match(value) else hashlib.sha256(value.encode()).hexdigest()[:16]


def run_labels(run: RunRef, spec: TestRunSpec, attempt: int | None = None,
               shard: str | None = None) -> dict[str, str]:
    """The run's own labels, then ours (ours win: selectors and the ledger repair rely on them).
    A JobRun's objects carry ``supercheck.io/jobrun`` (and its pods their shard) instead of ``testrun``."""
    labels = {k: v for k, v in run.labels.items() if not k.startswith(f"{GROUP}/") and k != LABEL_MANAGED_BY}
    name_label, uid_label = (LABEL_JOBRUN, LABEL_JOBRUN_UID) if run.kind == JOBRUN_KIND else \
        (LABEL_TESTRUN, LABEL_TESTRUN_UID)
    labels.update(
        {
            LABEL_MANAGED_BY: MANAGER,
            LABEL_COMPONENT: "runner",
            name_label: _label_value(run.name),
            uid_label: run.uid,
            LABEL_TYPE: spec.type,
        }
    )
    if attempt is not None:
        labels[LABEL_ATTEMPT] = str(attempt)
    if shard is not None:
        labels[LABEL_SHARD] = shard
    return labels


def script_configmap(run: RunRef, spec: TestRunSpec, data: Mapping[str, str],
                     binary_data: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The script and its files as they were when the run was admitted, under their source keys
    (an inline script under its :func:`supercheck.scriptfiles.script_name`); later edits of a source
    ConfigMap do not leak in."""
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(run.name),
            "namespace": run.namespace,
            "labels": run_labels(run, spec),
            "ownerReferences": [owner_reference(run)],
        },
        "data": dict(data),
    }
    if binary_data:
        cm["binaryData"] = dict(binary_data)
    return cm


def upload_secret_name(pod: str) -> str:
    """The Secret holding pod ``pod``'s upload grant (a pod name has at most 63 characters; a
    Secret's may have 253)."""
    return f"{pod}{UPLOAD_SECRET_SUFFIX}"  # a suffix the CRD refuses in a spec's Secret references


def pod_runner_config(pod: Mapping[str, Any]) -> RunnerConfig:
    """The runner configuration a pod built here carries in its environment (what its grant covers)."""
    env = pod["spec"]["containers"][0]["env"]
    return RunnerConfig.from_env({e["name"]: e["value"] for e in env if "value" in e})


def grant_expiry(pod: Mapping[str, Any], now: datetime) -> datetime:
    """Until when a pod's grant holds: its deadline (activeDeadlineSeconds, from its start) and the
    margin for the time before it starts. A grant is never valid longer than its pod can live."""
    return now + timedelta(seconds=int(pod["spec"]["activeDeadlineSeconds"]) + GRANT_EXPIRY_MARGIN_SECONDS)


def upload_secret(pod: Mapping[str, Any], grant: UploadGrant) -> dict[str, Any]:
    """Pod ``pod``'s grant, mounted by that pod alone at UPLOAD_GRANT_PATH; owned by the run (and
    labelled as the pod is), so deleting the run deletes it, and so does the engine once the pod ended."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": upload_secret_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": dict(meta["labels"]),
            "ownerReferences": [dict(o) for o in meta["ownerReferences"]],
        },
        "type": "Opaque",
        "stringData": {GRANT_FILE: grant.model_dump_json()},
    }


def artifacts_bucket(run: RunRef, spec: TestRunSpec) -> str:
    """Where an attempt's artifacts go: a Monitor's synthetic check (a TestRun labelled
    ``supercheck.io/monitor``) to the monitor bucket, any other run to its type's. The upload grant is
    minted for the bucket of the pod's RunnerConfig, so this one choice decides both."""
    return BUCKETS["monitor"] if LABEL_MONITOR in run.labels else BUCKETS[spec.type]


def runner_config(run: RunRef, spec: TestRunSpec, attempt: int, settings: Settings,
                  files: Layout | None = None) -> RunnerConfig:
    pw = spec.playwright
    files = files or layout(spec, run.name)
    return RunnerConfig(
        type=spec.type,
        # The script in the mounted folder, or the folder itself for a whole suite.
        scriptPath=f"{SCRIPT_DIR}/{files.entry}" if files.entry else SCRIPT_DIR,
        scriptName=script_name(spec, run.name),
        timeoutSeconds=timeout_seconds(spec, settings),
        runName=run.name,
        namespace=run.namespace,
        attempt=attempt,
        bucket=artifacts_bucket(run, spec),
        prefix=artifact_prefix(run.namespace, run.name, run.uid, attempt),
        playwrightRetries=pw.retries if pw and pw.retries is not None else settings.playwright_retries,
        playwrightTrace=pw.trace if pw and pw.trace is not None else settings.playwright_trace,
        playwrightVideo=pw.video if pw and pw.video is not None else TESTRUN_VIDEO,
        playwrightHeadless=pw.headless if pw and pw.headless is not None else settings.playwright_headless,
        playwrightWorkers=pw.workers if pw and pw.workers is not None else settings.max_concurrent_executions,
        playwrightTestTimeoutSeconds=(pw.testTimeoutSeconds if pw and pw.testTimeoutSeconds
                                      else DEFAULT_TEST_TIMEOUT_SECONDS),
        playwrightUse=pw.use() if pw else {},
        k6Args=list(spec.k6.args) if spec.k6 else [],
        workDir=WORK_DIR,
        uploadWindowSeconds=settings.runner_upload_window_seconds,
        maxArtifactBytes=settings.runner_max_artifact_bytes,
        maxArtifactFiles=settings.runner_max_artifact_files,
    )


def _env_list(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def container_env(run: RunRef, spec: TestRunSpec, attempt: int, settings: Settings,
                  files: Layout | None = None) -> list[dict[str, Any]]:
    """The user's env first; the contract's variables after it, so a user cannot shadow them."""
    env: list[dict[str, Any]] = [e.model_dump(exclude_none=True) for e in spec.env]
    env += _base_env(settings)
    env += _env_list(runner_config(run, spec, attempt, settings, files).to_env())
    return env


def _base_env(settings: Settings) -> list[dict[str, Any]]:
    """HOME, the runner's extra env and where its upload grant is. No S3 key nor endpoint: the
    grant holds the presigned URLs, which are all the runner reaches S3 with."""
    return _env_list({"HOME": WORK_DIR, **settings.runner_extra_env, UPLOAD_GRANT_ENV: UPLOAD_GRANT_PATH})


def active_deadline_seconds(spec: TestRunSpec, settings: Settings) -> int:
    """The pod's own deadline, a backstop behind the runner's timers: the test stops inside
    ``timeoutSeconds``, uploads are retried for at most the upload window after that, and the
    margin covers the pod's start and the runner's last S3 requests (docs/runner.md, "Timeout")."""
    return timeout_seconds(spec, settings) + settings.runner_upload_window_seconds + \
        settings.runner_deadline_margin_seconds


@dataclass(frozen=True)
class PodShape:
    """What a JobRun's pod sets differently from a TestRun's attempt pod (supercheck.jobpods)."""

    name: str
    shard: str  # the shard label: "1".."N", or "merge"
    config: RunnerConfig
    deadline_seconds: int
    extra_env: tuple[Mapping[str, Any], ...] = ()  # after the contract's variables (git credentials)
    script_volume: bool = True  # False: the suite comes from git, no ConfigMap is mounted
    user_env: bool = True  # False: the merge pod runs no user code and gets no user env


def runner_pod(run: RunRef, spec: TestRunSpec, attempt: int, settings: Settings,
               resources: ResourceSet, files: Layout | None = None, shape: PodShape | None = None,
               trace_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``files``: where the script's files go; computed from the spec unless the run is a whole
    ConfigMap, whose layout needs the snapshot's keys (:func:`supercheck.scriptfiles.layout`).
    ``shape``: a JobRun's shard or merge pod (its name, runner config, deadline). The pod mounts
    its own upload grant, the Secret :func:`upload_secret_name`, which must exist before it starts.
    ``trace_env``: ``TRACEPARENT`` and the OTLP settings when the operator traces (after the user's
    env, which may not set them: reserved names)."""
    files = files or layout(spec, run.name)
    timeout = shape.config.timeoutSeconds if shape else timeout_seconds(spec, settings)
    limits = resources.as_k8s()
    name = shape.name if shape else pod_name(run.name, attempt)
    if shape is None:
        env = container_env(run, spec, attempt, settings, files)
    else:
        env = ([e.model_dump(exclude_none=True) for e in spec.env] if shape.user_env else []) + \
            _base_env(settings) + _env_list(shape.config.to_env()) + [dict(e) for e in shape.extra_env]
    env += _env_list(dict(trace_env or {}))
    # The grant is readable by the test too (one user in the container): it is worth this attempt's
    # own prefix until the pod's deadline, nothing more. No S3 credential is in the pod.
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": resources.ephemeral_storage}},
                                     {"name": UPLOAD_VOLUME, "secret": {"secretName": upload_secret_name(name)}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"},
                                    {"name": UPLOAD_VOLUME, "mountPath": GRANT_DIR, "readOnly": True}]
    if shape is None or shape.script_volume:
        volumes.insert(0, {"name": "script", "configMap": {"name": configmap_name(run.name), "items": [
            {"key": f.key, "path": f.path} for f in files.files]}})
        mounts.insert(0, {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True})
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": run.namespace,
            "labels": run_labels(run, spec, attempt, shape.shard if shape else None),
            "annotations": {f"{GROUP}/timeout-seconds": str(timeout)},
            "ownerReferences": [owner_reference(run)],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": shape.deadline_seconds if shape else active_deadline_seconds(spec, settings),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 10,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": settings.runner_run_as_user,
                "runAsGroup": settings.runner_run_as_user,
                "fsGroup": settings.runner_run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": CONTAINER_NAME,
                    "image": settings.runner_image,
                    "imagePullPolicy": settings.runner_image_pull_policy,
                    "command": ["supercheck-runner"],
                    "workingDir": POD_WORKING_DIR,
                    "env": env,
                    "envFrom": [e.model_dump(exclude_none=True) for e in spec.envFrom]
                    if shape is None or shape.user_env else [],
                    "resources": {"limits": dict(limits), "requests": dict(limits)},
                    "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }
    if settings.runner_runtime_class_name:  # a sandboxed runtime (gVisor, Kata) for the user's script
        pod["spec"]["runtimeClassName"] = settings.runner_runtime_class_name
    if settings.runner_image_pull_secrets:  # a private registry: the Secrets are the namespace's own
        pod["spec"]["imagePullSecrets"] = [{"name": n} for n in settings.runner_image_pull_secrets]
    return pod


def required_references(spec: TestRunSpec) -> list[tuple[str, str, str | None, str]]:
    """The Secrets and ConfigMaps a run needs before it may start: (kind, name, key, where).

    Optional references are left out: Kubernetes starts the container without them.
    """
    refs: list[tuple[str, str, str | None, str]] = []
    if spec.script.configMapRef:
        ref = spec.script.configMapRef
        refs.append(("ConfigMap", ref.name, ref.key, "spec.script.configMapRef"))
        refs += [("ConfigMap", ref.name, f.key, f"spec.script.configMapRef.files[{i}]")
                 for i, f in enumerate(ref.files)]
    return refs + env_references(spec.env, spec.envFrom)


def env_references(env: Sequence[EnvVar], env_from: Sequence[EnvFromSource]) -> list[tuple[str, str, str | None, str]]:
    """The Secrets and ConfigMaps (and keys) a run's ``env`` and ``envFrom`` need, optional ones left out."""
    refs: list[tuple[str, str, str | None, str]] = []
    for i, e in enumerate(env):
        src = e.valueFrom
        if src and src.secretKeyRef and not src.secretKeyRef.optional:
            refs.append(("Secret", src.secretKeyRef.name, src.secretKeyRef.key,
                         f"spec.env[{i}].valueFrom.secretKeyRef"))
        if src and src.configMapKeyRef and not src.configMapKeyRef.optional:
            refs.append(("ConfigMap", src.configMapKeyRef.name, src.configMapKeyRef.key,
                         f"spec.env[{i}].valueFrom.configMapKeyRef"))
    for i, source in enumerate(env_from):
        if source.secretRef and not source.secretRef.optional:
            refs.append(("Secret", source.secretRef.name, None, f"spec.envFrom[{i}].secretRef"))
        if source.configMapRef and not source.configMapRef.optional:
            refs.append(("ConfigMap", source.configMapRef.name, None, f"spec.envFrom[{i}].configMapRef"))
    return refs
