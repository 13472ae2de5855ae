"""A JobRun's pods through supercheck-runner, in real Chromium and k6 against a local site, with a
real S3 (moto): a Playwright suite of five test files and a helper run as shards 1/2 and 2/2
(each runs exactly its shard_files, announces each file as it ends, uploads its blob report),
then merged into one report; an invalid file stops every shard before a test runs; a k6 shard
runs each file as its own k6 run."""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from supercheck_contract import (
    ExitCode,
    FailureClass,
    TestEnded,
    TestOutcome,
    blob_report_key,
    is_test_file,
    shard_files,
)
from supercheck_contract import tests_ended as ended_lines  # (not collected as a test)

from .conftest import NODE_MODULES, grant_minter, make_runner, read_json, site_in
from .test_playwright_uploads import CHROMIUM, REPORT_LINKS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SITE_PORTS = range(18500, 18600)  # kept for these tests: other environments use the usual ones

HELPER = """
import type { Page } from '@playwright/test';

export const target = (path = '/') => (process.env.TARGET_URL ?? '') + path;

export async function open(page: Page, path = '/'): Promise<void> {
  await page.goto(target(path));
}
"""

SUITE = {
    "helpers/site.ts": HELPER,
    "tests/a-home.spec.ts": """
import { test, expect } from '@playwright/test';
import { open } from '../helpers/site';

test('home page has a title', async ({ page }) => {
  await open(page);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('buying adds to the cart', async ({ page }) => {
  await open(page);
  await page.getByRole('button', { name: 'Buy' }).click();
  await expect(page.locator('#status')).toHaveText('Added to cart');
});
""",
    "tests/b-about.spec.ts": """
import { test, expect } from '@playwright/test';
import { open } from '../helpers/site';

test('about page', async ({ page }) => {
  await open(page, '/about');
  await expect(page.getByRole('heading')).toHaveText('About us');
});
""",
    # The one failing file (the Checkout button is not on the demo site).
    "tests/c-checkout.spec.ts": """
import { test, expect } from '@playwright/test';
import { open } from '../helpers/site';

test('home page still loads', async ({ page }) => {
  await open(page);
  await expect(page.getByRole('heading')).toHaveText('Welcome');
});

test('checkout button exists', async ({ page }) => {
  await open(page);
  await expect(page.getByRole('button', { name: 'Checkout' })).toBeVisible({ timeout: 1000 });
});
""",
    "tests/d-later.spec.ts": """
import { test } from '@playwright/test';

test.skip('wishlist', async () => {});
test.fixme('compare products', async () => {});
""",
    "tests/e-flaky.spec.ts": """
import { test, expect } from '@playwright/test';
import { open } from '../helpers/site';

test('passes on its retry', async ({ page }, testInfo) => {
  await open(page);
  expect(testInfo.retry, 'fails on the first attempt').toBe(1);
});
""",
}
TEST_FILES = sorted(f for f in SUITE if is_test_file(f, "playwright"))
EXPECTED = {  # file -> (outcome, cases)
    "tests/a-home.spec.ts": (TestOutcome.PASSED, 2),
    "tests/b-about.spec.ts": (TestOutcome.PASSED, 1),
    "tests/c-checkout.spec.ts": (TestOutcome.FAILED, 2),
    "tests/d-later.spec.ts": (TestOutcome.SKIPPED, 2),
    "tests/e-flaky.spec.ts": (TestOutcome.FLAKY, 1),
}


@pytest.fixture(scope="module")
def job_site():
    with site_in(SITE_PORTS) as site:
        yield site


@pytest.fixture(scope="module")
def runner(tmp_path_factory, s3_endpoint):
    return make_runner(tmp_path_factory.mktemp("job"), s3_endpoint)


@pytest.fixture(scope="module")
def shards(runner, job_site):
    """Shard 1 finds the test files itself (a git source); shard 2 is given them (tests[])."""
    one = runner("playwright", None, files=SUITE, env={"TARGET_URL": job_site.url}, shardIndex=1, shardCount=2)
    two = runner("playwright", None, files=SUITE, env={"TARGET_URL": job_site.url}, shardIndex=2, shardCount=2,
                 tests=TEST_FILES)
    return one, two


def ran_files(s3, run) -> list[str]:
    report = read_json(s3, run.config.bucket, f"{run.config.prefix}/playwright-results.json")
    return sorted(suite["file"] for suite in report["suites"])


def test_each_shard_runs_exactly_its_shard_files(shards, s3):
    one, two = shards
    assert shard_files(TEST_FILES, 1, 2) == ["tests/a-home.spec.ts", "tests/c-checkout.spec.ts",
                                             "tests/e-flaky.spec.ts"]
    for index, run in enumerate(shards, 1):
        assert ran_files(s3, run) == shard_files(TEST_FILES, index, 2), run.output
        assert f"shard {index} of 2: {len(shard_files(TEST_FILES, index, 2))} of the job's 5 test files" in run.output
        assert "validation passed: a suite of 6 files" in run.output
    # the usual classification: shard 1 has the failing file, shard 2 passes (skipped files do not fail)
    assert one.exit_code == ExitCode.TEST_FAILED, one.output
    assert one.result.summary.model_dump() == {"total": 5, "passed": 3, "failed": 1, "flaky": 1, "skipped": 0}
    assert one.result.message.startswith("shard 1 of 2: 3 passed, 1 failed, 1 flaky, 0 skipped of 5. "
                                         "'checkout button exists'"), one.result.message
    assert two.exit_code == ExitCode.PASSED, two.output
    assert two.result.summary.model_dump() == {"total": 3, "passed": 1, "failed": 0, "flaky": 0, "skipped": 2}


def test_each_file_is_announced_on_stdout_with_its_outcome(shards, s3):
    for index, run in enumerate(shards, 1):
        ended = ended_lines(run.output)
        assert sorted(t.file for t in ended) == shard_files(TEST_FILES, index, 2), run.output
        assert {t.file: (t.outcome, t.cases) for t in ended} == {f: EXPECTED[f] for f in shard_files(TEST_FILES,
                                                                                                      index, 2)}
        # result.json holds the same list as the log
        result = read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")
        assert [TestEnded.model_validate(t) for t in result["tests"]] == ended
        assert "tests" not in json.loads(run.termination_message)
    by_file = {t.file: t for run in shards for t in ended_lines(run.output)}
    checkout = by_file["tests/c-checkout.spec.ts"]
    assert checkout.failure.startswith("checkout button exists: Error: expect(locator).toBeVisible()"), checkout
    assert checkout.retries == 1  # the failing case was retried once (retries 1), in vain
    assert checkout.durationMs > 1000  # the 1 s wait for the button, at least
    flaky = by_file["tests/e-flaky.spec.ts"]
    assert flaky.retries == 1 and flaky.failure.startswith("passes on its retry: Error: fails on the first attempt")
    assert by_file["tests/a-home.spec.ts"].failure == "" and by_file["tests/a-home.spec.ts"].retries == 0
    assert by_file["tests/d-later.spec.ts"].durationMs == 0


def test_each_file_is_announced_within_a_second_of_its_last_test(shards):
    """The line reaches stdout within ~1 s of the reporter's event for the file's last final result
    (the runner follows the progress file), long before Playwright ends."""
    for run in shards:
        progress = os.path.join(run.config.workDir, "playwright-progress.jsonl")
        events = [json.loads(line) for line in open(progress, encoding="utf-8")]
        last_final = {}
        for e in events:
            if e["event"] == "testEnd" and e["final"]:
                last_final[e["file"]] = e["time"] / 1000
        ended_at = next(t for t, line in run.stamped if "Playwright ended" in line)
        for arrived, line in run.stamped:
            if "test-ended " not in line:
                continue
            file = json.loads(line.split("test-ended ", 1)[1])["file"]
            if file in last_final:
                assert arrived - last_final[file] < 1.0, (file, arrived - last_final[file])
            assert arrived <= ended_at


def test_each_shard_uploads_its_blob_report(shards, s3):
    for index, run in enumerate(shards, 1):
        keys = run.keys(s3)
        assert f"{run.config.prefix}/blob/shard-{index}.zip" in keys, keys
        result = read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")
        assert f"blob/shard-{index}.zip" in {f["key"] for f in result["uploaded"]}


@pytest.fixture(scope="module")
def merged(runner, shards):
    one, two = shards
    never = one.config.prefix.rsplit("/", 1)[0] + "/shard-9/attempt-1"  # a shard that wrote no blob
    return runner("playwright", None, mode="merge", mergeFrom=[one.config.prefix, two.config.prefix, never]), never


def test_the_merge_makes_one_report_of_every_case(merged, s3):
    run, never = merged
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.model_dump() == {"total": 8, "passed": 4, "failed": 1, "flaky": 1, "skipped": 2}
    assert run.result.message.startswith("merged the blob reports of 2 of 3 shards: 4 passed, 1 failed, 1 flaky, "
                                         "2 skipped of 8"), run.result.message
    assert run.result.message.endswith(f"; no blob report under {never}")
    assert run.result.artifacts.report == f"{run.config.prefix}/report/index.html"
    assert "running Playwright" not in run.output and "validation" not in run.output
    xml = s3.get_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/junit.xml")["Body"].read()
    root = ET.fromstring(xml)
    cases = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
    assert len(cases) == 8 and {file for file, _ in cases} == set(TEST_FILES), cases
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "1", "2")
    report = read_json(s3, run.config.bucket, f"{run.config.prefix}/results.json")
    assert sorted(s["file"] for s in report["suites"]) == TEST_FILES
    keys = run.keys(s3)
    assert [k for k in keys if k.startswith(f"{run.config.prefix}/report/data/") and k.endswith(".zip")], keys
    assert f"{run.config.prefix}/report/trace/index.html" in keys


def test_the_failing_tests_trace_screenshot_and_video_open_from_the_merged_report(merged, shards, s3, s3_endpoint,
                                                                                  tmp_path):
    run, _ = merged
    bucket = run.config.bucket
    s3.put_bucket_policy(Bucket=bucket, Policy=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}'))
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    out = subprocess.run(
        ["node", "--input-type=module", "-e", REPORT_LINKS], cwd=tmp_path, capture_output=True, text=True,
        timeout=180, env={**os.environ, "CHROMIUM": CHROMIUM,
                          "REPORT_URL": f"{s3_endpoint}/{bucket}/{run.result.artifacts.report}"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen.pop("traceViewer") == "opened"
    assert seen.pop("trace") == 200
    assert seen.pop("imageWidth") > 0  # the screenshot
    assert seen and all(code == 200 for code in seen.values()), seen
    assert any(src.endswith(".webm") for src in seen) or "videos are off" in shards[0].output, seen


def test_a_merge_pod_with_a_grant_reads_the_blob_reports_it_names_and_stores_the_merged_report(runner, shards, s3,
                                                                                              s3_endpoint):
    """As the operator runs it: no key, a grant whose reads are each shard's blob report
    (supercheck_contract.blob_report_key); a shard without one (shard 9) is named as missing."""
    one, two = shards
    never = one.config.prefix.rsplit("/", 1)[0] + "/shard-9/attempt-1"
    reads = [blob_report_key(one.config.prefix, 1), blob_report_key(two.config.prefix, 2), blob_report_key(never, 9)]
    run = runner("playwright", None, mode="merge", mergeFrom=[one.config.prefix, two.config.prefix, never],
                 grant=grant_minter(s3_endpoint, reads=reads))
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.model_dump() == {"total": 8, "passed": 4, "failed": 1, "flaky": 1, "skipped": 2}
    assert run.result.message.endswith(f"; no blob report under {never}"), run.result.message
    keys = run.keys(s3)
    assert {f"{run.config.prefix}/{k}" for k in ("report/index.html", "junit.xml", "result.json")} <= set(keys)


def test_a_merge_without_any_blob_is_infrastructure(runner):
    run = runner("playwright", None, mode="merge", mergeFrom=["runner-tests/nothing/here/shard-1/attempt-1"])
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert run.result.message == "no blob report to merge: none under runner-tests/nothing/here/shard-1/attempt-1"


def test_an_invalid_file_anywhere_in_the_suite_stops_every_shard_before_a_test_runs(runner, s3):
    broken = "import type { Page } from '@playwright/test';\nimport { execSync } from 'node:child_process';\n"
    for index in (1, 2):
        run = runner("playwright", None, files={**SUITE, "helpers/broken.ts": broken}, shardIndex=index, shardCount=2)
        assert run.exit_code == ExitCode.VALIDATION, run.output
        assert run.result.failureClass == FailureClass.VALIDATION
        assert run.result.message.startswith("invalid script: helpers/broken.ts: line 2, column 1: import of "
                                             "'node:child_process' is not allowed"), run.result.message
        assert "running Playwright" not in run.output
        assert ended_lines(run.output) == []
        assert read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")["tests"] == []


def test_more_shards_than_test_files_leaves_a_shard_empty_and_passed(runner, s3):
    run = runner("playwright", None, files=SUITE, shardIndex=6, shardCount=6)
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.message == "shard 6 of 6: no test file to run (the job has 5 test files for 6 shards)"
    assert run.result.summary.total == 0 and ended_lines(run.output) == []
    assert "running Playwright" not in run.output


def test_a_test_file_the_suite_does_not_have_is_validation(runner):
    run = runner("playwright", None, files=SUITE, shardIndex=1, shardCount=2, tests=[*TEST_FILES, "tests/gone.spec.ts"])
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "the job's tests name 'tests/gone.spec.ts', which the suite does not have" in run.result.message


def test_a_playwright_shard_at_its_deadline_announces_only_the_files_that_ended(runner, job_site, s3):
    stuck = ("import { test } from '@playwright/test';\n"
             "test('stuck on a hidden button', async ({ page }) => {\n"
             "  await page.setContent('<button style=\"display: none\">Checkout</button>');\n"
             "  await page.locator('button').click();\n"
             "});\n"
             "test('after it', async () => {});\n")
    suite = {**SUITE, "tests/b-about.spec.ts": stuck}  # shard 2 of 2: b (stuck), d (skipped at once)
    run = runner("playwright", None, files=suite, env={"TARGET_URL": job_site.url}, shardIndex=2, shardCount=2,
                 timeout_seconds=20, playwrightTestTimeoutSeconds=120)
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert run.result.message.startswith("shard 2 of 2: timed out:"), run.result.message
    assert "'stuck on a hidden button' (tests/b-about.spec.ts:2" in run.result.message
    # d-later ended at once (both cases skipped) in the other worker; b was cut off: not announced
    assert [(t.file, t.outcome) for t in ended_lines(run.output)] == [("tests/d-later.spec.ts", TestOutcome.SKIPPED)]
    assert f"{run.config.prefix}/blob/shard-2.zip" in run.keys(s3)  # written when interrupted, for the merge


# --- k6 ----------------------------------------------------------------------------------------

K6_LIB = """
export function target(path) { return __ENV.TARGET_URL + (path || ''); }
"""

K6_SUITE = {
    "lib/site.js": K6_LIB,
    "load/a-home.k6.js": """
import http from 'k6/http';
import { check } from 'k6';
import { target } from '../lib/site.js';

export const options = { vus: 1, iterations: 3, thresholds: { checks: ['rate>0.99'] } };

export default function () {
  check(http.get(target('/')), { 'status is 200': (r) => r.status === 200 });
}
""",
    "load/b-slow.k6.js": """
import http from 'k6/http';
import { target } from '../lib/site.js';

export const options = { vus: 1, iterations: 4, thresholds: { http_req_duration: ['p(95)<100'] } };

export default function () {
  http.get(target('/slow'));  // answers after 250 ms
}
""",
    "load/c-about.k6.js": """
import http from 'k6/http';
import { check } from 'k6';
import { target } from '../lib/site.js';

export const options = { vus: 1, iterations: 2 };

export default function () {
  check(http.get(target('/about')), { 'status is 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  return { 'summary.json': JSON.stringify({ iterations: data.metrics.iterations.values.count }) };
}
""",
}
K6_TESTS = ["load/a-home.k6.js", "load/b-slow.k6.js", "load/c-about.k6.js"]


def test_a_k6_shard_runs_each_file_on_its_own(runner, job_site, s3):
    run = runner("k6", None, files=K6_SUITE, env={"TARGET_URL": job_site.url}, shardIndex=1, shardCount=1)
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    ended = ended_lines(run.output)
    assert [(t.file, t.outcome) for t in ended] == [("load/a-home.k6.js", TestOutcome.PASSED),
                                                    ("load/b-slow.k6.js", TestOutcome.FAILED),
                                                    ("load/c-about.k6.js", TestOutcome.PASSED)]
    assert ended[1].failure == "thresholds crossed: http_req_duration: p(95)<100"
    assert all(t.durationMs > 0 and t.cases == 1 for t in ended)
    assert run.result.message.startswith("shard 1 of 1: 2 of 3 test files passed, 1 failed. 'load/b-slow.k6.js': "
                                         "thresholds crossed"), run.result.message
    assert run.result.k6.iterations == 3 + 4 + 2 and not run.result.k6.thresholdsPassed
    result = read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")
    assert [TestEnded.model_validate(t) for t in result["tests"]] == ended
    keys = {k[len(run.config.prefix) + 1:] for k in run.keys(s3)}
    for stem in ("load/a-home.k6", "load/b-slow.k6", "load/c-about.k6"):
        assert {f"{stem}/k6-summary.json", f"{stem}/k6-metrics.json.gz", f"{stem}/console.log"} <= keys, keys
    assert read_json(s3, run.config.bucket, f"{run.config.prefix}/load/c-about.k6/summary.json") == {"iterations": 2}
    assert "console.log" in keys and "result.json" in keys


def test_every_k6_test_file_is_validated_before_any_runs(runner, job_site):
    broken = "import http from 'k6/http';\nexport default function () {\n  http.get(;\n}\n"
    suite = {**K6_SUITE, "load/d-broken.k6.js": broken}
    run = runner("k6", None, files=suite, env={"TARGET_URL": job_site.url}, shardIndex=1, shardCount=2)
    # shard 1 of 2 runs a-home and c-about; the broken file is shard 2's, and still stops this one
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.message.startswith("invalid script: load/d-broken.k6.js: line 3"), run.result.message
    assert "running k6" not in run.output and ended_lines(run.output) == []


def test_a_k6_shard_stops_at_its_deadline_and_leaves_the_rest_unannounced(runner, job_site):
    suite = {**K6_SUITE, "load/b-slow.k6.js": K6_SUITE["load/b-slow.k6.js"].replace(
        "iterations: 4", "duration: '5m'")}
    run = runner("k6", None, files=suite, env={"TARGET_URL": job_site.url}, shardIndex=1, shardCount=1,
                 timeout_seconds=20)
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert [(t.file, t.outcome) for t in ended_lines(run.output)] == [("load/a-home.k6.js", TestOutcome.PASSED)]
    assert run.result.message == ("shard 1 of 1: timed out: 1 of 3 test files passed, 0 failed, 1 not started; "
                                  "'load/b-slow.k6.js' was running"), run.result.message


# --- what a shard costs -------------------------------------------------------------------------

BENCH_SPEC = """
import { test, expect } from '@playwright/test';
import { open } from '../helpers/site';

test('home {n}', async ({ page }) => {
  await open(page);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('buy {n}', async ({ page }) => {
  await open(page);
  await page.getByRole('button', { name: 'Buy' }).click();
  await expect(page.locator('#status')).toHaveText('Added to cart');
});
"""


@pytest.mark.slow
def test_a_12_file_shard_against_raw_playwright(runner, job_site, tmp_path, capsys):
    """Wall time of a 12-file shard under the runner (validation of the suite, one Playwright run with
    its five reporters, blob included, traces and videos kept on failure, test-ended lines, upload,
    result) against a raw `playwright test` of the same files (same Chromium, workers, retries; list
    reporter). Printed (pytest -s); held only to a bound that one Playwright run per file would break."""
    suite = {"helpers/site.ts": HELPER, **{f"tests/f{n:02d}.spec.ts": BENCH_SPEC.replace("{n}", str(n))
                                           for n in range(12)}}
    raw = tmp_path / "raw"
    for rel, text in suite.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_text(text)
    (raw / "node_modules").symlink_to(NODE_MODULES)
    config = {"testDir": str(raw / "tests"), "outputDir": str(raw / "test-results"), "workers": 2, "retries": 1,
              "reporter": [["list"]], "projects": [{"name": "chromium", "use": {"browserName": "chromium"}}],
              "use": {"launchOptions": {"executablePath": "/usr/bin/chromium",
                                        "args": ["--no-sandbox"] if os.geteuid() == 0 else []}}}
    (raw / "playwright.config.mjs").write_text(f"export default {json.dumps(config)};\n")

    def raw_run() -> float:
        started = time.monotonic()
        proc = subprocess.run(["node", str(NODE_MODULES / "@playwright" / "test" / "cli.js"), "test", "--config",
                               "playwright.config.mjs"], cwd=raw, env={**os.environ, "TARGET_URL": job_site.url},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        return time.monotonic() - started

    raw_run()  # warm-up: Playwright's transform cache, the page cache
    raw_seconds = raw_run()
    run = runner("playwright", None, files=suite, env={"TARGET_URL": job_site.url}, shardIndex=1, shardCount=1,
                 timeout_seconds=300, settings_env={"SUPERCHECK_CHROMIUM_PATH": "/usr/bin/chromium"})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert len(ended_lines(run.output)) == 12 and run.result.summary.total == 24
    with capsys.disabled():
        print(f"\n12-file shard: runner {run.seconds:.1f} s, raw playwright test {raw_seconds:.1f} s, "
              f"ratio {run.seconds / raw_seconds:.2f}")
    assert run.seconds < 5 * raw_seconds
