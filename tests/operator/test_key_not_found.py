"""A missing key of a referenced ConfigMap or Secret: the message says which key of which object, and
lists a ConfigMap's keys (to help) but never a Secret's (their names say what it holds, and every
reader of the run sees the message)."""

from __future__ import annotations

from engine_kit import K6, run, world
from test_engine_jobrun import handle, status

from supercheck.engine import jobrun

SECRET_KEYS = {"AWS_SECRET_ACCESS_KEY": "c2s=", "prod-db-password": "cHc=", "stripe-live-key": "aw=="}


def secret(w, name: str = "creds") -> None:
    w.kube.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"},
                "data": dict(SECRET_KEYS)})


def test_a_missing_secret_key_is_named_and_the_secrets_other_keys_are_not():
    async def go():
        w = world(script_ref_grace_seconds=0.0)
        secret(w)
        w.kube.add_testrun("a", {**K6, "env": [{"name": "TOKEN", "valueFrom": {
            "secretKeyRef": {"name": "creds", "key": "token"}}}]})
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Error", "KeyNotFound")
        assert st["message"] == "Secret 'creds' referenced by spec.env[0].valueFrom.secretKeyRef has no key 'token'"
        for key in SECRET_KEYS:
            assert key not in str(w.kube.testrun("a")["status"]) and all(key not in m for _, _, m in w.events.posted)
    run(go)


def test_a_missing_configmap_key_lists_the_keys_it_has():
    async def go():
        w = world(script_ref_grace_seconds=0.0)
        w.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"},
                    "data": {"base-url": "x", "region": "y"}})
        w.kube.add_testrun("a", {**K6, "env": [{"name": "URL", "valueFrom": {
            "configMapKeyRef": {"name": "cfg", "key": "url"}}}]})
        assert await w.settle("a") is None
        assert w.status("a")["message"].endswith("has no key 'url' (it has: base-url, region)")
    run(go)


def test_a_jobs_missing_secret_key_lists_no_keys_either():
    async def go():
        w = world(running_capacity=4, queued_capacity=5, script_ref_grace_seconds=0.0)
        secret(w)
        w.kube.add_jobrun("j", {"type": "k6", "tests": [{"name": "t", "script": {"inline": "export default "
                                                                                       "function () {}"}}],
                                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                                     "key": "password"}}}]})
        assert await jobrun.step(handle(w, "j")) is None
        st = status(w)
        assert (st["phase"], st["reason"]) == ("Error", "KeyNotFound")
        assert st["message"].endswith("has no key 'password'")
        assert all(key not in st["message"] for key in SECRET_KEYS)
    run(go)
