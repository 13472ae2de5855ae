"""The run engine's ports: what it needs from the API server, the capacity ledger, the results
store and the Event recorder, as Protocols with the errors each may raise.

The adapters (:mod:`supercheck.kube`, :mod:`supercheck.ledger`, :mod:`supercheck.store`) implement
them against the real services; the unit tests implement them in memory
(``tests/operator/fakes.py``) and walk every transition of the engine without a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from supercheck.jobrows import JobRow, JobTestRow
from supercheck.rows import Row
from supercheck.vocabulary import AdmitState, CapacityLimit

# ---------------------------------------------------------------- errors the engine handles


class Conflict(Exception):
    """The object changed since it was read (resourceVersion), or is gone: read again, decide again."""


class AlreadyExists(Exception):
    """A create found the object there (our deterministic names make this a no-op, not an error)."""


class ApiUnavailable(Exception):
    """The API server did not answer (5xx, 429, connection): wait and retry."""


class Refused(Exception):
    """The API server refused to create an object (a 4xx other than 404, 409 and 429: 400, 403 of a
    ResourceQuota or an admission policy, 413, 422 Invalid). Sending it again cannot help: the run
    that needs it ends ``Error`` with the API server's message, which ``str()`` gives."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LedgerUnavailable(Exception):
    """Redis cannot be reached; callers wait and retry, they never guess."""


class NeedsRebuild(Exception):
    """The ledger lost its data (Redis restarted empty): rebuild it from the cluster first."""


class StoreUnavailable(Exception):
    """PostgreSQL cannot be reached: the status keeps the truth; the rows are written later."""


# ---------------------------------------------------------------- the capacity ledger's answers

PRIORITY_SPAN = 2**40  # queue score = (1000 - priority) * 2**40 + arrival seq


def queue_score(priority: int, seq: int) -> int:
    return (1000 - priority) * PRIORITY_SPAN + seq


@dataclass(frozen=True)
class Promotion:
    uid: str
    ref: str  # namespace/name


@dataclass(frozen=True)
class AdmitResult:
    state: AdmitState
    seq: int = 0
    position: int = 0
    granted_ms: int = 0
    running: int = 0
    queued: int = 0
    promoted: tuple[Promotion, ...] = ()
    weight: int = 1  # running slots granted (or to be granted) at once: a JobRun's parallelism
    namespace_running: int = 0  # slots the run's namespace holds, and its runs queued (fair share)
    namespace_queued: int = 0
    limit: CapacityLimit = CapacityLimit.NONE  # queued: what it waits for; rejected: the limit that was full


@dataclass(frozen=True)
class ReleaseResult:
    removed: str  # running | queued | none
    promoted: tuple[Promotion, ...] = ()


@dataclass
class Snapshot:
    epoch: str | None
    running_count: int
    queued_count: int
    running: set[str] = field(default_factory=set)
    queue: list[tuple[str, int]] = field(default_factory=list)  # (uid, score), best first
    refs: dict[str, str] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    weights: dict[str, int] = field(default_factory=dict)  # uid -> slots, when more than 1
    namespace_running: dict[str, int] = field(default_factory=dict)  # namespace -> slots held (when > 0)
    namespace_queued: dict[str, int] = field(default_factory=dict)  # namespace -> runs queued (when > 0)


# ---------------------------------------------------------------- the ports

Obj = dict[str, Any]


class Kube(Protocol):
    # ``plural``: testruns or jobruns (supercheck.vocabulary)
    async def get_run(self, namespace: str, name: str, plural: str = "testruns") -> Obj | None: ...
    async def list_runs(self) -> list[Obj]: ...
    async def patch_status(self, namespace: str, name: str, status: Obj, resource_version: str | None,
                           plural: str = "testruns") -> Obj: ...
    async def delete_run(self, namespace: str, name: str, uid: str, plural: str = "testruns") -> None: ...
    async def create(self, obj: Obj) -> Obj:
        """Raises AlreadyExists (the name is taken), Refused (the API server will never accept it),
        ApiUnavailable (try again later)."""
        ...
    async def create_run(self, obj: Obj, plural: str = "testruns") -> Obj | None:
        """Create a TestRun or JobRun: None when that name exists already; Refused, ApiUnavailable."""
        ...
    async def list_labelled(self, namespace: str, plural: str, label_selector: str) -> list[Obj]: ...
    async def get_pod(self, namespace: str, name: str) -> Obj | None: ...
    async def get_configmap(self, namespace: str, name: str) -> Obj | None: ...
    async def get_secret(self, namespace: str, name: str) -> Obj | None: ...
    async def replace_secret(self, obj: Obj) -> Obj: ...
    async def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret; one that is already gone is no error."""
        ...
    async def get_network_policy(self, namespace: str, name: str) -> Obj | None: ...
    async def replace_network_policy(self, obj: Obj) -> Obj: ...
    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None: ...
    async def list_pods(self, label_selector: str) -> list[Obj]: ...
    async def pod_log_tail(self, namespace: str, name: str, container: str, lines: int,
                           limit_bytes: int) -> str | None:
        """The last ``lines`` lines of a container's log (at most ``limit_bytes``); None when there is
        no log to read (the pod or container is gone or not started, or reading logs is forbidden)."""
        ...


class Ledger(Protocol):
    running_capacity: int
    queued_capacity: int

    async def admit(self, uid: str, ref: str, priority: int, weight: int = 1) -> AdmitResult: ...
    async def release(self, uid: str, duration_ms: int | None = None) -> ReleaseResult: ...
    async def ensure(self, uid: str, ref: str, kind: str, score: int = 0,
                     weight: int = 1) -> tuple[str, tuple[Promotion, ...]]: ...
    async def rebuild(self, running: Sequence[tuple[str, str, int]], queued: Sequence[tuple[str, str, int, int]],
                      released: Sequence[str], seq_floor: int) -> tuple[bool, tuple[Promotion, ...]]: ...
    async def recount(self) -> None:
        """Recompute the per-namespace counts from the runs the ledger holds."""
        ...
    async def snapshot(self) -> Snapshot: ...
    async def epoch(self) -> str | None: ...
    async def avg_run_seconds(self) -> float | None: ...
    async def prune_released(self) -> int: ...
    async def close(self) -> None: ...


class Store(Protocol):
    @property
    def enabled(self) -> bool: ...
    async def upsert(self, rows: list[Row]) -> None: ...
    async def upsert_job(self, job: JobRow, tests: list[JobTestRow]) -> None:
        """A JobRun's row and its tests' rows, in one transaction, idempotent; a final job row is never
        overwritten by a provisional one. Raises StoreUnavailable (PostgreSQL away), ValueError (a test
        outcome unknown or a test name twice: the caller's bug)."""
        ...
    async def ready(self) -> bool: ...
    async def close(self) -> None: ...


class Events(Protocol):
    def post(self, body: Obj, type_: str, reason: str, message: str) -> None: ...
