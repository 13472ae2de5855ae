"""The live run stream on the local control plane (docs/api.md): real ServiceAccount tokens reviewed by the
real API server (TokenReview, SubjectAccessReview), a real k6 TestRun, resume with Last-Event-ID."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from kubernetes import client
from operator_kit import QUICK_K6, create, get_run, make_run, phase, wait_for

pytestmark = pytest.mark.cluster

ALLOWED_SA, FORBIDDEN_SA = "sse-allowed", "sse-forbidden"


@pytest.fixture
def api_url(kube_env):
    url = kube_env.env.get("SUPERCHECK_API_URL", "http://127.0.0.1:18082")

    def up():
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(up, 30, 0.5, f"the operator's API at {url} (an operator started before it existed: make dev-down, "
                          "make dev-up)")
    return url


@pytest.fixture
def tokens(api_client, core_v1, namespace):
    """Two ServiceAccounts of the test namespace, one with `watch` on testruns; a token for each."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    for sa in (ALLOWED_SA, FORBIDDEN_SA):
        core_v1.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "sse-watch"},
        "rules": [{"apiGroups": ["supercheck.io"], "resources": ["testruns"], "verbs": ["watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "sse-watch"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sse-watch"},
        "subjects": [{"kind": "ServiceAccount", "name": ALLOWED_SA, "namespace": namespace}]})

    def token(sa: str) -> str:
        req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
        return core_v1.create_namespaced_service_account_token(sa, namespace, req).status.token

    return {"allowed": token(ALLOWED_SA), "forbidden": token(FORBIDDEN_SA)}


def request(url: str, token: str | None = None, last_id: str | None = None, timeout: float = 60):
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_id:
        headers["Last-Event-ID"] = last_id
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def refusal(url: str, token: str | None) -> tuple[int, dict]:
    try:
        with request(url, token) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def events(resp, limit: int | None = None) -> list[dict]:
    """The SSE events of a response (id, event, data), to its end or ``limit`` of them."""
    out: list[dict] = []
    current: dict = {}
    while limit is None or len(out) < limit:
        raw = resp.readline()
        if not raw:
            break
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "id" in current:
                out.append(current)
            current = {}
            continue
        field, _, value = line.partition(":")
        if field == "data":
            current["data"] = json.loads(value.removeprefix(" "))
        elif field:
            current[field] = value.removeprefix(" ")
    return out


def test_no_token_is_401_and_a_token_without_watch_is_403(api_url, tokens, namespace):
    url = f"{api_url}/api/v1/namespaces/{namespace}/testruns/anything/events"
    status, body = refusal(url, None)
    assert status == 401 and body["reason"] == "Unauthorized", body
    assert refusal(url, "not-a-token")[0] == 401
    status, body = refusal(url, tokens["forbidden"])
    assert status == 403, body
    assert f"system:serviceaccount:{namespace}:{FORBIDDEN_SA}" in body["message"]
    # The allowed account may watch testruns, not jobruns
    assert refusal(f"{api_url}/api/v1/namespaces/{namespace}/jobruns/anything/events", tokens["allowed"])[0] == 403
    assert refusal(f"{api_url}/api/v1/namespaces/default/testruns/anything/events", tokens["allowed"])[0] == 403


def test_an_allowed_token_follows_a_run_to_passed_and_resumes_without_a_gap(api_url, tokens, namespace,
                                                                           custom_objects):
    url = f"{api_url}/api/v1/namespaces/{namespace}/testruns/sse-run/events"
    token = tokens["allowed"]
    # A witness stream, open from before the run exists to its end (the stream waits for a run not seen yet).
    witness: list[dict] = []
    witness_resp = request(url, token, timeout=240)
    assert witness_resp.status == 200 and witness_resp.headers["Content-Type"] == "text/event-stream"
    reader = threading.Thread(target=lambda: witness.extend(events(witness_resp)), daemon=True)
    reader.start()
    # A client that reads the first event and goes away
    with request(url, token) as first_resp:
        create(custom_objects, namespace, make_run("sse-run", QUICK_K6))
        first = events(first_resp, 1)
    assert len(first) == 1 and first[0]["data"]["phase"] in {"Pending", "Queued", "Running"}, first

    wait_for(lambda: phase(get_run(custom_objects, namespace, "sse-run")) == "Passed", 240, 0.5, "sse-run Passed")
    reader.join(60)
    assert not reader.is_alive(), "the run stream did not end after the terminal event"
    witness_resp.close()

    # The witness saw the whole story, with increasing ids, ending with the final event
    ids = [int(e["id"]) for e in witness]
    phases = [e["data"]["phase"] for e in witness]
    assert ids == sorted(set(ids)), witness
    assert phases[0] in {"Pending", "Queued"} and "Running" in phases and phases[-1] == "Passed", phases
    assert witness[-1]["event"] == "final" and all(e["event"] == "status" for e in witness[:-1])
    assert witness[0]["id"] == first[0]["id"]

    # Reconnecting after the first event: exactly what the witness saw after it, no gap, no repeat
    with request(url, token, last_id=first[0]["id"]) as resumed_resp:
        resumed = events(resumed_resp)
    assert [(e["id"], e["data"]["phase"]) for e in resumed] == [(e["id"], e["data"]["phase"]) for e in witness[1:]]
    assert not any(e["data"].get("resync") for e in resumed)

    # After the final event there is nothing more to wait for
    with request(url, token, last_id=witness[-1]["id"]) as done:
        assert done.status == 204
    # Without an id: the current state, the final event, and the end
    with request(url, token) as again:
        assert [(e["event"], e["data"]["phase"]) for e in events(again)] == [("final", "Passed")]
