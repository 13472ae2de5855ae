"""The runner pod as the operator sees it, and what it says about its attempt.

The outcome table (docs/operator.md) is recognised here, from the pod; what happens next is
:mod:`supercheck.retry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supercheck.vocabulary import (
    JOBRUN_KIND,
    LABEL_ATTEMPT,
    LABEL_JOBRUN_UID,
    LABEL_SHARD,
    LABEL_TESTRUN_UID,
    TESTRUN_KIND,
    PodStateKind,
)
from supercheck_contract import FailureClass, RunnerResult, classify_exit, decode_termination_message

# Container waiting reasons that will not fix themselves in the attempt's lifetime.
CONFIG_WAIT_REASONS = {
    "CreateContainerConfigError": FailureClass.VALIDATION,
    "InvalidImageName": FailureClass.INFRASTRUCTURE,
}
IMAGE_WAIT_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CreateContainerError"}


@dataclass(frozen=True)
class ContainerView:
    state: str  # waiting | running | terminated
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    phase: str
    owner_uid: str | None
    attempt: int | None
    deleting: bool = False
    reason: str | None = None
    message: str | None = None
    container: ContainerView | None = None
    created_at: str | None = None
    shard: str | None = None  # a JobRun's pod: its shard ("1".."N") or "merge"

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or (
            self.container is not None and self.container.state == "terminated"
        )

    @property
    def live(self) -> bool:
        """Still holds (or may still hold) a process on a node: it counts against capacity."""
        return not self.terminated


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") in (TESTRUN_KIND, JOBRUN_KIND)]
    labels = meta.get("labels") or {}
    container = None
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for kind in ("terminated", "running", "waiting"):
            if state.get(kind) is not None:
                s = state[kind]
                container = ContainerView(
                    state=kind,
                    reason=s.get("reason"),
                    message=s.get("message"),
                    exit_code=s.get("exitCode"),
                    started_at=s.get("startedAt"),
                    finished_at=s.get("finishedAt"),
                )
                break
        break
    attempt = labels.get(LABEL_ATTEMPT)
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        owner_uid=owners[0].get("uid") if owners else (labels.get(LABEL_TESTRUN_UID) or labels.get(LABEL_JOBRUN_UID)),
        shard=labels.get(LABEL_SHARD),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        deleting=bool(meta.get("deletionTimestamp")),
        reason=status.get("reason"),
        message=status.get("message"),
        container=container,
        created_at=meta.get("creationTimestamp"),
    )


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended."""

    failure: FailureClass
    exit_code: int | None
    message: str
    result: RunnerResult | None = None


@dataclass(frozen=True)
class PodState:
    kind: PodStateKind
    outcome: AttemptOutcome | None = None


def observe(pod: PodView | None, *, seen_running: bool) -> PodState:
    """What the attempt's pod tells: still coming, running, or finished with an outcome.

    ``seen_running``: the operator saw this attempt run. A pod that vanished after it ran
    was lost; one that vanished before it was ever seen is simply (re)created.
    """
    if pod is None:
        if seen_running:
            return PodState(PodStateKind.FINISHED, AttemptOutcome(FailureClass.POD_LOST, None,
                                                       "the runner pod disappeared while the test ran"))
        return PodState(PodStateKind.ABSENT)
    c = pod.container
    if pod.phase == "Failed" and pod.reason == "DeadlineExceeded":
        result = _result_of(c)
        return PodState(PodStateKind.FINISHED, AttemptOutcome(
            FailureClass.TIMEOUT, c.exit_code if c else None,
            "the runner pod exceeded its deadline (timeoutSeconds plus the upload margin)", result))
    if pod.phase == "Failed" and pod.reason == "Evicted":
        return PodState(PodStateKind.FINISHED, AttemptOutcome(FailureClass.POD_LOST, None,
                                                   f"the runner pod was evicted: {pod.message or ''}".strip()))
    if c is not None and c.state == "terminated":
        outcome = classify_container(c)
        if pod.deleting and outcome.failure == FailureClass.INFRASTRUCTURE:
            # Deleted behind our back while the test ran: the runner, stopped by the kubelet's
            # SIGTERM, says "infrastructure"; the pod's deletion says why. Its partial result
            # (artifacts, counts) stays with the attempt.
            outcome = AttemptOutcome(FailureClass.POD_LOST, outcome.exit_code,
                                     f"the runner pod was deleted while the test ran: {outcome.message}",
                                     outcome.result)
        return PodState(PodStateKind.FINISHED, outcome)
    if pod.phase in ("Succeeded", "Failed"):
        return PodState(PodStateKind.FINISHED, AttemptOutcome(FailureClass.POD_LOST, None,
                                                   f"the runner pod ended {pod.phase} without a container result"))
    if c is not None and c.state == "waiting":
        if c.reason in CONFIG_WAIT_REASONS:
            return PodState(PodStateKind.FINISHED, AttemptOutcome(CONFIG_WAIT_REASONS[c.reason], None,
                                                       f"{c.reason}: {c.message or ''}".strip()))
        if c.reason in IMAGE_WAIT_REASONS:
            return PodState(PodStateKind.FINISHED, AttemptOutcome(FailureClass.INFRASTRUCTURE, None,
                                                       f"{c.reason}: {c.message or ''}".strip()))
    if pod.deleting:
        # Being deleted behind our back: it still runs until the node confirms; wait for it to go.
        return PodState(PodStateKind.RUNNING if (c and c.state == "running") else PodStateKind.PENDING)
    if pod.phase == "Running" or (c is not None and c.state == "running"):
        return PodState(PodStateKind.RUNNING)
    return PodState(PodStateKind.PENDING)


def _result_of(c: ContainerView | None) -> RunnerResult | None:
    return decode_termination_message(c.message) if c is not None else None


def classify_container(c: ContainerView) -> AttemptOutcome:
    """The runner's own verdict when it spoke; otherwise the exit code and the kubelet's reason."""
    result = _result_of(c)
    if c.reason == "OOMKilled" or c.exit_code == 137:
        message = ("the runner container was killed for exceeding its memory limit (OOMKilled)"
                   if c.reason == "OOMKilled" else
                   f"the runner container was killed (exit 137, reason {c.reason}); treated as out of memory")
        return AttemptOutcome(FailureClass.OOM, c.exit_code, message, result)
    if result is not None:
        return AttemptOutcome(result.failureClass, c.exit_code, result.message, result)
    failure = classify_exit(c.exit_code, c.reason)
    tail = (c.message or "").strip()
    message = f"the runner exited with code {c.exit_code} without a result"
    if tail:
        message += f"; last output: {tail[-500:]}"
    return AttemptOutcome(failure, c.exit_code, message)

