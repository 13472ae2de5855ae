"""The Kube adapter's log tail (kube.Kube.pod_log_tail) against an HTTP server answering the API
server's pod log endpoint as it does: the text, 400 for a container not started, 404, 403, 5xx.

A stand-in server, because the real API server runs only in the local environment; the same call
runs there in tests/operator/test_cluster_faults.py (the Uploading phase)."""

from __future__ import annotations

import asyncio
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from supercheck.kube import Kube
from supercheck.ports import ApiUnavailable

ANSWERS = {
    "running": (200, "line 1\n[supercheck] phase=Uploading reason=StorageUnavailable: S3 down\n"),
    "waiting": (400, '{"kind":"Status","reason":"BadRequest","message":"container \\"runner\\" is waiting"}'),
    "gone": (404, '{"kind":"Status","reason":"NotFound"}'),
    "forbidden": (403, '{"kind":"Status","reason":"Forbidden"}'),
    "broken": (503, '{"kind":"Status","reason":"ServiceUnavailable"}'),
    "teapot": (418, '{"kind":"Status","reason":"Teapot"}'),
}


@pytest.fixture
def api():
    seen: list[tuple[str, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlsplit(self.path)
            seen.append((url.path, parse_qs(url.query)))
            pod = url.path.split("/")[-2]
            status, body = ANSWERS[pod]
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if status == 200 else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    kube = Kube()
    kube.core = client.CoreV1Api(client.ApiClient(cfg))
    yield kube, seen
    server.shutdown()
    server.server_close()


def tail(kube: Kube, pod: str) -> str | None:
    return asyncio.run(kube.pod_log_tail("ns", pod, "runner", 20, 65536))


def test_the_tail_of_the_runner_container_is_asked_for_and_read(api):
    kube, seen = api
    assert tail(kube, "running") == ANSWERS["running"][1]
    path, query = seen[-1]
    assert path == "/api/v1/namespaces/ns/pods/running/log"
    assert query == {"container": ["runner"], "tailLines": ["20"], "limitBytes": ["65536"]}


def test_no_log_to_read_is_none_and_a_broken_api_server_is_unavailable(api, caplog):
    kube, _ = api
    assert tail(kube, "waiting") is None and tail(kube, "gone") is None
    assert tail(kube, "teapot") is None  # anything else: logged, never raised into the run's step
    with caplog.at_level(logging.WARNING, logger="supercheck.kube"):
        assert tail(kube, "forbidden") is None and tail(kube, "forbidden") is None
    said = [r.getMessage() for r in caplog.records if "forbidden" in r.getMessage()]
    assert len(said) == 1 and "pods/log" in said[0]  # once, with what to grant
    with pytest.raises(ApiUnavailable, match="503"):
        tail(kube, "broken")
