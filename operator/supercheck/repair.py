"""Leak repair: the ledger checked against the cluster's truth (TestRun and JobRun status + runner pods).

The cluster is the truth. A run holds a running slot when its status says so (and it is not
finished) or when a live runner pod of it exists; it holds a queue place when its status says
``slot: queued``. Everything else in the ledger is stale. A JobRun holds ``status.slots`` running
slots at once (its parallelism), or as many as it has live pods if that is more.

* On a wiped Redis (no epoch) the whole ledger is rebuilt from that truth, atomically, while
  every other ledger script refuses to run.
* Otherwise the repair only removes what is certainly stale (runs that ended or are gone, with
  no live pod) and puts back what the cluster says is missing; a released run is never put back.

The decisions are pure (:func:`desired_ledger`, :func:`repair_plan`); :mod:`supercheck.engine.ledger_repair`
carries them out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from supercheck.clock import parse_iso
from supercheck.fairshare import FairShare
from supercheck.models import Phase, TestRunStatus
from supercheck.pods import pod_view
from supercheck.ports import Snapshot, queue_score
from supercheck.vocabulary import SlotState

log = logging.getLogger(__name__)


@dataclass
class Desired:
    running: dict[str, str] = field(default_factory=dict)  # uid -> ref
    weights: dict[str, int] = field(default_factory=dict)  # uid -> running slots, when more than 1
    queued: dict[str, tuple[str, int]] = field(default_factory=dict)  # uid -> (ref, score)
    released: set[str] = field(default_factory=set)
    admitting: set[str] = field(default_factory=set)  # not finished, no slot in the status (yet)
    known: set[str] = field(default_factory=set)  # every TestRun uid that exists
    seq_floor: int = 0


@dataclass
class Plan:
    stale: list[str] = field(default_factory=list)
    missing: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # uid, ref, kind, score, weight
    promoted_waiting: list[str] = field(default_factory=list)  # granted a slot, status still queued


def status_of(tr: Mapping[str, Any]) -> TestRunStatus:
    """What the repair reads of a run's status (TestRun or JobRun: the fields they share)."""
    raw = tr.get("status") or {}
    try:
        return TestRunStatus.model_validate({k: raw[k] for k in _SHARED if k in raw})
    except ValidationError:
        return TestRunStatus()


_SHARED = ("phase", "slot", "queueSeq", "completedAt", "startedAt")


def slots_of(run: Mapping[str, Any]) -> int:
    """Running slots a run takes at once: a JobRun's ``status.slots``; 1 for a TestRun."""
    try:
        return max(1, int((run.get("status") or {}).get("slots") or 1))
    except (TypeError, ValueError):
        return 1


def desired_ledger(testruns: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
                   fair_share: FairShare | None = None) -> Desired:
    """``fair_share``: queued runs keep the priority they were admitted with, at most their namespace's
    maximum (the ledger's per-namespace counts follow from the refs, namespace/name)."""
    shares = fair_share or FairShare()
    live_pods: dict[str, int] = {}
    for p in pods:
        view = pod_view(p)
        if view.owner_uid and view.live:
            live_pods[view.owner_uid] = live_pods.get(view.owner_uid, 0) + 1
    d = Desired()
    max_seq = 0
    for tr in testruns:
        meta = tr["metadata"]
        uid, ref = meta["uid"], f"{meta['namespace']}/{meta['name']}"
        d.known.add(uid)
        status = status_of(tr)
        max_seq = max(max_seq, status.queueSeq or 0)
        terminal = status.phase is not None and status.phase.terminal
        weight = max(slots_of(tr), live_pods.get(uid, 0))
        if weight > 1:
            d.weights[uid] = weight
        if uid in live_pods or (not terminal and status.slot == SlotState.RUNNING):
            d.running[uid] = ref
        elif not terminal and status.slot == SlotState.QUEUED:
            priority = shares.priority(meta["namespace"], int((tr.get("spec") or {}).get("priority") or 0))
            d.queued[uid] = (ref, queue_score(priority, status.queueSeq or 0))
        elif terminal:
            d.released.add(uid)
        else:
            d.admitting.add(uid)
    # Live pods whose TestRun is gone still occupy a node until the garbage collector removes them.
    for uid in live_pods:
        if uid not in d.known:
            d.running.setdefault(uid, "")
    d.seq_floor = max_seq
    return d


def repair_plan(snapshot: Snapshot, desired: Desired, statuses: Mapping[str, TestRunStatus]) -> Plan:
    plan = Plan()
    held = set(snapshot.running) | {uid for uid, _ in snapshot.queue}
    for uid in sorted(held):
        # Certainly stale: the run ended or is gone (and no pod of it lives). A run between its
        # admission and the status patch that records it holds an entry its status does not show yet.
        if uid not in desired.running and uid not in desired.queued and uid not in desired.admitting:
            plan.stale.append(uid)
    for uid, ref in desired.running.items():
        if uid not in held and uid not in snapshot.released:
            plan.missing.append((uid, ref, SlotState.RUNNING, 0, desired.weights.get(uid, 1)))
    for uid, (ref, score) in desired.queued.items():
        if uid not in held and uid not in snapshot.released:
            plan.missing.append((uid, ref, SlotState.QUEUED, score, desired.weights.get(uid, 1)))
    for uid in snapshot.running:
        st = statuses.get(uid)
        if st is not None and st.slot == SlotState.QUEUED and st.phase == Phase.QUEUED:
            plan.promoted_waiting.append(uid)
    return plan


def namespace_counts(snapshot: Snapshot) -> tuple[dict[str, int], dict[str, int]]:
    """The per-namespace counts the ledger's membership implies (running slots, queued runs), to
    check the counts it keeps (``Snapshot.namespace_running``/``namespace_queued``) against."""
    running: dict[str, int] = {}
    queued: dict[str, int] = {}
    for uid in snapshot.running:
        ns = snapshot.refs.get(uid, "").split("/", 1)[0]
        running[ns] = running.get(ns, 0) + snapshot.weights.get(uid, 1)
    for uid, _ in snapshot.queue:
        ns = snapshot.refs.get(uid, "").split("/", 1)[0]
        queued[ns] = queued.get(ns, 0) + 1
    return running, queued


def rebuild_args(desired: Desired) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int, int]],
                                            list[str], int]:
    w = desired.weights
    running = [(uid, ref, w.get(uid, 1)) for uid, ref in sorted(desired.running.items())]
    queued = sorted(((uid, ref, score, w.get(uid, 1)) for uid, (ref, score) in desired.queued.items()),
                    key=lambda x: x[2])
    return running, queued, sorted(desired.released), desired.seq_floor


def finished_pods_to_clean(testruns: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
                           now_ts: float, older_than_seconds: float) -> list[tuple[str, str]]:
    """Runner pods (namespace, name) of runs that ended more than ``older_than_seconds`` ago.

    The CLEANUP_INTERVAL_MS sweep: a finished run keeps its pod (and ``kubectl logs``) for one
    interval; then the pod goes. The TestRun, its status, its rows and its artifacts stay.
    """
    ended: dict[str, float] = {}
    for tr in testruns:
        status = status_of(tr)
        if status.phase is not None and status.phase.terminal and status.completedAt:
            done = parse_iso(status.completedAt)
            if done is not None:
                ended[tr["metadata"]["uid"]] = done.timestamp()
    out = []
    for p in pods:
        view = pod_view(p)
        when = ended.get(view.owner_uid or "")
        if when is not None and view.terminated and now_ts - when >= older_than_seconds:
            out.append((p["metadata"]["namespace"], view.name))
    return out
