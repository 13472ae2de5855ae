"""The committed CRDs are what the models generate; the schema says what the contract says."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from supercheck import crdgen
from supercheck.config import Settings
from supercheck.models import TestRunSpec, TestRunStatus

BOUNDS_ENV = ("RUNNER_MAX_CPU", "RUNNER_MAX_MEMORY", "RUNNER_MAX_EPHEMERAL_STORAGE")


@pytest.fixture
def default_settings(monkeypatch):
    for name in BOUNDS_ENV:
        monkeypatch.delenv(name, raising=False)
    return Settings()


def test_committed_crds_match_the_models(default_settings):
    for name, text in crdgen.files(default_settings).items():
        committed = (crdgen.CRD_DIR / name).read_text()
        assert committed == text, f"crds/{name} is stale: run `python -m supercheck.crdgen`"


def test_names_short_name_category_and_status_subresource(default_settings):
    crd = crdgen.testrun_crd(default_settings)
    names = crd["spec"]["names"]
    assert crd["spec"]["group"] == "supercheck.io"
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == \
        ("TestRun", "testruns", ["tr"], ["supercheck"])
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    for col in ("Phase", "Type", "Result", "Attempts", "Duration", "Age"):
        assert col in columns


def _walk(schema, path):
    for part in path:
        schema = schema["properties"][part]
    return schema


def test_schema_carries_enums_bounds_and_exactly_one_script_source(default_settings):
    root = crdgen.testrun_crd(default_settings)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    assert set(spec["required"]) == {"type", "script"}
    assert _walk(spec, ["type"])["enum"] == ["playwright", "k6"]
    prio = _walk(spec, ["priority"])
    assert (prio["minimum"], prio["maximum"], prio["default"]) == (-1000, 1000, 0)
    assert _walk(spec, ["timeoutSeconds"])["maximum"] == 86400
    rules = _walk(spec, ["script"])["x-kubernetes-validations"]
    assert any("has(self.inline) != has(self.configMapRef)" == r["rule"] for r in rules)
    res_rules = _walk(spec, ["resources"])["x-kubernetes-validations"]
    assert any("quantity('8Gi')" in r["rule"] and "RUNNER_MAX_MEMORY" in r["message"] for r in res_rules)
    phases = _walk(root["properties"]["status"], ["phase"])["enum"]
    assert phases == ["Pending", "Queued", "Running", "Uploading", "Passed", "Failed", "Error", "TimedOut",
                      "Cancelled", "Rejected"]


def _no_refs(node):
    if isinstance(node, dict):
        assert "$ref" not in node and "anyOf" not in node and "additionalProperties" not in node or \
            node.get("type") == "object"
        for v in node.values():
            _no_refs(v)
    elif isinstance(node, list):
        for v in node:
            _no_refs(v)


def test_schema_is_structural(default_settings):
    _no_refs(crdgen.testrun_crd(default_settings))


def test_every_model_field_is_in_the_schema(default_settings):
    root = crdgen.testrun_crd(default_settings)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(TestRunSpec.model_fields) == set(root["properties"]["spec"]["properties"])
    assert set(TestRunStatus.model_fields) == set(root["properties"]["status"]["properties"])


def test_example_manifests_validate_against_the_models():
    examples = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
    found = 0
    for root, _, files in os.walk(examples):
        for f in files:
            if not f.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(root, f)) as fh:
                for doc in yaml.safe_load_all(fh):
                    if doc and doc.get("kind") == "TestRun":
                        TestRunSpec.model_validate(doc["spec"])
                        found += 1
    if not found:
        pytest.skip("no example TestRuns yet")


def _playwright(**options):
    return TestRunSpec.model_validate({"type": "playwright", "script": {"inline": "x"}, "playwright": options})


@pytest.mark.parametrize("options, complaint", [
    ({"baseURL": "shop.test"}, "baseURL"),
    ({"baseURL": "ftp://shop.test/"}, "baseURL"),
    ({"baseURL": "http://shop test/"}, "baseURL"),
    ({"viewport": {"width": 0, "height": 600}}, "viewport.width"),
    ({"viewport": {"width": 800, "height": 99999}}, "viewport.height"),
    ({"viewport": {"width": 800}}, "viewport.height"),
    ({"locale": "german"}, "locale"),
    ({"timezoneId": "../../etc/passwd"}, "timezoneId"),
    ({"extraHTTPHeaders": {"X Bad": "1"}}, "header name 'X Bad'"),
    ({"extraHTTPHeaders": {"X-Ok": "one\r\nX-Injected: two"}}, "extraHTTPHeaders.X-Ok"),
    ({"testTimeoutSeconds": 0}, "testTimeoutSeconds"),
    ({"testTimeoutSeconds": 3601}, "testTimeoutSeconds"),
])
def test_playwright_use_options_are_validated(options, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        _playwright(**options)


def test_valid_use_options_are_kept_as_written():
    pw = _playwright(baseURL="http://127.0.0.1:8080/app/", viewport={"width": 390, "height": 844},
                     locale="zh-Hant-TW", timezoneId="America/Argentina/Buenos_Aires",
                     extraHTTPHeaders={"X-Test-Run": "a b c", "Accept-Language": "de"}).playwright
    assert pw.use()["baseURL"] == "http://127.0.0.1:8080/app/"  # not normalised: the trailing slash matters
    assert pw.use()["viewport"] == {"width": 390, "height": 844}


def test_a_test_timeout_above_the_run_timeout_is_refused_by_the_model_and_the_crd(default_settings):
    with pytest.raises(ValueError, match="must not exceed spec.timeoutSeconds"):
        TestRunSpec.model_validate({"type": "playwright", "script": {"inline": "x"}, "timeoutSeconds": 20,
                                    "playwright": {"testTimeoutSeconds": 30}})
    root = crdgen.testrun_crd(default_settings)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    assert any("self.playwright.testTimeoutSeconds <= self.timeoutSeconds" in r["rule"]
               for r in spec["x-kubernetes-validations"])
    headers_rule = _walk(spec, ["playwright"])["x-kubernetes-validations"][0]["rule"]
    assert "extraHTTPHeaders.all(k, k.matches(" in headers_rule
    values = _walk(spec, ["playwright", "extraHTTPHeaders"])["additionalProperties"]
    assert values["pattern"] == "^[^\\r\\n]*$" and values["maxLength"] == 4096
