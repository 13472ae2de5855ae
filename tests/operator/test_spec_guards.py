"""What a spec may not set (docs/security.md, "What a spec may not set"): the models refuse it, the
generated CRD carries a rule saying the same words, and the lists behind both are one
(supercheck_contract.reserved). The API server's own verdict: tests/security/test_spec_guards.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from engine_kit import K6, result, run, world
from pydantic import ValidationError

from supercheck import crdgen
from supercheck.config import Settings
from supercheck.engine import jobrun
from supercheck.jobmodels import JobRunSpec
from supercheck.models import TestRunSpec
from supercheck_contract import ExitCode, FailureClass, reserved
from tests.security.spec_guard_cases import ACCEPTED, JOBRUN_REFUSED, REFUSED, make_jobrun, make_testrun

# ---------------------------------------------------------------- the models


@pytest.mark.parametrize("case, fragment, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_models_refuse_saying_what_to_fix(case, fragment, words):
    """The operator's own check (a run the API server did not judge is refused InvalidSpec with it)."""
    for model, body in ((TestRunSpec, make_testrun("x", fragment)), (JobRunSpec, make_jobrun("x", fragment))):
        with pytest.raises(ValidationError) as err:
            model.model_validate(body["spec"])
        assert words in str(err.value), (model.__name__, str(err.value))


@pytest.mark.parametrize("case, fragment, words", JOBRUN_REFUSED, ids=[c[0] for c in JOBRUN_REFUSED])
def test_a_jobruns_git_credentials_may_not_name_the_operators_secrets(case, fragment, words):
    with pytest.raises(ValidationError, match=re.escape(words)):
        JobRunSpec.model_validate(make_jobrun("x", fragment)["spec"])


@pytest.mark.parametrize("case, fragment", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_the_neighbours_are_accepted(case, fragment):
    TestRunSpec.model_validate(make_testrun("x", fragment)["spec"])
    JobRunSpec.model_validate(make_jobrun("x", fragment)["spec"])


# ---------------------------------------------------------------- the CRDs


def _messages(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            found.add(rule["message"])
        for value in node.values():
            found |= _messages(value)
    elif isinstance(node, list):
        for value in node:
            found |= _messages(value)
    return found


def _spec(crd: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


@pytest.mark.parametrize("crd", [crdgen.testrun_crd(Settings()), crdgen.jobrun_crd(Settings())],
                         ids=["TestRun", "JobRun"])
def test_every_refusal_is_a_rule_of_the_crd(crd):
    messages = _messages(_spec(crd))
    cases = REFUSED + (JOBRUN_REFUSED if crd["spec"]["names"]["kind"] == "JobRun" else [])
    for case, _, words in cases:
        assert any(words in m for m in messages), f"{case}: no rule of the CRD says {words!r}"


@pytest.mark.parametrize("crd", [crdgen.testrun_crd(Settings()), crdgen.jobrun_crd(Settings())],
                         ids=["TestRun", "JobRun"])
def test_the_rules_cost_is_bounded(crd):
    """The API server estimates each rule's cost from maxItems and maxLength and refuses the CRD over
    its budget: every string a new rule reads, and every list of them, is bounded."""
    spec = _spec(crd)["properties"]
    env, env_from = spec["env"], spec["envFrom"]
    assert (env["maxItems"], env_from["maxItems"], spec["k6"]["properties"]["args"]["maxItems"]) == (256, 32, 64)
    env_item, from_item = env["items"]["properties"], env_from["items"]["properties"]
    bounded = [env_item["name"], from_item["prefix"], spec["k6"]["properties"]["args"]["items"],
               from_item["secretRef"]["properties"]["name"], from_item["configMapRef"]["properties"]["name"],
               env_item["valueFrom"]["properties"]["secretKeyRef"]["properties"]["name"],
               env_item["valueFrom"]["properties"]["secretKeyRef"]["properties"]["key"],
               env_item["valueFrom"]["properties"]["configMapKeyRef"]["properties"]["key"]]
    assert all(0 < s["maxLength"] <= 1024 for s in bounded)


def _rules(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        return own + [r for v in node.values() for r in _rules(v)]
    if isinstance(node, list):
        return [r for v in node for r in _rules(v)]
    return []


@pytest.mark.parametrize("crd", [crdgen.testrun_crd(Settings()), crdgen.jobrun_crd(Settings())],
                         ids=["TestRun", "JobRun"])
def test_no_rule_quotes_a_pattern_with_an_escape_cel_does_not_know(crd):
    """A regex's escaped dot inside a CEL string literal does not compile: the API server refuses the
    whole CRD. The patterns use [.] instead; this holds every rule to CEL's escapes."""
    for rule in _rules(_spec(crd)):
        for literal in re.findall(r"'((?:[^'\\]|\\.)*)'", rule):
            assert not re.search(r"\\[^abfnrtv\\'\"`?xuU0-7]", literal), rule


def test_the_crds_rules_are_generated_from_the_shared_lists():
    spec = _spec(crdgen.testrun_crd(Settings()))["properties"]
    name_rules = [r["rule"] for r in spec["env"]["items"]["x-kubernetes-validations"]]
    assert any(reserved.RESERVED_ENV_PATTERN in r and "'NODE_EXTRA_CA_CERTS'" in r for r in name_rules)
    arg_rule = spec["k6"]["properties"]["args"]["items"]["x-kubernetes-validations"][0]["rule"]
    assert reserved.K6_ARG_PATTERN in arg_rule


# ---------------------------------------------------------------- the lists themselves


@pytest.mark.parametrize("name", [
    "SUPERCHECK_ALLOWED_MODULES", "SUPERCHECK_UPLOAD_GRANT", "NODE_OPTIONS", "NODE_PATH", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "AWS_ACCESS_KEY_ID", "AWS_CONFIG_FILE", "S3_ENDPOINT_URL",
    "PLAYWRIGHT_BROWSERS_PATH", "PW_TEST_REPORTER", "K6_OUT", "K6_SUMMARY_EXPORT", "K6_BROWSER_EXECUTABLE_PATH",
    "GIT_CONFIG_GLOBAL", "HOME", "PATH", "TMPDIR", "OPENSSL_MODULES", "CHROMIUM_FLAGS", "GCONV_PATH",
    "GLIBC_TUNABLES", "BASH_ENV", "TINI_SUBREAPER",
])
def test_names_that_change_what_runs_are_reserved(name):
    assert reserved.reserved_env(name) is not None
    assert re.search(reserved.RESERVED_ENV_PATTERN, name)


@pytest.mark.parametrize("name", [
    "BASE_URL", "ENV", "NODE_ENV", "NODE_EXTRA_CA_CERTS", "K6_WEB_DASHBOARD_PERIOD", "GIT_SSL_CAINFO",
    "HTTPS_PROXY", "SSL_CERT_FILE", "TZ", "LANG", "DEBUG", "home", "MY_PATH", "APP_NODE_OPTIONS",
])
def test_names_of_the_tests_own_are_not(name):
    assert reserved.reserved_env(name) is None


@pytest.mark.parametrize("prefix, refused", [
    ("APP_", False), ("MY_", False), ("X", False), ("NODE_", True), ("NODE_X_", True), ("SUPER", True),
    ("S", True), ("P", True), ("PY", True), ("LD", True), ("K6", True), ("GIT_SSL_", True), ("H", True),
])
def test_a_prefix_is_reserved_when_some_key_could_make_a_reserved_name(prefix, refused):
    assert reserved.reserved_prefix(prefix) is refused


@pytest.mark.parametrize("args, refused", [
    (["--address", ""], "--address"), (["-a", "x"], "-a"), (["-qa:1"], "-qa:1"), (["-vqp"], "-vqp"),
    (["--vus", "2", "--out=json=x"], "--out=json=x"), (["-l"], "-l"), (["--summary-mode=full"], None),
    (["-d30s", "-u10", "-i", "3", "-s", "10s:5", "-eAPP=allow"], None), (["-ejson=1"], None),
    (["--outfile"], None), (["--quiet"], None), (["-w"], None),
])
def test_k6_flags(args, refused):
    assert reserved.refused_k6_arg(args) == refused


def test_an_operator_secret_is_the_shared_key_or_an_upload_grant():
    assert reserved.operator_secret("supercheck-runner-s3") and reserved.operator_secret("run-a1-upload")
    assert not reserved.operator_secret("supercheck-runner-s3-copy") and not reserved.operator_secret("uploads")


# ---------------------------------------------------------------- an envFrom source's keys


def _secret(name: str, keys: list[str]) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": "ns"}, "data": {k: "eA==" for k in keys}}


def test_an_unprefixed_source_with_a_reserved_key_is_refused_naming_only_that_key():
    async def go():
        w = world()
        w.kube.add(_secret("shop-env", ["NODE_OPTIONS", "db-password", "BASE_URL"]))
        w.kube.add_testrun("a", {**K6, "envFrom": [{"secretRef": {"name": "shop-env"}}]})
        w.clock.advance(11)
        assert await w.settle("a") is None
        st = w.status("a")
        assert (st["phase"], st["reason"], st["attempts"]) == ("Error", "InvalidSpec", 0)
        assert "Secret 'shop-env' referenced by spec.envFrom[0].secretRef without a prefix" in st["message"]
        assert "(NODE_OPTIONS;" in st["message"] and "db-password" not in st["message"]
        assert w.pod_names() == [] and not w.ledger.running
    run(go)


def test_the_same_source_with_a_prefix_runs():
    async def go():
        w = world()
        w.kube.add(_secret("shop-env", ["NODE_OPTIONS", "BASE_URL"]))
        w.kube.add({"kind": "ConfigMap", "metadata": {"name": "more", "namespace": "ns"}, "data": {"A": "1"}})
        w.kube.add_testrun("a", {**K6, "envFrom": [{"prefix": "APP_", "secretRef": {"name": "shop-env"}},
                                                   {"configMapRef": {"name": "more"}}]})
        await w.settle("a")
        assert w.status("a")["phase"] == "Pending" and w.pod_names() == ["a-a1"]
    run(go)


def test_a_key_added_while_the_run_waited_is_refused_before_its_pod():
    """Checked again right before the pod: the source was clean at admission, then edited while the
    run was queued; the run ends without a pod and its slot goes to the next."""
    async def go():
        w = world(running_capacity=1, queued_capacity=5)
        w.kube.add(_secret("shop-env", ["BASE_URL"]))
        w.kube.add_testrun("holder", K6)
        await w.settle("holder")
        w.kube.add_testrun("late", {**K6, "envFrom": [{"secretRef": {"name": "shop-env"}}]})
        await w.settle("late")
        assert w.status("late")["phase"] == "Queued"
        w.kube.add(_secret("shop-env", ["BASE_URL", "LD_PRELOAD"]))
        w.kube.pod_terminated("holder-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("holder")
        await w.settle("late")
        st = w.status("late")
        assert (st["phase"], st["reason"]) == ("Error", "InvalidSpec") and "(LD_PRELOAD;" in st["message"]
        assert w.pod_names() == ["holder-a1"] and not w.ledger.running
    run(go)


def test_a_jobrun_with_such_a_source_is_refused_before_its_shards():
    async def go():
        w = world()
        w.kube.add(_secret("shop-env", ["PYTHONPATH", "db-password"]))
        w.kube.add_jobrun("j", {"type": "k6", "tests": [{"name": "smoke", "script": {"inline": "x"}}],
                                "envFrom": [{"secretRef": {"name": "shop-env"}}]})
        for _ in range(5):
            if await jobrun.step(w.handle("j", "JobRun")) != 0.0:
                break
        st = w.kube.jobrun("j").get("status") or {}
        assert (st["phase"], st["reason"]) == ("Error", "InvalidSpec") and "(PYTHONPATH;" in st["message"]
        assert "db-password" not in st["message"] and w.pod_names() == []
    run(go)


def test_reserved_keys_with_a_prefix():
    assert reserved.reserved_keys(["NODE_OPTIONS", "a", "PATH", "X"]) == ["NODE_OPTIONS", "PATH"]
    assert reserved.reserved_keys(["ALLOWED_MODULES", "a"], prefix="SUPERCHECK_") == ["ALLOWED_MODULES", "a"]
