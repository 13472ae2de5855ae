"""The live-stream hub (supercheck.streams): what makes an event, ids, resume, bounds, the end of a run stream."""

from __future__ import annotations

import json

from supercheck.streams import (
    DELETED,
    FINAL,
    STATUS,
    Hub,
    RunKey,
    frame,
    heartbeat,
    parse_last_event_id,
    run_state,
)

NS = "team-a"
KEY = RunKey("testruns", NS, "r1")


def body(name: str = "r1", phase: str | None = None, attempts: int = 0, rv: str = "1", uid: str = "u1",
         namespace: str = NS, **status) -> dict:
    st = dict(status)
    if phase:
        st["phase"] = phase
        st["reason"] = phase + "Reason"
    if attempts:
        st["attempts"] = attempts
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv}, "status": st}


def walk(hub: Hub, name: str = "r1") -> list[int]:
    """Pending -> Running -> Passed, with a no-news update between; the ids published."""
    ids = []
    for i, (phase, attempts) in enumerate([(None, 0), ("Running", 1), ("Running", 1), ("Passed", 1)]):
        ev = hub.observe("testruns", body(name, phase, attempts, rv=str(i + 1)))
        if ev is not None:
            ids.append(ev.id)
    return ids


def test_a_run_without_status_is_pending_and_counts_come_along():
    st = run_state("testruns", body(phase="Passed", attempts=2, k6={"checksPassed": 3, "checksFailed": 0,
                                                                     "iterations": 1, "httpReqDurationP95Ms": 4.0}))
    assert (st.phase, st.attempts, st.terminal) == ("Passed", 2, True)
    assert st.progress == {"k6": {"checksPassed": 3, "checksFailed": 0, "iterations": 1}}
    assert run_state("testruns", body()).phase == "Pending"
    job = run_state("jobruns", body(phase="Running", shards=[{"index": 1, "attempts": 2}, {"index": 2, "attempts": 1}],
                                    progress={"total": 4, "completed": 1, "passed": 1}))
    assert job.attempts == 3 and job.progress == {"tests": {"total": 4, "completed": 1, "passed": 1}}


def test_only_phase_attempts_or_progress_make_an_event_and_ids_increase():
    hub = Hub(first_id=100)
    ids = walk(hub)
    assert ids == [100, 101, 102]  # the repeated Running (a new resourceVersion only) made none
    assert [e.type for e in hub.runs[KEY].history] == [STATUS, STATUS, FINAL]
    assert [e.state.phase for e in hub.runs[KEY].history] == ["Pending", "Running", "Passed"]
    # Progress moving in the same phase is news
    ev = hub.observe("testruns", body("r2", "Running", 1, summary={"total": 3, "passed": 1}))
    ev2 = hub.observe("testruns", body("r2", "Running", 1, summary={"total": 3, "passed": 2}))
    assert ev is not None and ev2 is not None and ev2.id == ev.id + 1


def test_a_run_stream_starts_with_the_current_state_and_resumes_after_an_id():
    hub = Hub(first_id=1)
    walk(hub)
    assert [e.state.phase for e in hub.run_backlog(KEY, None)] == ["Passed"]
    assert [e.id for e in hub.run_backlog(KEY, 1)] == [2, 3]
    assert hub.run_backlog(KEY, 3) == []
    assert hub.is_finished_for(KEY, 3) and not hub.is_finished_for(KEY, 2) and not hub.is_finished_for(KEY, None)


def test_an_id_older_than_the_history_gets_the_current_state_marked_resync():
    hub = Hub(run_history=2, first_id=10)
    walk(hub)  # ids 10, 11, 12; only 11 and 12 kept
    assert [e.id for e in hub.run_backlog(KEY, 10)] == [11, 12]  # 10 itself is the client's: nothing lost
    stale = hub.run_backlog(KEY, 9)
    assert [(e.id, e.resync) for e in stale] == [(12, True)]
    assert json.loads(frame(stale[0]).decode().split("data: ")[1])["resync"] is True
    # An id from an earlier operator (below the first id) or from nowhere (above the last): resync too
    assert hub.run_backlog(KEY, 5)[0].resync and hub.run_backlog(KEY, 99)[0].resync
    assert hub.run_backlog(KEY, parse_last_event_id("garbage"))[0].resync


def test_the_namespace_ring_is_bounded_and_resumes_within_it():
    hub = Hub(ring=3, first_id=1)
    walk(hub, "a")  # 1 2 3
    walk(hub, "b")  # 4 5 6
    hub.observe("testruns", body("c", namespace="elsewhere"))  # 7: another namespace
    kinds = frozenset({"testruns", "jobruns"})
    assert [e.id for e in hub.namespace_backlog(NS, kinds, 5)] == [6]
    assert [e.id for e in hub.namespace_backlog(NS, kinds, 4)] == [5, 6]  # 5, 6 and 7 kept: 4 is the floor
    assert [(e.state.key.name, e.resync) for e in hub.namespace_backlog(NS, kinds, 3)] == [("a", True), ("b", True)]
    assert [e.state.key.name for e in hub.namespace_backlog(NS, kinds, None)] == ["a", "b"]
    assert hub.namespace_backlog(NS, frozenset({"jobruns"}), None) == []


def test_subscribers_get_live_events_of_their_filter_only():
    hub = Hub(first_id=1)
    run_sub = hub.subscribe(NS, frozenset({"testruns"}), "r1", None)
    ns_sub = hub.subscribe(NS, frozenset({"testruns"}), None, None)
    job_sub = hub.subscribe(NS, frozenset({"jobruns"}), None, None)
    assert run_sub.take() == []  # not seen yet: waits for it
    walk(hub)
    hub.observe("testruns", body("other", "Running", 1))
    assert [e.state.phase for e in run_sub.take()] == ["Pending", "Running", "Passed"]
    assert [e.state.key.name for e in ns_sub.take()] == ["r1", "r1", "r1", "other"]
    assert job_sub.take() == [] and not job_sub.wake.is_set()


def test_a_subscriber_that_falls_behind_ends_and_can_resume_from_history():
    hub = Hub(first_id=1)
    hub.subscriber_limit = 2
    sub = hub.subscribe(NS, frozenset({"testruns"}), None, None)
    walk(hub)  # 3 events: the third overflows
    assert sub.overflowed and sub not in hub.subscribers
    got = sub.take()
    assert [e.id for e in got] == [1, 2] and sub.ended
    assert [e.id for e in hub.subscribe(NS, frozenset({"testruns"}), None, got[-1].id).take()] == [3]


def test_deletion_ends_a_run_stream_and_a_recreated_run_starts_again():
    hub = Hub(first_id=1, deleted_kept=1)
    walk(hub)
    gone = hub.observe("testruns", body(phase="Passed", attempts=1), deleted=True)
    assert gone is not None and gone.type == DELETED and gone.ends_run_stream
    assert hub.observe("testruns", body(phase="Passed"), deleted=True) is None  # told once
    assert hub.namespace_backlog(NS, frozenset({"testruns"}), None) == []  # a deleted run has no current state
    again = hub.observe("testruns", body(uid="u2"))
    assert again is not None and again.type == STATUS and again.state.uid == "u2"
    # Only `deleted_kept` deleted runs are remembered
    walk(hub, "x")
    hub.observe("testruns", body("x", "Passed", 1), deleted=True)
    hub.observe("testruns", body("r1", "Passed", 1, uid="u2"), deleted=True)
    assert RunKey("testruns", NS, "x") not in hub.runs and KEY in hub.runs


def test_the_same_significant_state_of_a_new_uid_is_news():
    hub = Hub(first_id=1)
    hub.observe("testruns", body())
    assert hub.observe("testruns", body(uid="u2")) is not None


def test_sse_framing():
    hub = Hub(first_id=7)
    ev = hub.observe("jobruns", body("j", "Queued"))
    text = frame(ev).decode()
    lines = text.split("\n")
    assert lines[0] == "id: 7" and lines[1] == "event: status" and text.endswith("\n\n")
    data = json.loads(lines[2].removeprefix("data: "))
    assert data["kind"] == "JobRun" and data["phase"] == "Queued" and data["terminal"] is False
    assert "resync" not in data and "\n" not in lines[2]
    assert heartbeat().startswith(b":") and heartbeat().endswith(b"\n\n")
    assert parse_last_event_id(None) is None and parse_last_event_id(" 12 ") == 12
