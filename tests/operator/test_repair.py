"""Leak repair decisions: the cluster's truth against a ledger snapshot (pure)."""

from __future__ import annotations

from supercheck import repair
from supercheck.ledger import Snapshot, queue_score


def tr(uid, phase=None, slot=None, seq=None, priority=0, name=None):
    status = {}
    if phase:
        status["phase"] = phase
    if slot:
        status["slot"] = slot
    if seq is not None:
        status["queueSeq"] = seq
    return {"metadata": {"uid": uid, "namespace": "ns", "name": name or uid}, "spec": {"priority": priority},
            "status": status}


def pod(owner, phase="Running", terminated=False):
    state = {"terminated": {"exitCode": 0}} if terminated else {"running": {}}
    return {"metadata": {"name": f"{owner}-a1", "uid": f"p-{owner}",
                         "ownerReferences": [{"kind": "TestRun", "uid": owner}]},
            "status": {"phase": phase, "containerStatuses": [{"state": state}]}}


def test_desired_ledger_from_status_and_live_pods():
    d = repair.desired_ledger(
        [tr("run", "Running", "running"), tr("q", "Queued", "queued", seq=4, priority=3),
         tr("done", "Passed"), tr("cancelling", "Cancelled"), tr("new")],
        [pod("run"), pod("cancelling"), pod("done", "Succeeded", terminated=True), pod("orphan")],
    )
    assert set(d.running) == {"run", "cancelling", "orphan"}  # a live pod holds capacity whatever the status
    assert d.queued == {"q": ("ns/q", queue_score(3, 4))}
    assert d.released == {"done"} and d.seq_floor == 4
    assert "new" not in d.running and "new" not in d.queued


def test_plan_removes_only_what_is_certainly_stale_and_restores_what_is_missing():
    d = repair.desired_ledger(
        [tr("run", "Running", "running"), tr("lost", "Running", "running"), tr("done", "Failed"),
         tr("q", "Queued", "queued", seq=1)],
        [pod("run")],
    )
    snap = Snapshot(epoch="e", running_count=3, queued_count=1, running={"run", "done", "gone"},
                    queue=[("q", queue_score(0, 1))], refs={}, released={"old"})
    plan = repair.repair_plan(snap, d, {})
    assert plan.stale == ["done", "gone"]
    assert plan.missing == [("lost", "ns/lost", "running", 0, 1)]


def test_a_run_being_admitted_is_not_stale():
    """Admitted in Redis, the status patch not landed yet: the repair must not take its slot."""
    d = repair.desired_ledger([tr("fresh")], [])
    snap = Snapshot(epoch="e", running_count=1, queued_count=0, running={"fresh"})
    assert repair.repair_plan(snap, d, {}).stale == []


def test_plan_never_restores_a_released_run():
    d = repair.desired_ledger([tr("r", "Running", "running")], [])
    snap = Snapshot(epoch="e", running_count=0, queued_count=0, released={"r"})
    assert repair.repair_plan(snap, d, {}).missing == []


def test_promoted_but_still_queued_runs_are_woken():
    trs = [tr("p", "Queued", "queued", seq=2)]
    d = repair.desired_ledger(trs, [])
    snap = Snapshot(epoch="e", running_count=1, queued_count=0, running={"p"})
    statuses = {"p": repair.status_of(trs[0])}
    plan = repair.repair_plan(snap, d, statuses)
    assert plan.stale == [] and plan.promoted_waiting == ["p"]


def test_rebuild_args_are_ordered_by_queue_score():
    d = repair.desired_ledger([tr("a", "Queued", "queued", seq=5), tr("b", "Queued", "queued", seq=6, priority=9)], [])
    running, queued, released, floor = repair.rebuild_args(d)
    assert [q[0] for q in queued] == ["b", "a"] and floor == 6


def test_cleanup_removes_only_finished_pods_of_runs_ended_an_interval_ago():
    old = tr("old", "Passed")
    old["status"]["completedAt"] = "2030-01-01T00:00:00.000000Z"
    recent = tr("recent", "Failed")
    recent["status"]["completedAt"] = "2030-01-01T00:29:00.000000Z"
    live = tr("live", "Running", "running")
    pods = [pod("old", "Succeeded", terminated=True), pod("recent", "Failed", terminated=True), pod("live")]
    now = 1893457800.0  # 2030-01-01T00:30:00Z
    assert repair.finished_pods_to_clean([old, recent, live], [{**p, "metadata": {**p["metadata"], "namespace": "ns"}}
                                                               for p in pods], now, 1800) == [("ns", "old-a1")]


def test_a_job_holds_its_slots_in_the_rebuilt_ledger():
    job = tr("job", "Running", "running")
    job["status"]["slots"] = 3
    d = repair.desired_ledger([job, tr("t", "Running", "running")], [])
    running, _, _, _ = repair.rebuild_args(d)
    assert sorted(running) == [("job", "ns/job", 3), ("t", "ns/t", 1)]


def test_rebuilt_queue_places_use_the_namespace_maximum_priority_and_counts_follow_the_refs():
    from supercheck.fairshare import FairShare, NamespaceLimits, Share
    fair = FairShare(Share(max_priority=10), {"vip": NamespaceLimits(maxPriority=None)})
    flood = tr("f", "Queued", "queued", seq=1, priority=1000)
    vip = tr("v", "Queued", "queued", seq=2, priority=1000)
    vip["metadata"]["namespace"] = "vip"
    d = repair.desired_ledger([flood, vip], [], fair)
    assert d.queued == {"f": ("ns/f", queue_score(10, 1)), "v": ("vip/v", queue_score(1000, 2))}
    snap = Snapshot(epoch="e", running_count=3, queued_count=2, running={"a", "job", "orphan"},
                    queue=[("f", 0), ("v", 0)], refs={"a": "ns/a", "job": "ns/job", "f": "ns/f", "v": "vip/v"},
                    weights={"job": 2})
    assert repair.namespace_counts(snap) == ({"ns": 3, "": 1}, {"ns": 1, "vip": 1})
