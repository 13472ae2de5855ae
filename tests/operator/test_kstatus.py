"""kstatus (sigs.k8s.io/cli-utils: what Flux and the cli-utils appliers judge health with), run as
its own Go code (hack/kstatus, built by hack/build-kstatus.sh) on the TestRuns and JobRuns the
engine writes: InProgress until the run ends, Current when it passed, Failed for any other end."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from lifecycle_kit import GENERATION, lifecycle_jobruns, lifecycle_testruns

from supercheck_localenv.layout import REPO_ROOT

pytestmark = pytest.mark.integration

EXPECTED = {"Pending": "InProgress", "Queued": "InProgress", "Running": "InProgress", "Passed": "Current",
            "Failed": "Failed", "Error": "Failed", "Rejected": "Failed"}


@pytest.fixture(scope="module")
def kstatus() -> str:
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-kstatus.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def compute(kstatus: str, obj: dict[str, Any]) -> dict[str, str]:
    res = subprocess.run([kstatus], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("kind", ["TestRun", "JobRun"])
def test_kstatus_follows_the_phase(kstatus, kind):
    objects = lifecycle_testruns() if kind == "TestRun" else lifecycle_jobruns()
    got = {phase: compute(kstatus, obj)["status"] for phase, obj in objects.items()}
    assert got == EXPECTED


def test_kstatus_says_why(kstatus):
    objects = lifecycle_testruns()
    assert compute(kstatus, objects["Queued"])["message"].startswith("waiting for a running slot")
    assert compute(kstatus, objects["Failed"])["message"].startswith("1 of 2 checks failed")


def test_a_spec_the_operator_has_not_acted_on_is_in_progress(kstatus):
    """status.observedGeneration is the generation the operator acted on: an edit it never ran is not Current."""
    passed = lifecycle_testruns()["Passed"]
    assert compute(kstatus, passed)["status"] == "Current"
    passed["metadata"]["generation"] = GENERATION + 1
    assert compute(kstatus, passed)["status"] == "InProgress"


def test_without_the_lifecycle_conditions_kstatus_calls_a_failed_run_current(kstatus):
    """Why Ready and Stalled exist: the other conditions alone make kstatus call every run Current."""
    failed = lifecycle_testruns()["Failed"]
    failed["status"]["conditions"] = [c for c in failed["status"]["conditions"]
                                      if c["type"] not in ("Ready", "Stalled")]
    assert compute(kstatus, failed)["status"] == "Current"
