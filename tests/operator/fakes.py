"""In-memory implementations of the run engine's ports (supercheck.ports), for unit tests.

Why fakes here: these tests walk every transition of the engine (admit, queue, reject, conflicts,
services down, pod refused, each failure class, cancel) in milliseconds and deterministically;
the same engine runs against the real API server, Redis and PostgreSQL in the cluster tests
(tests/operator/test_cluster_*.py). Each fake keeps the semantics the engine relies on:

* FakeKube: resourceVersion preconditions (Conflict), AlreadyExists, refusals (``refuse_create``:
  a 4xx of a quota, a policy or validation), merge patches of status,
  ownerless objects, and a hand to play the kubelet (``pod_running``, ``pod_terminated``...).
* FakeLedger: the Lua scripts' model — idempotent per uid, FIFO within a priority, promotion
  on release, released runs never come back, ``wiped`` answers NeedsRebuild.
* FakeStore: an upsert that never lets a provisional row replace a final one (runs and jobs alike;
  a job's tests are written with it or not at all).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from supercheck.fairshare import FairShare
from supercheck.jobrows import JobRow, JobTestRow, check_tests
from supercheck.ports import (
    AdmitResult,
    AlreadyExists,
    ApiUnavailable,
    Conflict,
    LedgerUnavailable,
    NeedsRebuild,
    Promotion,
    Refused,
    ReleaseResult,
    Snapshot,
    StoreUnavailable,
    queue_score,
)
from supercheck.rows import Row
from supercheck.vocabulary import AdmitState, CapacityLimit

KINDS = {"testruns": "TestRun", "jobruns": "JobRun", "runschedules": "RunSchedule", "monitors": "Monitor"}


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class RecordingEvents:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def post(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.posted]


def _merge(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386): None deletes, dicts merge, everything else replaces."""
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


class FakeKube:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self.down = False  # every call raises ApiUnavailable
        self.refuse_pods: Exception | None = None  # create(Pod) raises this
        self.refusals: dict[str, Refused] = {}  # "Kind" or "Kind/name" -> the API server's refusal of its create
        self.calls: list[str] = []
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> the runner container's output
        self.logs_error: Exception | None = None  # pod_log_tail raises this (the kubelet unreachable...)
        self.deleted_secrets: list[str] = []  # names, in the order delete_secret removed them

    # --- helpers for tests
    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise ApiUnavailable("503 Service Unavailable (the fake API server is down)")

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return obj

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta.setdefault("creationTimestamp", self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = self._stamp(obj)
        return copy.deepcopy(obj)

    def add_testrun(self, name: str, spec: dict[str, Any], namespace: str = "ns",
                    labels: dict[str, str] | None = None) -> dict[str, Any]:
        return self.add({"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun",
                         "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                         "spec": spec})

    def add_jobrun(self, name: str, spec: dict[str, Any], namespace: str = "ns",
                   labels: dict[str, str] | None = None) -> dict[str, Any]:
        return self.add({"apiVersion": "supercheck.io/v1alpha1", "kind": "JobRun",
                         "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                         "spec": spec})

    def jobrun(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return copy.deepcopy(self.objects[("JobRun", namespace, name)])

    def testrun(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return copy.deepcopy(self.objects[("TestRun", namespace, name)])

    def pods(self, namespace: str = "ns") -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == "Pod" and ns == namespace]

    # --- Monitors (tests/operator/test_engine_monitors.py)
    def add_monitor(self, name: str, spec: dict[str, Any], namespace: str = "ns",
                    status: dict[str, Any] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {"apiVersion": "supercheck.io/v1alpha1", "kind": "Monitor",
                               "metadata": {"name": name, "namespace": namespace, "generation": 1}, "spec": spec}
        if status is not None:
            obj["status"] = status
        return self.add(obj)

    def monitor(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return copy.deepcopy(self.objects[("Monitor", namespace, name)])

    def set_monitor_spec(self, name: str, namespace: str = "ns", **spec: Any) -> None:
        """The user edits the Monitor's spec: its generation moves on."""
        obj = self.objects[("Monitor", namespace, name)]
        obj["spec"].update(spec)
        obj["metadata"]["generation"] = int(obj["metadata"].get("generation") or 1) + 1
        self._stamp(obj)

    def finish_testrun(self, name: str, phase: str, namespace: str = "ns", **status: Any) -> None:
        """The TestRun reaches ``phase`` (as the run engine would write it)."""
        self.touch_testrun(name, namespace, phase=phase, **status)

    def touch_testrun(self, name: str, namespace: str = "ns", **status: Any) -> None:
        """Someone else writes the TestRun's status (another replica): its resourceVersion moves on."""
        obj = self.objects[("TestRun", namespace, name)]
        _merge(obj.setdefault("status", {}), status)
        self._stamp(obj)

    def _pod(self, name: str, namespace: str) -> dict[str, Any]:
        return self.objects[("Pod", namespace, name)]

    def pod_running(self, name: str, namespace: str = "ns") -> None:
        pod = self._pod(name, namespace)
        pod["status"] = {"phase": "Running", "containerStatuses": [
            {"name": "runner", "state": {"running": {"startedAt": "2030-01-01T12:00:01Z"}}}]}
        self._stamp(pod)

    def pod_terminated(self, name: str, exit_code: int, message: str = "", reason: str = "Error",
                       namespace: str = "ns", pod_reason: str | None = None) -> None:
        pod = self._pod(name, namespace)
        pod["status"] = {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
            {"name": "runner", "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                                        "message": message}}}]}
        if pod_reason:
            pod["status"]["reason"] = pod_reason
        self._stamp(pod)

    def remove_pod(self, name: str, namespace: str = "ns") -> None:
        self.objects.pop(("Pod", namespace, name), None)
        self.logs.pop((namespace, name), None)

    def pod_prints(self, name: str, *lines: str, namespace: str = "ns") -> None:
        """The runner in pod ``name`` writes these lines to its stdout."""
        self.logs[(namespace, name)] = self.logs.get((namespace, name), "") + "".join(f"{ln}\n" for ln in lines)

    def refuse_create(self, kind: str, status: int, message: str, name: str | None = None) -> None:
        """The API server refuses every create of ``kind`` (or of the object ``name`` alone) with this
        status and message (a quota, an admission policy, validation): ``create`` raises
        :class:`Refused`, as the adapter does."""
        self.refusals[f"{kind}/{name}" if name else kind] = Refused(status, message)

    # --- the port
    async def get_run(self, namespace: str, name: str, plural: str = "testruns") -> dict[str, Any] | None:
        self._check("get_run")
        obj = self.objects.get((KINDS[plural], namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def list_runs(self) -> list[dict[str, Any]]:
        self._check("list_runs")
        return [copy.deepcopy(o) for (k, _, _), o in self.objects.items() if k in ("TestRun", "JobRun")]

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                           resource_version: str | None, plural: str = "testruns") -> dict[str, Any]:
        self._check("patch_status")
        obj = self.objects.get((KINDS[plural], namespace, name))
        if obj is None:
            raise Conflict("the TestRun is gone")
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        _merge(obj.setdefault("status", {}), status)
        return copy.deepcopy(self._stamp(obj))

    async def delete_run(self, namespace: str, name: str, uid: str, plural: str = "testruns") -> None:
        """As the API server: an object with finalizers gets a deletionTimestamp (its finalizer's handler
        removes it: ``finalize``), one without is gone at once; another uid is left alone."""
        self._check("delete_run")
        key = (KINDS[plural], namespace, name)
        obj = self.objects.get(key)
        if obj is None or obj["metadata"]["uid"] != uid:
            return
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"))
            self._stamp(obj)
        else:
            del self.objects[key]

    def finalize(self, kind: str, name: str, namespace: str = "ns") -> None:
        """The finalizer's handler is done: the object being deleted is gone."""
        del self.objects[(kind, namespace, name)]

    async def create_run(self, obj: dict[str, Any], plural: str = "testruns") -> dict[str, Any] | None:
        self._check(f"create_run {obj['kind']}")
        assert KINDS[plural] == obj["kind"], (plural, obj["kind"])
        refusal = self.refusals.get(f"{obj['kind']}/{obj['metadata']['name']}") or self.refusals.get(obj["kind"])
        if refusal is not None:
            raise refusal
        if (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) in self.objects:
            return None
        return self.add(copy.deepcopy(obj))

    async def list_labelled(self, namespace: str, plural: str, label_selector: str) -> list[dict[str, Any]]:
        """Equality selectors only (``k=v,k2=v2``), as the operator writes them."""
        self._check(f"list_labelled {plural}")
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                if k == KINDS[plural] and ns == namespace
                and all((o["metadata"].get("labels") or {}).get(lk) == lv for lk, lv in wanted.items())]

    def set_phase(self, kind: str, name: str, phase: str, namespace: str = "ns", **status: Any) -> None:
        """The run's own daemon moved it on (another engine, played by the test)."""
        obj = self.objects[(kind, namespace, name)]
        _merge(obj.setdefault("status", {}), {"phase": phase, **status})
        self._stamp(obj)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check(f"create {obj['kind']}")
        if obj["kind"] == "Pod" and self.refuse_pods is not None:
            raise self.refuse_pods
        refusal = self.refusals.get(f"{obj['kind']}/{obj['metadata']['name']}") or self.refusals.get(obj["kind"])
        if refusal is not None:
            raise refusal
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            raise AlreadyExists(f"{key} already exists")
        return self.add(copy.deepcopy(obj))

    async def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check(f"get {kind}")
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("Pod", namespace, name)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("ConfigMap", namespace, name)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("Secret", namespace, name)

    async def replace_secret(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check("replace Secret")
        return self.add(copy.deepcopy(obj))

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._check("delete Secret")
        if self.objects.pop(("Secret", namespace, name), None) is not None:
            self.deleted_secrets.append(name)

    async def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get("NetworkPolicy", namespace, name)

    async def replace_network_policy(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check("replace NetworkPolicy")
        return self.add(copy.deepcopy(obj))

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        self._check("delete Pod")
        self.objects.pop(("Pod", namespace, name), None)

    async def pod_log_tail(self, namespace: str, name: str, container: str, lines: int,
                           limit_bytes: int) -> str | None:
        """As the kubelet: the last ``lines`` lines, then at most ``limit_bytes`` of them; None for a
        pod that is not there or whose container never started."""
        self._check("pod_log_tail")
        if self.logs_error is not None:
            raise self.logs_error
        pod = self.objects.get(("Pod", namespace, name))
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        if pod is None or container != "runner" or not any("waiting" not in (c.get("state") or {})
                                                            for c in statuses):
            return None
        text = "".join(self.logs.get((namespace, name), "").splitlines(keepends=True)[-lines:])
        return text.encode()[:limit_bytes].decode("utf-8", "replace")

    async def list_pods(self, label_selector: str) -> list[dict[str, Any]]:
        self._check("list_pods")
        key, _, value = label_selector.partition("=")
        return [copy.deepcopy(o) for (k, _, _), o in self.objects.items()
                if k == "Pod" and (o["metadata"].get("labels") or {}).get(key) == value]


class FakeLedger:
    """The capacity ledger's semantics (lua/*.lua), in memory — fair share included: a run over its
    namespace's running share is passed over without blocking other namespaces, a full namespace queue
    rejects (``limit`` namespace-queued). tests/operator/test_ledger_lua.py runs the same scenarios on
    both (``test_fake_ledger_behaves_like_the_lua``)."""

    def __init__(self, running_capacity: int, queued_capacity: int, clock: FakeClock,
                 fair_share: FairShare | None = None) -> None:
        self.running_capacity = running_capacity
        self.queued_capacity = queued_capacity
        self.fair_share = fair_share or FairShare()
        self.clock = clock
        self.running: dict[str, int] = {}  # uid -> granted ms
        self.queue: dict[str, int] = {}  # uid -> score
        self.refs: dict[str, str] = {}
        self.released: set[str] = set()
        self.seq = 0
        self.down = False
        self.down_message = "Redis at 127.0.0.1:0 is unreachable (the fake ledger is down)"
        self.wiped = False
        self.avg_ms: int | None = None
        self.weights: dict[str, int] = {}  # uid -> running slots at once, when more than 1

    def used(self) -> int:
        return sum(self.weights.get(uid, 1) for uid in self.running)

    def _ns(self, uid: str) -> str:
        return self.refs.get(uid, "").split("/", 1)[0]

    def ns_running(self, ns: str) -> int:
        return sum(self.weights.get(uid, 1) for uid in self.running if self._ns(uid) == ns)

    def ns_queued(self, ns: str) -> int:
        return sum(1 for uid in self.queue if self._ns(uid) == ns)

    def _over_share(self, ns: str, weight: int) -> bool:
        cap = self.fair_share.of(ns).running
        return cap is not None and self.ns_running(ns) + weight > cap

    def _clamp(self, weight: int, ns: str) -> int:
        weight = max(1, min(weight, self.running_capacity))
        cap = self.fair_share.of(ns).running
        return min(weight, cap) if cap is not None else weight

    def _check(self) -> None:
        if self.down:
            raise LedgerUnavailable(self.down_message)
        if self.wiped:
            raise NeedsRebuild("the capacity ledger is empty (Redis restarted?)")

    def _ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _promote(self) -> tuple[tuple[Promotion, ...], bool]:
        """The promoted runs, and whether a run within its share waits for slots (a newcomer queues)."""
        out = []
        blocked: set[str] = set()
        for uid in sorted(self.queue, key=lambda u: self.queue[u]):
            if self.used() >= self.running_capacity:
                return tuple(out), True
            ns = self._ns(uid)
            weight = self._clamp(self.weights.get(uid, 1), ns)
            if weight > 1:
                self.weights[uid] = weight
            else:
                self.weights.pop(uid, None)
            if ns in blocked or self._over_share(ns, weight):
                blocked.add(ns)  # passed over, and every later run of its namespace
                continue
            if self.used() + weight > self.running_capacity:
                return tuple(out), True  # strict order: the head waits for all its slots
            del self.queue[uid]
            self.running[uid] = self._ms()
            out.append(Promotion(uid, self.refs.get(uid, "")))
        return tuple(out), self.used() >= self.running_capacity

    def _position(self, uid: str) -> int:
        return sorted(self.queue.values()).index(self.queue[uid]) + 1

    async def admit(self, uid: str, ref: str, priority: int, weight: int = 1) -> AdmitResult:
        self._check()
        ns = ref.split("/", 1)[0]
        weight = self._clamp(weight, ns)

        def answer(state: AdmitState, limit: CapacityLimit = CapacityLimit.NONE, **extra: Any) -> AdmitResult:
            return AdmitResult(state, running=self.used(), queued=len(self.queue),
                               weight=self.weights.get(uid, 1) if uid in self.refs else 0,
                               namespace_running=self.ns_running(ns), namespace_queued=self.ns_queued(ns),
                               limit=limit, **extra)

        def waits_for(w: int) -> CapacityLimit:
            return CapacityLimit.NAMESPACE_RUNNING if self._over_share(ns, w) else CapacityLimit.RUNNING

        if uid in self.released:
            return answer(AdmitState.RELEASED)
        promoted, stalled = self._promote()
        if uid in self.running:
            return answer(AdmitState.RUNNING, granted_ms=self.running[uid], promoted=promoted)
        if uid in self.queue:
            return answer(AdmitState.QUEUED, waits_for(self.weights.get(uid, 1)), seq=self.queue[uid] % 2**40,
                          position=self._position(uid), promoted=promoted)
        self.refs[uid] = ref
        if weight > 1:
            self.weights[uid] = weight
        if (self.used() + weight <= self.running_capacity and not self._over_share(ns, weight)
                and self.ns_queued(ns) == 0 and not stalled):
            self.running[uid] = self._ms()
            return answer(AdmitState.RUNNING, granted_ms=self.running[uid], promoted=promoted)
        ns_cap = self.fair_share.of(ns).queued
        if ns_cap is not None and self.ns_queued(ns) >= ns_cap:
            limit = CapacityLimit.NAMESPACE_QUEUED
        elif len(self.queue) >= self.queued_capacity:
            limit = CapacityLimit.QUEUED
        else:
            self.seq += 1
            self.queue[uid] = queue_score(priority, self.seq)
            return answer(AdmitState.QUEUED, waits_for(weight), seq=self.seq, position=self._position(uid),
                          promoted=promoted)
        del self.refs[uid]
        self.weights.pop(uid, None)
        return answer(AdmitState.REJECTED, limit, promoted=promoted)

    async def release(self, uid: str, duration_ms: int | None = None) -> ReleaseResult:
        self._check()
        self.released.add(uid)
        removed = "none"
        if self.running.pop(uid, None) is not None:
            removed = "running"
            if duration_ms:
                self.avg_ms = int((self.avg_ms or duration_ms) * 0.8 + duration_ms * 0.2)
        elif self.queue.pop(uid, None) is not None:
            removed = "queued"
        self.refs.pop(uid, None)
        self.weights.pop(uid, None)
        return ReleaseResult(removed, self._promote()[0])

    async def ensure(self, uid: str, ref: str, kind: str, score: int = 0,
                     weight: int = 1) -> tuple[str, tuple[Promotion, ...]]:
        self._check()
        if uid in self.released or uid in self.running or uid in self.queue:
            return "present", ()
        self.refs[uid] = ref
        if weight > 1:
            self.weights[uid] = weight
        if kind == "running":
            self.running[uid] = self._ms()
            return "added", ()
        self.queue[uid] = score
        return "added", self._promote()[0]

    async def rebuild(self, running: Sequence[tuple[str, str, int]], queued: Sequence[tuple[str, str, int, int]],
                      released: Sequence[str], seq_floor: int) -> tuple[bool, tuple[Promotion, ...]]:
        if self.down:
            raise LedgerUnavailable("down")
        if not self.wiped:
            return False, ()
        self.wiped = False
        self.running = {uid: self._ms() for uid, _, _ in running}
        self.queue = {uid: score for uid, _, score, _ in queued if uid not in self.running}
        self.refs = {uid: ref for uid, ref, _, _ in queued} | {uid: ref for uid, ref, _ in running}
        self.weights = {uid: w for uid, _, _, w in queued if w > 1} | {uid: w for uid, _, w in running if w > 1}
        self.released = set(released)
        self.seq = max(self.seq, seq_floor)
        return True, self._promote()[0]

    async def recount(self) -> None:
        self._check()  # the fake derives its per-namespace counts from the membership: nothing to redo

    def _by_namespace(self, uids: Any, weighted: bool) -> dict[str, int]:
        out: dict[str, int] = {}
        for uid in uids:
            ns = self._ns(uid)
            out[ns] = out.get(ns, 0) + (self.weights.get(uid, 1) if weighted else 1)
        return out

    async def snapshot(self) -> Snapshot:
        if self.down:
            raise LedgerUnavailable("down")
        return Snapshot(None if self.wiped else "epoch", self.used(), len(self.queue), set(self.running),
                        sorted(self.queue.items(), key=lambda kv: kv[1]), dict(self.refs), set(self.released),
                        dict(self.weights), namespace_running=self._by_namespace(self.running, True),
                        namespace_queued=self._by_namespace(self.queue, False))

    async def epoch(self) -> str | None:
        if self.down:
            raise LedgerUnavailable("down")
        return None if self.wiped else "epoch"

    async def avg_run_seconds(self) -> float | None:
        return self.avg_ms / 1000 if self.avg_ms else None

    async def prune_released(self) -> int:
        return 0

    async def close(self) -> None:
        return None


class FakeStore:
    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self.rows: dict[tuple[str, int], Row] = {}
        self.jobs: dict[str, JobRow] = {}
        self.job_tests: dict[str, dict[str, JobTestRow]] = {}  # job uid -> test name -> row
        self.down = False
        self.down_message = "PostgreSQL at 127.0.0.1:0 is unavailable (the fake store is down)"

    @property
    def enabled(self) -> bool:
        return self._enabled

    async def upsert(self, rows: list[Row]) -> None:
        if self.down:
            raise StoreUnavailable(self.down_message)
        for row in rows:
            old = self.rows.get((row.uid, row.attempt))
            if old is None or not old.final or row.final:
                self.rows[(row.uid, row.attempt)] = row

    async def upsert_job(self, job: JobRow, tests: list[JobTestRow]) -> None:
        check_tests(tests)
        if not self._enabled:
            return
        if self.down:
            raise StoreUnavailable("PostgreSQL at 127.0.0.1:0 is unavailable (the fake store is down)")
        old = self.jobs.get(job.uid)
        if old is not None and old.final and not job.final:
            return
        self.jobs[job.uid] = copy.deepcopy(job)
        stored = self.job_tests.setdefault(job.uid, {})
        for test in tests:
            stored[test.name] = copy.deepcopy(test)

    async def ready(self) -> bool:
        return not self.down

    async def close(self) -> None:
        return None
