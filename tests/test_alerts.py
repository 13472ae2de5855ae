"""The chart's alerts and the dashboard's queries, judged by Prometheus' own promtool.

The PrometheusRule is rendered by helm and its groups checked (`promtool check rules`: PromQL, durations,
the annotations' templates) and unit-tested (`promtool test rules`, tests/alerts/*.test.yaml: each alert
fires when it should and not when it should not), with the default values and with others. Every query of
the Grafana dashboard is parsed the same way, as a recording rule, once its variables are substituted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from supercheck.config import Settings
from supercheck.metrics import Metrics
from supercheck_localenv.layout import REPO_ROOT

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "supercheck"
DASHBOARD = CHART / "dashboards" / "supercheck.json"
ALERT_TESTS = REPO_ROOT / "tests" / "alerts"
PINNED = (REPO_ROOT / "hack" / "kube-build" / "VERSION").read_text().strip()
# What Grafana puts in place of the dashboard's variables ("All" is the regex .*)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$type": ".*"}


@pytest.fixture(scope="module")
def promtool() -> str:
    res = subprocess.run([str(REPO_ROOT / "hack" / "build-promtool.sh"), "--cached"], capture_output=True, text=True)
    if res.returncode == 0:
        return res.stdout.strip()
    if os.environ.get("CI") == "true":  # CI installed everything first: a missing promtool is a fault there
        pytest.fail("promtool is not built: hack/build-promtool.sh (hack/install-deps.sh builds it)")
    pytest.skip("promtool is not built: run hack/build-promtool.sh (about 3 minutes)")


def rule_groups(helm: str, *values: str) -> list[dict]:
    res = subprocess.run(
        [helm, "template", "sc", str(CHART), "--namespace", "supercheck-system", "--kube-version", PINNED,
         "--set", "metrics.prometheusRule.enabled=true", *values, "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    rule = yaml.safe_load(res.stdout)
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def alerts(groups: list[dict]) -> dict[str, dict]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


def promtool_run(promtool: str, *args: str, cwd: Path) -> str:
    res = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def write_rules(path: Path, groups: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


CUSTOM = ("-f", str(ALERT_TESTS / "custom-values.yaml"))


@pytest.mark.parametrize("values", [(), CUSTOM], ids=["default", "custom"])
def test_the_rules_pass_promtool_check(promtool, helm, tmp_path, values):
    groups = rule_groups(helm, *values)
    out = promtool_run(promtool, "check", "rules", str(write_rules(tmp_path / "rules.yaml", groups)), cwd=tmp_path)
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in out


@pytest.mark.parametrize(("values", "tests"), [((), "supercheck-rules.test.yaml"),
                                               (CUSTOM, "supercheck-rules-custom.test.yaml")],
                         ids=["default", "custom"])
def test_the_alerts_fire_when_they_should_and_only_then(promtool, helm, tmp_path, values, tests):
    groups = rule_groups(helm, *values)
    for rule in (r for g in groups for r in g["rules"]):
        rule["annotations"].pop("description")  # the tests compare the summaries only (see the test files)
    write_rules(tmp_path / "supercheck-rules.yaml", groups)
    shutil.copy(ALERT_TESTS / tests, tmp_path / tests)
    out = promtool_run(promtool, "test", "rules", tests, cwd=tmp_path)
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_alert_has_a_severity_a_runbook_and_unit_tests(helm):
    rendered = alerts(rule_groups(helm))
    assert {"SupercheckNoActiveReplica", "SupercheckLedgerUnavailable", "SupercheckQueueNearlyFull",
            "SupercheckRejectionsRising", "SupercheckResultsNotRecorded", "SupercheckRunsStuckPending",
            "SupercheckMonitorDown", "SupercheckScheduleLagging"} <= set(rendered)
    for name, rule in rendered.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 100, name
    # Each alert is tested both ways: firing at some time, and silent at another
    cases = [case for t in yaml.safe_load((ALERT_TESTS / "supercheck-rules.test.yaml").read_text())["tests"]
             for case in t["alert_rule_test"]]
    for name in rendered:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} is never seen firing"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} is never seen silent"


def test_the_values_set_the_thresholds_and_the_operators_series(helm):
    default, custom = alerts(rule_groups(helm)), alerts(rule_groups(helm, *CUSTOM))
    assert 'supercheck_operator_active{job="sc-supercheck-metrics"}' in default["SupercheckNoActiveReplica"]["expr"]
    assert "absent(" in default["SupercheckNoActiveReplica"]["expr"]  # the operator gone entirely
    assert 'supercheck_operator_active{namespace="ops", service="supercheck"}' in \
        custom["SupercheckNoActiveReplica"]["expr"]
    assert [custom[a]["for"] for a in ("SupercheckNoActiveReplica", "SupercheckLedgerUnavailable",
                                       "SupercheckQueueNearlyFull", "SupercheckRejectionsRising",
                                       "SupercheckResultsNotRecorded")] == ["1m", "30s", "2m", "3m", "30m"]
    assert "> 0.5" in custom["SupercheckQueueNearlyFull"]["expr"] and "0.5" in \
        custom["SupercheckQueueNearlyFull"]["annotations"]["description"]
    assert "[1h]" in custom["SupercheckRunsStuckPending"]["expr"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, query) for every panel target and every query variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    queries = [(f"panel {p['id']} {t['refId']}", t["expr"]) for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            # label_values(selector, label) is Grafana's: the selector is the PromQL promtool can parse
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert match, var["query"]
            queries.append((f"variable {var['name']}", match.group(1)))
    return queries


def substitute(query: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        query = query.replace(name, value)
    assert "$" not in query, f"a Grafana variable the test does not know: {query}"
    return query


def test_every_dashboard_query_parses(promtool, tmp_path):
    queries = dashboard_queries()
    assert len(queries) > 20
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(q)} for i, (_, q) in enumerate(queries)]
    path = write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}])
    out = promtool_run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out


def metric_labels() -> dict[str, set[str]]:
    metrics = Metrics(Settings())
    return {m._name: set(m._labelnames) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


# A metric's name (less a histogram's or counter's suffix) and its label matchers, if any
SELECTOR = re.compile(r"\b(supercheck_[a-z0-9_]+?)(?:_bucket|_count|_sum|_total)?(\{[^}]*\})?[\s)\[=]")


def test_the_dashboard_filters_by_its_variables_and_the_rate_interval():
    labels = metric_labels()
    labels |= {"supercheck_namespace_running": {"namespace"}, "supercheck_namespace_queued": {"namespace"}}
    run_types = {name for name, names in labels.items()
                 if "type" in names and not name.startswith("supercheck_monitor")}  # a Monitor's type: http, tcp...
    with_namespace = {name for name, names in labels.items() if "namespace" in names}
    assert {"supercheck_testruns", "supercheck_rejections", "supercheck_queue_wait_seconds"} <= run_types
    filtered = 0
    for where, query in dashboard_queries():
        assert not re.search(r"\[\d+[smhdw]\]", query), f"{where}: a fixed range instead of $__rate_interval"
        if where.startswith("variable"):
            continue
        for name, selector in SELECTOR.findall(query + " "):
            if name in run_types:
                assert 'type=~"$type"' in selector, f"{where}: {name} without the type variable"
                filtered += 1
            if name in with_namespace:
                assert 'namespace=~"$namespace"' in selector, f"{where}: {name} without the namespace variable"
                filtered += 1
    assert filtered >= 10
