"""Each runner pod's upload grant on in-memory ports: a Secret of its own, created before the pod,
mounted by it alone, deleted once it has ended; no shared S3 key anywhere (issue 10, item 1)."""

from __future__ import annotations

import json
from typing import Any

from engine_kit import K6, World, result, run, world
from test_engine_jobrun import settle, shard_done, started

from supercheck import podspec
from supercheck.engine import WAIT
from supercheck_contract import ExitCode, FailureClass, UploadGrant, blob_report_key


def secrets(w: World) -> list[str]:
    return sorted(n for (k, _, n) in w.kube.objects if k == "Secret")


def grant_of(w: World, pod: str) -> UploadGrant:
    secret = w.kube.objects[("Secret", "ns", f"{pod}-upload")]
    return UploadGrant.model_validate_json(secret["stringData"][podspec.GRANT_FILE])


def no_shared_key(w: World) -> None:
    everything = json.dumps({f"{k}/{n}": o for (k, _, n), o in w.kube.objects.items()})
    assert "supercheck-runner-s3" not in everything
    assert "AWS_SECRET_ACCESS_KEY" not in everything and '"SK"' not in everything


def mounted_secret(w: World, pod: str) -> str:
    spec: dict[str, Any] = w.kube._pod(pod, "ns")["spec"]
    return next(v["secret"]["secretName"] for v in spec["volumes"] if v["name"] == podspec.UPLOAD_VOLUME)


def test_each_attempt_pod_gets_its_own_grant_which_goes_when_the_pod_has_ended():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == WAIT
        assert secrets(w) == ["a-a1-upload"] and mounted_secret(w, "a-a1") == "a-a1-upload"
        assert w.kube.calls.index("create Secret") < w.kube.calls.index("create Pod")  # before the pod
        uid = w.kube.testrun("a")["metadata"]["uid"]
        secret = w.kube.objects[("Secret", "ns", "a-a1-upload")]
        assert secret["metadata"]["ownerReferences"][0]["uid"] == uid
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "supercheck"
        grant = grant_of(w, "a-a1")
        assert grant.prefix == f"ns/a/{uid}/attempt-1" and grant.bucket == "k6-performance-artifacts"
        assert grant.reads == []
        no_shared_key(w)
        # Attempt 1 fails for the infrastructure: its grant goes, attempt 2 gets one of its own.
        w.kube.pod_running("a-a1")
        await w.settle("a")
        w.kube.pod_terminated("a-a1", 14, result(FailureClass.INFRASTRUCTURE, ExitCode.INFRASTRUCTURE, "S3 away"))
        await w.settle("a")
        assert "a-a1-upload" in w.kube.deleted_secrets
        w.kube.remove_pod("a-a1")
        w.clock.advance(5)
        await w.settle("a")
        assert secrets(w) == ["a-a2-upload"] and grant_of(w, "a-a2").prefix == f"ns/a/{uid}/attempt-2"
        w.kube.pod_running("a-a2")
        await w.settle("a")
        w.kube.pod_terminated("a-a2", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        assert await w.settle("a") is None
        assert secrets(w) == [] and w.kube.deleted_secrets == ["a-a1-upload", "a-a2-upload"]
        no_shared_key(w)
    run(go)


def test_a_grant_already_there_for_this_run_is_kept_and_the_pod_is_created():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.remove_pod("a-a1")  # as if the pod's create had failed after its Secret's
        before = w.kube.objects[("Secret", "ns", "a-a1-upload")]["metadata"]["resourceVersion"]
        assert await w.settle("a") == WAIT
        assert w.pod_names() == ["a-a1"] and secrets(w) == ["a-a1-upload"]
        assert w.kube.objects[("Secret", "ns", "a-a1-upload")]["metadata"]["resourceVersion"] == before
    run(go)


def test_a_grant_secret_of_another_run_of_the_name_is_waited_for_not_mounted():
    async def go():
        w = world()
        w.kube.add({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "a-a1-upload", "namespace": "ns",
            "ownerReferences": [{"kind": "TestRun", "name": "a", "uid": "an-older-run"}]}, "stringData": {}})
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == 2.0  # SUPERCHECK_SERVICE_RETRY_SECONDS
        assert w.pod_names() == []
    run(go)


def test_a_cancelled_runs_pod_loses_its_grant_with_it():
    async def go():
        w = world()
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.pod_running("a-a1")
        await w.settle("a")
        from supercheck.engine.attempts import stop_live_pods
        assert await stop_live_pods(w.handle("a")) is True
        assert "a-a1-upload" in w.kube.deleted_secrets
    run(go)


def test_shards_get_grants_and_the_merge_pod_may_read_exactly_their_blob_reports():
    async def go():
        w = world(running_capacity=4, queued_capacity=5)
        await started(w)
        uid = w.kube.jobrun("j")["metadata"]["uid"]
        assert secrets(w) == ["j-s1-a1-upload", "j-s2-a1-upload"]
        assert mounted_secret(w, "j-s1-a1") == "j-s1-a1-upload"
        assert grant_of(w, "j-s2-a1").prefix == f"ns/j/{uid}/shard-2/attempt-1"
        for pod in ("j-s1-a1", "j-s2-a1"):
            w.kube.pod_running(pod)
        await settle(w, "j")
        shard_done(w, "j-s1-a1")
        shard_done(w, "j-s2-a1")
        await settle(w, "j")
        await settle(w, "j")
        assert "j-merge-a1" in w.pod_names()
        assert {"j-s1-a1-upload", "j-s2-a1-upload"} <= set(w.kube.deleted_secrets)
        merge = grant_of(w, "j-merge-a1")
        assert merge.prefix == f"ns/j/{uid}"
        assert [r.key for r in merge.reads] == [blob_report_key(f"ns/j/{uid}/shard-{i}/attempt-1", i) for i in (1, 2)]
        assert merge.reads[0].key == f"ns/j/{uid}/shard-1/attempt-1/blob/shard-1.zip"
        w.kube.pod_terminated("j-merge-a1", 0, result(FailureClass.NONE, ExitCode.PASSED, "merged"),
                              reason="Completed")
        await settle(w, "j")
        assert secrets(w) == []
        no_shared_key(w)
    run(go)
