"""Watching a list of namespaces (SUPERCHECK_NAMESPACES, the chart's `watchNamespaces`): Kopf is
started for those namespaces only, peers through a KopfPeering in each, and the operator's own
lists go namespace by namespace, since its RBAC then holds Roles in those namespaces only.

The Kube adapter talks to a stand-in HTTP server recording the paths asked for (the real API
server runs only in the local environment; tests/security/test_rbac.py checks the RBAC there)."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest
from kubernetes import client
from stand_in_kit import send_json

from supercheck import operator_main
from supercheck.config import Settings
from supercheck.kube import Kube


@pytest.fixture
def api():
    seen: list[tuple[str, str]] = []
    missing_namespaces = {"later"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

        def do_GET(self):
            seen.append(("GET", self.path.split("?")[0]))
            ns = self.path.split("/namespaces/")[1].split("/")[0] if "/namespaces/" in self.path else None
            self._answer(200, {"items": [{"metadata": {"name": f"in-{ns}"}}]})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(("POST", self.path))
            ns = self.path.split("/namespaces/")[1].split("/")[0] if "/namespaces/" in self.path else None
            if ns in missing_namespaces:
                self._answer(404, {"kind": "Status", "reason": "NotFound", "message": f'namespaces "{ns}" not found',
                                   "details": {"name": ns, "kind": "namespaces"}})
            elif ns == "taken":
                self._answer(409, {"kind": "Status", "reason": "AlreadyExists"})
            else:
                self._answer(201, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    yield cfg, seen
    server.shutdown()
    server.server_close()


def adapter(cfg: client.Configuration, namespaces: list[str]) -> Kube:
    kube = Kube(namespaces)
    api_client = client.ApiClient(cfg)
    kube.core, kube.custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    return kube


def test_watching_namespaces_lists_each_of_them_and_never_the_cluster(api):
    cfg, seen = api
    kube = adapter(cfg, ["team-a", "team-b"])
    runs = asyncio.run(kube.list_runs())
    pods = asyncio.run(kube.list_pods("app.kubernetes.io/managed-by=supercheck"))
    assert [r["metadata"]["name"] for r in runs] == ["in-team-a", "in-team-b"] * 2
    assert [p["metadata"]["name"] for p in pods] == ["in-team-a", "in-team-b"]
    assert [path for _, path in seen] == [
        "/apis/supercheck.io/v1alpha1/namespaces/team-a/testruns",
        "/apis/supercheck.io/v1alpha1/namespaces/team-b/testruns",
        "/apis/supercheck.io/v1alpha1/namespaces/team-a/jobruns",
        "/apis/supercheck.io/v1alpha1/namespaces/team-b/jobruns",
        "/api/v1/namespaces/team-a/pods",
        "/api/v1/namespaces/team-b/pods",
    ]


def test_cluster_wide_lists_once_across_namespaces(api):
    cfg, seen = api
    kube = adapter(cfg, [])
    asyncio.run(kube.list_runs())
    asyncio.run(kube.list_pods("app.kubernetes.io/managed-by=supercheck"))
    assert [path for _, path in seen] == ["/apis/supercheck.io/v1alpha1/testruns",
                                          "/apis/supercheck.io/v1alpha1/jobruns", "/api/v1/pods"]


def test_peering_objects_one_per_watched_namespace_or_one_for_the_cluster(api, monkeypatch):
    cfg, seen = api
    real = client.CustomObjectsApi
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda: real(client.ApiClient(cfg)))
    assert operator_main.ensure_peering(Settings(SUPERCHECK_NAMESPACES="team-a,taken,later"))
    assert seen == [("POST", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings") for ns in ("team-a", "taken", "later")]
    seen.clear()
    assert operator_main.ensure_peering(Settings())
    assert seen == [("POST", "/apis/kopf.dev/v1/clusterkopfpeerings")]


def test_kopf_is_started_for_the_watched_namespaces_only(monkeypatch):
    started: dict[str, Any] = {}
    monkeypatch.setenv("SUPERCHECK_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("SUPERCHECK_HEALTH_PORT", "0")
    monkeypatch.setattr(operator_main.kube, "load_config", lambda: None)
    monkeypatch.setattr(operator_main, "ensure_peering", lambda settings: True)
    monkeypatch.setattr(operator_main.kopf, "run", lambda **kw: started.update(kw))
    assert operator_main.main([]) == 0
    assert started["namespaces"] == ["team-a", "team-b"] and "clusterwide" not in started
    assert started["peering_name"] == "supercheck"
    started["loop"].close()
    monkeypatch.delenv("SUPERCHECK_NAMESPACES")
    started.clear()
    assert operator_main.main([]) == 0
    assert started["clusterwide"] is True and "namespaces" not in started
    started["loop"].close()
