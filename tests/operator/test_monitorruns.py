"""Synthetic checks' pure functions (supercheck.monitorruns): names, labels, the TestRun, outcomes,
history; and the monitor bucket (supercheck.podspec.artifacts_bucket)."""

from __future__ import annotations

import pytest

from supercheck import monitorruns as mr
from supercheck.models import TestRunSpec
from supercheck.monitoring import CheckResult
from supercheck.monitormodels import MonitorSpec
from supercheck.podspec import RunRef, artifacts_bucket
from supercheck.vocabulary import ANNOTATION_SCHEDULED_TIME, LABEL_MONITOR
from supercheck_contract import BUCKETS

K6 = {"script": {"inline": "export default function () {}"}, "options": {"args": ["--vus", "2"]},
      "resources": {"cpu": "500m"}, "envFrom": [{"secretRef": {"name": "creds"}}]}


def test_run_names_are_the_monitor_and_the_due_second():
    assert mr.run_name("shop", 1893499200.75) == "shop-1893499200"
    # at most 63 characters: the runner pods' names and labels are made from the run's name
    long = "a" * 250
    name = mr.run_name(long, 1893499200)
    assert len(name) == 63 and name.endswith("-1893499200")
    # two long names alike at the start stay apart (a hash of the whole name), none ends in '.' or '-'
    other = mr.run_name("a" * 249 + "b", 1893499200)
    assert other != name and len(other) == 63 and other == mr.run_name("a" * 249 + "b", 1893499200)
    assert not mr.run_name("a" * 52 + ".-" + "b" * 10, 1893499200).split("-")[0].endswith((".", "-"))


def test_the_monitor_label_is_its_name_or_a_hash_of_a_long_one():
    assert mr.monitor_label("shop") == "shop"
    hashed = mr.monitor_label("x" * 64)
    assert len(hashed) <= 63 and hashed == mr.monitor_label("x" * 64) != mr.monitor_label("x" * 65)


def test_a_k6_check_makes_a_valid_testrun_with_its_options():
    spec = MonitorSpec.model_validate({"k6": K6, "interval": "5m"})
    run = mr.testrun_for("ns", "api", "uid-1", spec, 1893499200.0, default_priority=100)
    parsed = TestRunSpec.model_validate(run["spec"])
    assert (parsed.type, parsed.priority, parsed.k6.args, parsed.resources.cpu) == ("k6", 100, ["--vus", "2"], "500m")
    assert parsed.envFrom[0].secretRef.name == "creds" and parsed.timeoutSeconds is None
    assert run["metadata"]["annotations"][ANNOTATION_SCHEDULED_TIME] == "2030-01-01T12:00:00.000000Z"
    assert run["metadata"]["labels"] == {LABEL_MONITOR: "api"}
    assert mr.monitor_uid_of(run) == "uid-1" and mr.owned_by(run, "uid-1") and not mr.owned_by(run, "uid-2")
    with pytest.raises(ValueError, match="not a synthetic monitor"):
        mr.testrun_for("ns", "api", "u", MonitorSpec.model_validate({"tcp": {"host": "h", "port": 1}}), 0, 0)


def ended(name: str, phase: str, due: str = "2030-01-01T12:00:00.000000Z", uid: str = "m1", **status) -> dict:
    return {"metadata": {"name": name, "annotations": {ANNOTATION_SCHEDULED_TIME: due},
                         "ownerReferences": [{"kind": "Monitor", "uid": uid, "controller": True}]},
            "status": {"phase": phase, **status}}


@pytest.mark.parametrize(("phase", "status", "expected"), [
    ("Passed", {"result": "3 passed", "startedAt": "2030-01-01T12:00:00.000000Z",
                "completedAt": "2030-01-01T12:00:02.500000Z"}, CheckResult(True, 2500, "TestRun r Passed: 3 passed")),
    ("Failed", {"message": "1 of 3 tests failed"}, CheckResult(False, None, "TestRun r Failed: 1 of 3 tests failed")),
    ("TimedOut", {"reason": "DeadlineExceeded"}, CheckResult(False, None, "TestRun r TimedOut: DeadlineExceeded")),
    ("Error", {"message": "ConfigMap x not found"}, CheckResult(False, None, "TestRun r Error: ConfigMap x not found")),
    ("Rejected", {"message": "the queue is full"}, "no check result: TestRun r was Rejected (the queue is full)"),
    ("Cancelled", {}, "no check result: TestRun r was Cancelled"),
    ("Running", {}, None),
    ("Queued", {}, None),
])
def test_a_run_outcome_as_a_check(phase, status, expected):
    assert mr.outcome(ended("r", phase, **status)) == expected


def test_the_oldest_ended_runs_beyond_the_limit_go_and_active_ones_stay():
    at = "2030-01-01T12:0{}:00.000000Z".format
    runs = [ended("m-3", "Passed", at(3)), ended("m-1", "Failed", at(1)), ended("m-4", "Running", at(4)),
            ended("m-2", "Rejected", at(2)), ended("other-0", "Passed", at(0), uid="someone-else")]
    assert [r["metadata"]["name"] for r in mr.runs_to_delete(runs, "m1", 1)] == ["m-1", "m-2"]
    assert [r["metadata"]["name"] for r in mr.runs_to_delete(runs, "m1", 0)] == ["m-1", "m-2", "m-3"]
    assert mr.runs_to_delete(runs, "m1", 5) == []


def test_a_monitor_run_uploads_to_the_monitor_bucket():
    spec = TestRunSpec.model_validate({"type": "k6", "script": {"inline": "x"}})
    assert artifacts_bucket(RunRef("ns", "m-1", "u", {LABEL_MONITOR: "m"}), spec) == "playwright-monitor-artifacts"
    assert artifacts_bucket(RunRef("ns", "r", "u", {}), spec) == BUCKETS["k6"]
    pw = spec.model_copy(update={"type": "playwright"})
    assert artifacts_bucket(RunRef("ns", "m-1", "u", {LABEL_MONITOR: "m"}), pw) == BUCKETS["monitor"]
    assert artifacts_bucket(RunRef("ns", "r", "u", {"team": "a"}), pw) == BUCKETS["playwright"]
