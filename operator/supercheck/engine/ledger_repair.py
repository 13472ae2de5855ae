"""The capacity ledger against the cluster's truth: rebuilt when Redis lost it, repaired
periodically, and finished runs' pods cleaned up (the decisions: :mod:`supercheck.repair`)."""

from __future__ import annotations

import logging

from supercheck import repair
from supercheck.engine.context import Engine
from supercheck.ports import LedgerUnavailable, NeedsRebuild
from supercheck.vocabulary import LABEL_MANAGED_BY, MANAGER

log = logging.getLogger(__name__)
RUNNER_PODS = f"{LABEL_MANAGED_BY}={MANAGER}"


async def rebuild_ledger(eng: Engine) -> None:
    """Rebuild from the cluster when Redis lost the ledger. Single-flight per process."""
    async with eng.rebuild_lock:
        if await eng.ledger.epoch() is not None:
            return
        async with eng.gate.exclusive():
            testruns = await eng.kube.list_runs()
            pods = await eng.kube.list_pods(RUNNER_PODS)
            running, queued, released, seq_floor = repair.rebuild_args(
                repair.desired_ledger(testruns, pods, eng.settings.fair_share))
            rebuilt, promoted = await eng.ledger.rebuild(running, queued, released, seq_floor)
        if rebuilt:
            log.warning("capacity ledger rebuilt from the cluster: %d running, %d queued", len(running), len(queued))
            eng.metrics.ledger_rebuilds.inc()
            eng.metrics.slots_repaired.labels("rebuild").inc(len(running) + len(queued))
        eng.wake_promoted(promoted)
        for uid in list(eng.wakeups):
            eng.wake(uid)


async def reconcile_ledger(eng: Engine) -> None:
    """Remove stale entries, restore missing ones, wake runs granted a slot but still waiting."""
    try:
        snapshot = await eng.ledger.snapshot()
        if snapshot.epoch is None:
            await rebuild_ledger(eng)
            return
        testruns = await eng.kube.list_runs()
        pods = await eng.kube.list_pods(RUNNER_PODS)
    except (LedgerUnavailable, NeedsRebuild) as exc:
        log.info("ledger reconcile skipped: %s", exc)
        return
    if repair.namespace_counts(snapshot) != (snapshot.namespace_running, snapshot.namespace_queued):
        # A ledger written before fair share (an upgrade), or drift: the shares must count right.
        async with eng.gate.shared():
            await eng.ledger.recount()
        log.warning("per-namespace ledger counts recomputed from the runs the ledger holds")
        eng.metrics.slots_repaired.labels("namespace_counts").inc()
    desired = repair.desired_ledger(testruns, pods, eng.settings.fair_share)
    statuses = {tr["metadata"]["uid"]: repair.status_of(tr) for tr in testruns}
    plan = repair.repair_plan(snapshot, desired, statuses)
    for uid in plan.stale:
        async with eng.gate.shared():
            result = await eng.ledger.release(uid)
        if result.removed != "none":
            log.warning("repaired a leaked %s slot of run %s", result.removed, uid)
            eng.metrics.slots_repaired.labels(f"stale_{result.removed}").inc()
        eng.wake_promoted(result.promoted)
    for uid, ref, kind, score, weight in plan.missing:
        async with eng.gate.shared():
            state, promoted = await eng.ledger.ensure(uid, ref, kind, score, weight)
        if state == "added":
            log.warning("restored a missing %s entry of run %s (%s)", kind, uid, ref)
            eng.metrics.slots_repaired.labels(f"missing_{kind}").inc()
        eng.wake_promoted(promoted)
    for uid in plan.promoted_waiting:
        eng.wake(uid)
    await eng.ledger.prune_released()


async def clean_finished_pods(eng: Engine, now_ts: float) -> None:
    """Remove runner pods of runs that ended more than one CLEANUP_INTERVAL_MS ago."""
    interval = eng.settings.cleanup_interval_ms / 1000
    testruns = await eng.kube.list_runs()
    pods = await eng.kube.list_pods(RUNNER_PODS)
    for namespace, name in repair.finished_pods_to_clean(testruns, pods, now_ts, interval):
        await eng.kube.delete_pod(namespace, name)
