"""The Kube adapter's full lists (kube.Kube.list_runs / list_pods): page by page, each item slimmed to
what the ledger repair and the finished-pod sweep read, and those decisions unchanged by the slimming.

A stand-in server answering list calls as the API server does (``limit`` and ``continue``), because
the real API server runs only in the local environment; there the same lists feed the ledger repair
of tests/operator/test_cluster_faults.py."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client
from stand_in_kit import send_json

from supercheck import kube as kube_mod
from supercheck import repair
from supercheck.kube import Kube

SCRIPT = "export default function () {}\n" * 200  # the bulk of a run's bytes: never kept


def run(i: int, phase: str, slot: str | None, priority: int = 0) -> dict:
    status = {"phase": phase, "queueSeq": i, "attempts": 1, "message": "m" * 100,
              "attemptHistory": [{"attempt": 1, "failureClass": "none"}]}
    if slot:
        status["slot"] = slot
    if phase == "Passed":
        status["completedAt"] = "2030-01-01T12:00:00Z"
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun",
            "metadata": {"name": f"r{i}", "namespace": "ns", "uid": f"u{i}", "resourceVersion": str(i),
                         "annotations": {"a": "b"}, "managedFields": [{"manager": "kubectl"}],
                         "creationTimestamp": "2030-01-01T11:00:00Z"},
            "spec": {"type": "k6", "priority": priority, "script": {"inline": SCRIPT}},
            "status": status}


def pod(i: int, terminated: bool) -> dict:
    state = {"terminated": {"exitCode": 0, "message": "{}"}} if terminated else {"running": {}}
    return {"metadata": {"name": f"r{i}-a1", "namespace": "ns", "uid": f"p{i}",
                         "labels": {"supercheck.io/attempt": "1"},
                         "ownerReferences": [{"kind": "TestRun", "uid": f"u{i}"}]},
            "spec": {"containers": [{"name": "runner", "env": [{"name": "X", "value": "y" * 500}]}]},
            "status": {"phase": "Succeeded" if terminated else "Running",
                       "containerStatuses": [{"name": "runner", "state": state}]}}


RUNS = [run(i, *[("Queued", "queued", 3), ("Running", "running", 0), ("Passed", None, 0)][i % 3])
        for i in range(7)]
PODS = [pod(i, terminated=i % 3 == 2) for i in range(7) if i % 3]


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setattr(kube_mod, "LIST_PAGE", 3)
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen.append({"path": url.path, **query})
            items = {"testruns": RUNS, "jobruns": [], "pods": PODS}[url.path.rsplit("/", 1)[1]]
            start, limit = int(query.get("continue") or 0), int(query["limit"])
            page = {"items": items[start:start + limit], "metadata": {}}
            if start + limit < len(items):
                page["metadata"]["continue"] = str(start + limit)
            send_json(self, 200, page)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}"))
    k = Kube()
    k.core, k.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    yield k, seen
    server.shutdown()
    server.server_close()


def test_full_lists_are_read_page_by_page_and_keep_every_item(served):
    k, seen = served
    runs = asyncio.run(k.list_runs())
    pods = asyncio.run(k.list_pods("supercheck.io/testrun"))
    assert [r["metadata"]["uid"] for r in runs] == [r["metadata"]["uid"] for r in RUNS]
    assert [p["metadata"]["name"] for p in pods] == [p["metadata"]["name"] for p in PODS]
    testrun_pages = [s for s in seen if s["path"].endswith("/testruns")]
    assert [s.get("continue") for s in testrun_pages] == [None, "3", "6"]  # 7 runs, 3 a page
    assert all(s["limit"] == "3" for s in seen)
    assert all(s.get("labelSelector") == "supercheck.io/testrun" for s in seen if s["path"].endswith("/pods"))


def test_slimmed_items_drop_scripts_and_specs_and_keep_what_the_repair_reads(served):
    k, _ = served
    runs = asyncio.run(k.list_runs())
    pods = asyncio.run(k.list_pods("supercheck.io/testrun"))
    assert all("script" not in r["spec"] and "managedFields" not in r["metadata"] for r in runs)
    assert all("spec" not in p for p in pods)
    assert len(json.dumps(runs)) * 10 < len(json.dumps(RUNS))
    # Every decision made from the lists is the same as from the whole objects.
    assert repair.desired_ledger(runs, pods) == repair.desired_ledger(RUNS, PODS)
    assert [repair.status_of(r) for r in runs] == [repair.status_of(r) for r in RUNS]
    assert [repair.slots_of(r) for r in runs] == [repair.slots_of(r) for r in RUNS]
    now = 1893499200.0 + 3600  # an hour after the runs ended
    assert repair.finished_pods_to_clean(runs, pods, now, 60) == repair.finished_pods_to_clean(RUNS, PODS, now, 60)
    assert repair.finished_pods_to_clean(runs, pods, now, 60)  # the comparison is not of two empty lists
