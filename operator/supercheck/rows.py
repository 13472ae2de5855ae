"""The rows a run owes PostgreSQL's ``runs`` table: one per attempt, provisional while it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supercheck.models import Phase, TestRunStatus
from supercheck.transitions import current_attempt
from supercheck.vocabulary import LABEL_SCHEDULE, RUNSCHEDULE_KIND


@dataclass
class Row:
    """One line of the ``runs`` table: a TestRun attempt (attempt 0: the run never got a pod)."""

    namespace: str
    name: str
    uid: str
    attempt: int
    type: str
    phase: str
    final: bool
    priority: int = 0
    reason: str | None = None
    message: str | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    pod_name: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    summary: dict[str, Any] | None = None
    k6: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    schedule: str | None = None  # the RunSchedule that created the run (schedule_of)
    trace_id: str | None = None  # the run's OpenTelemetry trace (status.traceId; docs/tracing.md)


def schedule_of(meta: Mapping[str, Any]) -> str | None:
    """The RunSchedule that created the run: its controller's name (the whole name), else the run's
    ``supercheck.io/schedule`` label (a long name's label is cut and hashed); None for a run made otherwise."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == RUNSCHEDULE_KIND and ref.get("name"):
            return str(ref["name"])
    label = (meta.get("labels") or {}).get(LABEL_SCHEDULE)
    return str(label) if label else None


def rows_to_record(body: Mapping[str, Any], status: TestRunStatus) -> list[Row]:
    """Final rows owed to PostgreSQL: every ended attempt not yet in ``status.recorded``."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    base = dict(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], type=spec.get("type", ""),
                priority=int(spec.get("priority") or 0), labels=dict(meta.get("labels") or {}),
                queued_at=status.queuedAt, schedule=schedule_of(meta), trace_id=status.traceId)
    rows: list[Row] = []
    phase = status.phase
    terminal = phase is not None and phase.terminal
    if phase is not None and terminal and status.attempts == 0 and 0 not in status.recorded:
        rows.append(Row(attempt=0, phase=phase.value, final=True, reason=status.reason,
                        message=status.message,
                        failure_class=status.failureClass.value if status.failureClass else None,
                        completed_at=status.completedAt, **base))
    for h in status.attemptHistory:
        if h.attempt in status.recorded or not h.completedAt:
            continue
        last = h.attempt == status.attempts
        if last and not terminal:
            continue
        row = Row(attempt=h.attempt, phase=h.phase or "Error", final=True,
                  failure_class=h.failureClass.value if h.failureClass else None,
                  exit_code=h.exitCode, message=h.message, pod_name=h.podName, started_at=h.startedAt,
                  completed_at=h.completedAt, **base)
        if last and phase is not None:
            row.phase = phase.value
            row.reason = status.reason
            row.message = status.message
            row.summary = status.summary.model_dump(mode="json") if status.summary else None
            row.k6 = status.k6.model_dump(mode="json") if status.k6 else None
            row.artifacts = status.artifacts.model_dump(mode="json") if status.artifacts else None
        rows.append(row)
    return rows


def start_row(body: Mapping[str, Any], status: TestRunStatus) -> Row:
    """A provisional row when an attempt starts running (a final row later replaces it)."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    rec = current_attempt(status)
    return Row(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], attempt=status.attempts,
               type=spec.get("type", ""), phase=Phase.RUNNING.value, final=False,
               priority=int(spec.get("priority") or 0), pod_name=status.podName, queued_at=status.queuedAt,
               started_at=(rec.startedAt if rec else None) or status.startedAt,
               labels=dict(meta.get("labels") or {}), schedule=schedule_of(meta), trace_id=status.traceId)
