"""The Kube adapter's create (kube.Kube.create) against an HTTP server answering as the API server
does: a 4xx that refuses the object is Refused, with the API server's message; 409 AlreadyExists,
429 and 5xx keep their meaning (a name taken; try again later).

A stand-in server, because the real API server runs only in the local environment; the same call
meets a ResourceQuota's 403 there in tests/security/test_engine_guards.py."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from stand_in_kit import send_json

from supercheck.kube import Kube
from supercheck.ports import AlreadyExists, ApiUnavailable, Refused

QUOTA = 'pods "a-a1" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0'
ANSWERS = {
    "quota": (403, {"kind": "Status", "reason": "Forbidden", "message": QUOTA}),
    "invalid": (422, {"kind": "Status", "reason": "Invalid",
                      "message": 'Pod "a-a1" is invalid: spec.containers[0].envFrom[0]: Invalid value'}),
    "bad": (400, {"kind": "Status", "reason": "BadRequest", "message": "the policy denied the request"}),
    "large": (413, {}),
    "taken": (409, {"kind": "Status", "reason": "AlreadyExists", "message": 'pods "a-a1" already exists'}),
    "busy": (429, {"kind": "Status", "reason": "TooManyRequests"}),
    "broken": (503, {"kind": "Status", "reason": "ServiceUnavailable"}),
    "nons": (404, {"kind": "Status", "reason": "NotFound", "message": 'namespaces "nons" not found'}),
}


@pytest.fixture
def kube():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            send_json(self, *ANSWERS[self.path.split("/")[4]])  # /api/v1/namespaces/<answer>/pods

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    k = Kube()
    k.core = client.CoreV1Api(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")))
    yield k
    server.shutdown()
    server.server_close()


def create(kube: Kube, answer: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-a1", "namespace": answer}, "spec": {}}
    asyncio.run(kube.create(pod))


@pytest.mark.parametrize("answer, status, message", [
    ("quota", 403, QUOTA),
    ("invalid", 422, 'Pod "a-a1" is invalid: spec.containers[0].envFrom[0]: Invalid value'),
    ("bad", 400, "the policy denied the request"),
    ("large", 413, "413 Request Entity Too Large"),
])
def test_a_refusal_of_the_object_is_refused_with_the_api_servers_message(kube, answer, status, message):
    with pytest.raises(Refused) as caught:
        create(kube, answer)
    assert caught.value.status == status and str(caught.value) == message


def test_other_answers_keep_their_meaning(kube):
    with pytest.raises(AlreadyExists):
        create(kube, "taken")
    for answer in ("busy", "broken"):
        with pytest.raises(ApiUnavailable):
            create(kube, answer)
    with pytest.raises(ApiException) as caught:  # the namespace is gone: not the object's fault
        create(kube, "nons")
    assert caught.value.status == 404
