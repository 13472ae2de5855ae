"""The operator's words, defined once: condition types, reasons, Event reasons, slot and pod
states, label keys, Redis key names and the promotions channel.

Python uses these members; the ledger's Lua scripts receive the Redis names from
:func:`supercheck.ledger.lua_preamble`, built from this module, so no name is written twice.
The spec and status *shapes* are in :mod:`supercheck.models`.
"""

from __future__ import annotations

import enum

GROUP = "supercheck.io"

# The run kinds, and their plurals in the API.
TESTRUN_KIND, TESTRUNS = "TestRun", "testruns"
JOBRUN_KIND, JOBRUNS = "JobRun", "jobruns"
PLURALS = {TESTRUN_KIND: TESTRUNS, JOBRUN_KIND: JOBRUNS}
# The kinds that make runs: a RunSchedule (on a cron) and a Monitor (checks; synthetic ones as TestRuns).
RUNSCHEDULE_KIND, RUNSCHEDULES = "RunSchedule", "runschedules"
MONITOR_KIND, MONITORS = "Monitor", "monitors"

# ---------------------------------------------------------------- labels on the objects a run owns

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "supercheck"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_TESTRUN = f"{GROUP}/testrun"
LABEL_TESTRUN_UID = f"{GROUP}/testrun-uid"
LABEL_JOBRUN = f"{GROUP}/jobrun"
LABEL_JOBRUN_UID = f"{GROUP}/jobrun-uid"
LABEL_SHARD = f"{GROUP}/shard"  # a JobRun's shard (1-based); "merge" for its report merge pod
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_TYPE = f"{GROUP}/type"
LABEL_SCHEDULE = f"{GROUP}/schedule"  # on the runs a RunSchedule creates: its name
LABEL_MONITOR = f"{GROUP}/monitor"  # on the TestRuns of a synthetic Monitor: its name
ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"  # the due time (RFC 3339, UTC) a run was created for
RUNNER_SELECTOR = {LABEL_MANAGED_BY: MANAGER}


# ---------------------------------------------------------------- status


class ConditionType(enum.StrEnum):
    ADMITTED = "Admitted"
    REFERENCES_RESOLVED = "ReferencesResolved"
    RESULTS_RECORDED = "ResultsRecorded"
    NOTIFIED = "Notified"  # spec.notify: every webhook told of the end (False: one could not be)
    # The lifecycle, for `kubectl wait`, kstatus (Flux) and Argo CD (supercheck.transitions.lifecycle_conditions)
    COMPLETED = "Completed"  # True once terminal, whatever the end
    SUCCEEDED = "Succeeded"  # True: Passed; False: any other end; Unknown before
    READY = "Ready"  # True: Passed; kstatus reads False as InProgress
    STALLED = "Stalled"  # True: ended other than Passed; kstatus reads it as Failed


class Reason(enum.StrEnum):
    """``status.reason`` and condition reasons."""

    # admission
    QUEUED = "Queued"
    CAPACITY_EXCEEDED = "CapacityExceeded"
    NAMESPACE_LIMIT_EXCEEDED = "NamespaceLimitExceeded"  # the namespace's queued share, or its max timeout
    SLOT_GRANTED = "SlotGranted"
    LEDGER_UNAVAILABLE = "LedgerUnavailable"
    # refused before any pod
    INVALID_SPEC = "InvalidSpec"
    RESOURCES_OUT_OF_BOUNDS = "ResourcesOutOfBounds"
    CONFIGMAP_NOT_FOUND = "ConfigMapNotFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    KEY_NOT_FOUND = "KeyNotFound"
    RESOLVED = "Resolved"  # ReferencesResolved True: every referenced ConfigMap and Secret exists
    # the run's script snapshot (a ConfigMap of its own) cannot be taken or is not the run's own
    SNAPSHOT_REJECTED = "SnapshotRejected"  # too large for a ConfigMap, or refused by the API server
    SNAPSHOT_CONFLICT = "SnapshotConflict"  # a ConfigMap of the snapshot's name is someone else's
    # the API server refused a runner pod (4xx: Invalid, Forbidden by a ResourceQuota or a policy)
    POD_REJECTED = "PodRejected"
    # attempts
    STARTING = "Starting"
    RUNNING = "Running"
    RETRYING = "Retrying"
    RETRY_BACKOFF = "RetryBackoff"
    # Uploading: the test ended, its files are not in S3 yet (the runner's progress line says why)
    STORAGE_UNAVAILABLE = "StorageUnavailable"  # S3 cannot be reached; the runner retries within its window
    STORAGE_BACK = "StorageBack"  # S3 answers again; the remaining files are going up
    UPLOADING = "Uploading"  # any other reason a (newer) runner gives
    # how a run ended (see supercheck.retry.TERMINAL_FOR)
    TESTS_PASSED = "TestsPassed"
    TESTS_FAILED = "TestsFailed"
    INVALID_SCRIPT = "InvalidScript"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    BROWSER_CRASHED = "BrowserCrashed"
    INFRASTRUCTURE_ERROR = "InfrastructureError"
    NETWORK_ERROR = "NetworkError"
    POD_LOST = "PodLost"
    CANCELLED = "Cancelled"
    # results
    RECORDED = "Recorded"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    # notifications
    NOTIFIED = "Notified"
    NOTIFICATION_FAILED = "NotificationFailed"


def not_found_reason(kind: str) -> Reason:
    """The reason for a missing referenced object of this kind (ConfigMap or Secret)."""
    return Reason.CONFIGMAP_NOT_FOUND if kind == "ConfigMap" else Reason.SECRET_NOT_FOUND


class EventReason(enum.StrEnum):
    """Reasons of the Kubernetes Events a run emits (the end of a run uses its :class:`Reason`)."""

    QUEUED = "Queued"
    CAPACITY_EXCEEDED = "CapacityExceeded"
    NAMESPACE_LIMIT_EXCEEDED = "NamespaceLimitExceeded"
    PRIORITY_CLAMPED = "PriorityClamped"  # spec.priority above the namespace's maximum: lowered to it
    DISPATCHED = "Dispatched"
    RUNNING = "Running"
    RETRYING = "Retrying"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    STORAGE_BACK = "StorageBack"
    CANCELLED = "Cancelled"
    LEDGER_UNAVAILABLE = "LedgerUnavailable"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    NOTIFIED = "Notified"
    NOTIFICATION_FAILED = "NotificationFailed"
    # a Monitor's state changes (supercheck.engine.monitors)
    MONITOR_DOWN = "MonitorDown"
    MONITOR_UP = "MonitorUp"


class ScheduleReason(enum.StrEnum):
    """A RunSchedule's ``status.reason``, and the reasons of the Events it posts."""

    WAITING = "Waiting"  # no run yet (or again, after a suspension or an invalid schedule): the next is due later
    RUN_CREATED = "RunCreated"
    RUN_SKIPPED = "RunSkipped"  # concurrencyPolicy Forbid with a run still active
    RUN_REPLACED = "RunReplaced"  # concurrencyPolicy Replace: the active runs deleted, a new one created
    MISSED_SCHEDULE = "MissedSchedule"  # a missed time later than startingDeadlineSeconds: not started
    SUSPENDED = "Suspended"
    INVALID_SCHEDULE = "InvalidSchedule"  # spec.schedule or spec.timeZone cannot be evaluated: no runs
    CREATE_REFUSED = "CreateRefused"  # the API server refused the run (a quota, a policy): tried again later
    RUN_NAME_TAKEN = "RunNameTaken"  # a run of the due time's name exists and is not this schedule's


class SlotState(enum.StrEnum):
    """What the capacity ledger holds for a run (``status.slot``)."""

    RUNNING = "running"
    QUEUED = "queued"


class AdmitState(enum.StrEnum):
    """The ledger's answer to an admission."""

    RUNNING = "running"
    QUEUED = "queued"
    REJECTED = "rejected"
    RELEASED = "released"  # the run ended already; it never comes back


class CapacityLimit(enum.StrEnum):
    """The ledger's word for what a queued run waits for, or which limit rejected a run."""

    NONE = ""
    RUNNING = "running"  # the global running capacity (RUNNING_CAPACITY)
    QUEUED = "queued"  # the global queue (QUEUED_CAPACITY)
    NAMESPACE_RUNNING = "namespace-running"  # the namespace's running share
    NAMESPACE_QUEUED = "namespace-queued"  # the namespace's queued share


class PodStateKind(enum.StrEnum):
    """What an attempt's pod says (:func:`supercheck.pods.observe`)."""

    ABSENT = "absent"
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"


# ---------------------------------------------------------------- Redis

REDIS_RUNNING_KEY = "supercheck:capacity:running"  # the contract's counters
REDIS_QUEUED_KEY = "supercheck:capacity:queued"
LEDGER_PREFIX = "supercheck:ledger:"
# fair share: namespace -> running slots its runs hold / its runs queued (no field for a namespace at 0)
REDIS_NAMESPACE_RUNNING_KEY = LEDGER_PREFIX + "namespace-running"
REDIS_NAMESPACE_QUEUED_KEY = LEDGER_PREFIX + "namespace-queued"
PROMOTIONS_CHANNEL = LEDGER_PREFIX + "promoted"  # pub/sub: uids promoted to a running slot
