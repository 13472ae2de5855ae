"""The run engine on in-memory ports: what the API server refuses ends the run at once.

A pod refused with a 4xx (422 Invalid, 400, 403 of a ResourceQuota or an admission policy) would be
refused again however often it is sent: the run ends Error (PodRejected) with the API server's
message, closes its attempt, writes its row and releases its slot in the same step — no retry loop
holding a running slot. A 429 or 5xx stays transient (test_engine_admission.py). The same for the
run's script snapshot (SnapshotRejected): refused, or larger than the 1 MiB a ConfigMap holds."""

from __future__ import annotations

import pytest
from engine_kit import K6, result, run, world
from test_engine_jobrun import handle, job_spec, settle, shard_done, started, status, suite_cm

from supercheck.engine import jobrun
from supercheck.engine.snapshot import MAX_CONFIGMAP_BYTES
from supercheck_contract import ExitCode, FailureClass

QUOTA = 'pods "{pod}" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0'
INVALID = ('Pod "{pod}" is invalid: spec.containers[0].envFrom[0]: Invalid value: "": must specify one of: '
           '`configMapRef` or `secretRef`')
POLICY = 'admission webhook "policy.example.com" denied the request: runner pods need a team label'


@pytest.mark.parametrize("code, message", [(403, QUOTA), (422, INVALID), (400, POLICY)])
def test_a_refused_pod_ends_the_run_error_with_the_api_servers_message_and_frees_its_slot(code, message):
    async def go():
        w = world(running_capacity=1, queued_capacity=5, database_url="postgresql://fake")
        w.kube.refuse_create("Pod", code, message.format(pod="a-a1"), name="a-a1")
        for name in ("holder", "a", "b"):
            w.kube.add_testrun(name, K6)
            await w.settle(name)
        assert [w.status(n)["phase"] for n in ("a", "b")] == ["Queued", "Queued"]
        w.kube.pod_terminated("holder-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("holder")  # its slot goes to a
        assert await w.settle("a") is None  # nothing left to do: no retry
        st = w.status("a")
        assert (st["phase"], st["reason"], st["slot"] if "slot" in st else None) == ("Error", "PodRejected", None)
        assert message.format(pod="a-a1") in st["message"] and f"({code})" in st["message"]
        assert st["failureClass"] == "validation" and st["result"] == "error"
        assert st["attemptHistory"][0]["completedAt"] and st["attemptHistory"][0]["phase"] == "Error"
        assert "a-a1" not in w.pod_names()
        uid = w.kube.testrun("a")["metadata"]["uid"]
        assert uid not in w.ledger.running and uid in w.ledger.released
        # The slot went to the queued run at once.
        assert set(w.ledger.running) == {w.kube.testrun("b")["metadata"]["uid"]}
        said = [(t, r, m) for t, r, m in w.events.posted if r == "PodRejected"]
        assert said and said[0][0] == "Warning" and message.format(pod="a-a1") in said[0][2]
        assert w.store.rows[(uid, 1)].reason == "PodRejected" and w.store.rows[(uid, 1)].final
        assert w.metric("supercheck_rejections_total", type="k6", reason="PodRejected") == 1
        assert w.kube.calls.count("create Pod") == 2  # the holder's, and a's asked for once
    run(go)


def test_a_retry_whose_pod_is_refused_ends_the_run_too():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.pod_running("a-a1")
        await w.settle("a")
        w.kube.pod_terminated("a-a1", 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 refused"))
        assert await w.settle("a") == 2.0  # retry 1 of 3 after the backoff
        w.kube.refuse_create("Pod", 403, QUOTA.format(pod="a-a2"))
        w.clock.advance(2)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "PodRejected", 2)
        assert st["message"].startswith("attempt 2: the API server refused runner pod a-a2 (403)")
        assert w.ledger.used() == 0
    run(go)


def test_a_refused_snapshot_configmap_ends_the_run_before_any_pod():
    async def go():
        w = world()
        w.kube.refuse_create("ConfigMap", 403, 'configmaps "a-script" is forbidden: exceeded quota: cm, '
                                                'requested: configmaps=1, used: configmaps=3, limited: configmaps=3')
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotRejected")
        assert "exceeded quota: cm" in st["message"] and w.pod_names() == [] and w.ledger.used() == 0
    run(go)


def test_a_script_at_the_crds_maximum_fits_its_snapshot_and_one_too_large_in_utf8_ends_error():
    async def go():
        w = world()
        at_max = "x" * 1_000_000  # the CRD's maxLength, ASCII: 1,000,000 bytes of the 1 MiB
        w.kube.add_testrun("big", {"type": "k6", "script": {"inline": at_max}})
        await w.settle("big")
        assert w.status("big")["phase"] == "Pending" and w.pod_names() == ["big-a1"]
        assert w.kube.objects[("ConfigMap", "ns", "big-script")]["data"]["big.js"] == at_max
        wide = "é" * 600_000  # fewer characters than the maximum, but 1,200,000 bytes in UTF-8
        w.kube.add_testrun("wide", {"type": "k6", "script": {"inline": wide}})
        assert await w.settle("wide") is None
        st = w.status("wide")
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotRejected")
        assert f"1200000 bytes (UTF-8), more than the {MAX_CONFIGMAP_BYTES} bytes" in st["message"]
        assert ("ConfigMap", "ns", "wide-script") not in w.kube.objects and w.ledger.used() == 1
    run(go)


# ---------------------------------------------------------------- a JobRun


def test_a_refused_shard_pod_ends_the_job_error_naming_the_shard_and_stops_the_others():
    async def go():
        w = world(running_capacity=4, queued_capacity=5, database_url="postgresql://fake")
        suite_cm(w)
        w.kube.refuse_create("Pod", 403, QUOTA.format(pod="j-s2-a1"), name="j-s2-a1")
        w.kube.add_jobrun("j", job_spec())
        await settle(w, "j")
        assert await settle(w, "j") is None
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Error", "PodRejected")
        assert st["message"].startswith("shard 2: the API server refused runner pod j-s2-a1 (403)")
        assert "exceeded quota: no-pods" in st["message"]
        assert st["shards"][1]["state"] == "Error" and st["shards"][1]["attemptHistory"][0]["completedAt"]
        assert w.pod_names() == []  # shard 1's pod was stopped before the slots were released
        assert w.ledger.used() == 0 and st["recorded"] is True
        assert w.kube.calls.count("create Pod") == 2  # each shard's pod asked for once
        assert any(r == "PodRejected" and "shard 2" in m for _, r, m in w.events.posted)
        uid = w.kube.jobrun("j")["metadata"]["uid"]
        assert w.store.jobs[uid].reason == "PodRejected"
    run(go)


def test_a_refused_merge_pod_keeps_the_verdict_without_a_merged_report():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        w.kube.refuse_create("Pod", 422, 'Pod "j-merge-a1" is invalid: metadata.labels: Invalid value')
        for pod in ("j-s1-a1", "j-s2-a1"):
            shard_done(w, pod)
        assert await settle(w, "j") is None
        st = status(w)
        assert st["phase"] == "Passed" and st["merge"]["state"] == "Error"
        assert "refused merge pod j-merge-a1 (422)" in st["message"] and w.ledger.used() == 0
    run(go)


def test_a_job_whose_inline_tests_are_over_a_configmap_ends_error_at_admission():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        tests = [{"name": f"t{i}", "script": {"inline": "y" * 400_000}} for i in range(3)]
        w.kube.add_jobrun("j", {"type": "k6", "tests": tests, "parallelism": 2})
        assert await jobrun.step(handle(w, "j")) is None
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Error", "SnapshotRejected")
        assert "1200000 bytes" in st["message"] and "testsFrom.git" in st["message"]
        assert w.ledger.used() == 0 and w.pod_names() == []
    run(go)


def test_a_refused_runner_secret_ends_the_run_and_the_job_too():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        # The pod's own upload grant (a Secret per pod) is refused, e.g. by a quota on Secrets.
        w.kube.refuse_create("Secret", 403, 'secrets is forbidden: exceeded quota: s')
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Error", "PodRejected") and "exceeded quota: s" in st["message"]
        assert "Secret 'a-a1-upload' (the pod's upload grant)" in st["message"]
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec())
        assert await settle(w, "j") is None
        job = status(w)
        assert (job["phase"], job["reason"]) == ("Error", "PodRejected") and "-upload' (the pod's upload grant)" \
            in job["message"]
        assert w.ledger.used() == 0 and w.pod_names() == []
    run(go)
