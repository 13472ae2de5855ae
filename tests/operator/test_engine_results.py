"""The run engine on in-memory ports: results (rows, TTL), cancellation and ledger repair."""

from __future__ import annotations

import pytest
from engine_kit import K6, result, run, running, world

from supercheck.engine import WAIT
from supercheck.engine.ledger_repair import reconcile_ledger
from supercheck.engine.testrun import StillStopping, cancel, step
from supercheck.ports import StoreUnavailable
from supercheck_contract import (
    ExitCode,
    FailureClass,
)

# ---------------------------------------------------------------- results


def test_store_down_the_status_holds_the_truth_and_the_rows_land_when_it_returns():
    async def go():
        w = world(database_url="postgresql://fake")
        await running(w)
        w.store.down = True
        w.kube.pod_terminated("a-a1", 10, result(FailureClass.TEST_FAILURE, ExitCode.TEST_FAILED, "1 failed"))
        assert await w.settle("a") == 2.0
        st = w.status("a")
        assert st["phase"] == "Failed" and "recorded" not in st
        cond = {c["type"]: c for c in st["conditions"]}["ResultsRecorded"]
        assert (cond["status"], cond["reason"]) == ("False", "DatabaseUnavailable")
        assert w.metric("supercheck_results_pending") == 1
        assert not w.ledger.running  # the slot is not held hostage by the database
        w.store.down = False
        assert await w.settle("a") is None
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Failed" and w.status("a")["recorded"] == [1]
        assert w.metric("supercheck_results_pending") == 0
    run(go)


def test_ttl_deletes_the_run_after_it_ends():
    async def go():
        w = world()
        await running(w, "a", {**K6, "ttlSecondsAfterFinished": 60})
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") == 60.0
        w.clock.advance(60)
        assert await w.settle("a") is None
        assert ("TestRun", "ns", "a") not in w.kube.objects
    run(go)


# ---------------------------------------------------------------- cancellation


def test_cancel_stops_the_pod_then_records_cancelled_and_promotes_the_next():
    async def go():
        w = world(running_capacity=1, database_url="postgresql://fake")
        await running(w)
        w.kube.add_testrun("b", K6)
        assert await w.settle("b") == 30.0
        handle = w.handle("a")
        with pytest.raises(StillStopping, match="a-a1"):
            await cancel(handle)
        assert w.pod_names() == []
        assert await step(handle) is None  # the daemon stops: the run is being cancelled
        await cancel(w.handle("a"))
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Cancelled", "Cancelled")
        assert st["message"] == "the TestRun was deleted while Running"
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Cancelled"
        assert await w.settle("b") == WAIT and w.pod_names() == ["b-a1"]
    run(go)


def test_cancel_of_a_queued_run_frees_its_place():
    async def go():
        w = world(running_capacity=1, queued_capacity=1)
        await running(w)
        w.kube.add_testrun("b", K6)
        await w.settle("b")
        await cancel(w.handle("b"))
        assert w.status("b")["phase"] == "Cancelled" and not w.ledger.queue
        w.kube.add_testrun("c", K6)
        assert await w.settle("c") == 30.0  # the freed place is usable
    run(go)


def test_cancel_with_the_store_down_raises_for_a_retry_after_the_status_is_written():
    async def go():
        w = world(database_url="postgresql://fake")
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.remove_pod("a-a1")
        w.store.down = True
        with pytest.raises(StoreUnavailable):
            await cancel(w.handle("a"))
        assert w.status("a")["phase"] == "Cancelled" and not w.ledger.running
        w.store.down = False
        await cancel(w.handle("a"))  # the finalizer's retry writes the row
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert w.store.rows[(uid, 1)].phase == "Cancelled"
    run(go)


# ---------------------------------------------------------------- repair


def test_reconcile_frees_a_leaked_slot_and_restores_a_missing_one():
    async def go():
        w = world(running_capacity=2)
        await running(w)
        uid_a = w.kube.testrun("a")["metadata"]["uid"]
        w.ledger.running.clear()  # lost behind our back
        w.ledger.running["ghost"] = 0  # a run nobody knows
        await reconcile_ledger(w.eng)
        assert set(w.ledger.running) == {uid_a}
        assert w.metric("supercheck_slots_repaired_total", kind="stale_running") == 1
        assert w.metric("supercheck_slots_repaired_total", kind="missing_running") == 1
    run(go)


@pytest.mark.integration  # a real HTTP receiver on loopback
def test_a_testrun_notifies_its_webhook_once_after_its_verdict():
    import http.server
    import json
    import threading

    posts: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=abc"

    async def go():
        w = world()
        await running(w, "a", {**K6, "notify": [{"url": url}, {"url": url, "on": ["Passed"]}]})
        w.kube.pod_terminated("a-a1", int(ExitCode.TEST_FAILED), result(FailureClass.TEST_FAILURE,
                                                                         ExitCode.TEST_FAILED, "thresholds crossed"))
        assert await w.settle("a") is None
        assert await w.settle("a") is None  # a later step sends nothing again
        st = w.status("a")
        assert st["phase"] == "Failed"
        assert [n["ok"] for n in st["notifications"]] == [True, True]
        assert st["notifications"][0]["target"].endswith("/hook") and "abc" not in json.dumps(st)
        conditions = {c["type"]: c["status"] for c in st["conditions"]}
        assert conditions["Notified"] == "True" and conditions["ResultsRecorded"] == "True"
        assert "Notified" in w.events.reasons()
    try:
        run(go)
    finally:
        server.shutdown()
    assert len(posts) == 1 and posts[0]["kind"] == "TestRun" and posts[0]["phase"] == "Failed"
    assert posts[0]["counts"]["failed"] == 1
