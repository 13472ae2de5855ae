"""supercheck-runner running real Playwright specs in real Chromium against a local site,
uploading to a real S3 server. Each run takes a few seconds; they are the acceptance tests of
the runner."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from supercheck_contract import ExitCode, FailureClass

from .conftest import FAILING, NODE_MODULES, read_json

# Debian's binary itself (/usr/bin/chromium is a wrapper script).
CHROMIUM = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "chromium"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSING = """
import { test, expect } from '@playwright/test';

const site = process.env.TARGET_URL;

test('home page has a title', async ({ page }) => {
  await page.goto(site);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('buying adds to the cart', async ({ page }) => {
  await page.goto(site);
  await page.getByRole('button', { name: 'Buy' }).click();
  await expect(page.locator('#status')).toHaveText('Added to cart');
});

test('about page', async ({ page }) => {
  await page.goto(site);
  await page.getByRole('link', { name: 'About us' }).click();
  await expect(page.getByRole('heading')).toHaveText('About us');
});

test('the runner keeps its credentials to itself', async () => {
  expect(process.env.AWS_SECRET_ACCESS_KEY).toBeUndefined();
  expect(process.env.SUPERCHECK_BUCKET).toBeUndefined();
});
"""


def test_all_passing_counts_and_artifacts(run_runner, site, s3):
    run = run_runner("playwright", PASSING, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.failureClass == FailureClass.NONE
    assert run.result.summary.model_dump() == {"total": 4, "passed": 4, "failed": 0, "flaky": 0, "skipped": 0}
    keys = run.keys(s3)
    prefix = run.config.prefix
    for name in ("playwright-results.json", "junit.xml", "report/index.html", "console.log", "result.json"):
        assert f"{prefix}/{name}" in keys, name
    assert run.result.artifacts.report == f"{prefix}/report/index.html"
    # The full result in S3 is the termination message's result, with nothing cut.
    assert read_json(s3, run.config.bucket, f"{prefix}/result.json")["summary"] == run.result.summary.model_dump()
    junit = s3.get_object(Bucket=run.config.bucket, Key=f"{prefix}/junit.xml")["Body"].read().decode()
    assert 'tests="4"' in junit and 'failures="0"' in junit


def test_one_failing_is_failed_with_screenshot_and_trace(run_runner, site, s3):
    run = run_runner("playwright", FAILING, env={"TARGET_URL": site.url}, playwrightRetries=0)
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    assert run.result.failureClass == FailureClass.TEST_FAILURE
    assert run.result.summary.model_dump() == {"total": 2, "passed": 1, "failed": 1, "flaky": 0, "skipped": 0}
    assert "checkout button exists" in run.result.message
    assert "Locator: getByRole('button', { name: 'Checkout' })" in run.result.message
    keys = run.keys(s3)
    # The failed test's files are where the HTML report links them (report/data/, named by content).
    report_data = [k for k in keys if "/report/data/" in k]
    assert any(k.endswith(".png") for k in report_data), keys
    assert any(k.endswith(".zip") for k in report_data), keys
    png = next(k for k in report_data if k.endswith(".png"))
    assert s3.head_object(Bucket=run.config.bucket, Key=png)["ContentType"] == "image/png"
    report = s3.head_object(Bucket=run.config.bucket, Key=run.result.artifacts.report)
    assert report["ContentType"].startswith("text/html")


def test_html_report_opens_in_chromium_from_its_s3_url(run_runner, site, s3, s3_endpoint, tmp_path):
    run = run_runner("playwright", FAILING, env={"TARGET_URL": site.url}, playwrightRetries=0)
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    bucket = run.config.bucket
    # Reading the report needs no credentials when the bucket lets anyone read (as a report
    # bucket behind an ingress would); the runner's job is the layout and the content types.
    s3.put_bucket_policy(Bucket=bucket, Policy=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}'))
    url = f"{s3_endpoint}/{bucket}/{run.result.artifacts.report}"
    # The report is a script-built page: wait until it has rendered its test list, then read it.
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    opener = f"""
        import {{ chromium }} from '@playwright/test';
        const browser = await chromium.launch({{ executablePath: {json.dumps(CHROMIUM)}, args: ['--no-sandbox'] }});
        const page = await browser.newPage();
        const response = await page.goto({json.dumps(url)});
        await page.locator('.test-file-title').first().waitFor({{ timeout: 60000 }});
        const titles = await page.locator('.test-file-title').allTextContents();
        console.log(JSON.stringify({{ status: response.status(), titles }}));
        await browser.close();
    """
    out = subprocess.run(["node", "--input-type=module", "-e", opener], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["status"] == 200
    assert {"home page has a title", "checkout button exists"} <= set(seen["titles"])


FLAKY = """
import { test, expect } from '@playwright/test';

test('home page', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('flaky on the first try', async ({ page }, testInfo) => {
  await page.goto(process.env.TARGET_URL);
  expect(testInfo.retry, 'fails on the first attempt only').toBeGreaterThan(0);
});
"""


def test_flaky_then_passing_counts_as_flaky(run_runner, site):
    run = run_runner("playwright", FLAKY, env={"TARGET_URL": site.url}, playwrightRetries=1)
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.model_dump() == {"total": 2, "passed": 1, "failed": 0, "flaky": 1, "skipped": 0}


def test_syntax_error_is_validation_with_its_line(run_runner, s3):
    script = "import { test } from '@playwright/test';\n\ntest('x', async ({ page }) => {\n  const a = ;\n});\n"
    run = run_runner("playwright", script)
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert "line 4" in run.result.message and "syntax error" in run.result.message
    # No browser started, but the verdict and the console log are kept.
    assert f"{run.config.prefix}/result.json" in run.keys(s3)
    assert "running Playwright" not in run.output


def test_child_process_import_is_validation(run_runner):
    script = (
        "import { test } from '@playwright/test';\n"
        "import { execSync } from 'child_process';\n"
        "test('x', async () => { execSync('id'); });\n"
    )
    run = run_runner("playwright", script)
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "line 2" in run.result.message and "'child_process'" in run.result.message
    assert "running Playwright" not in run.output


ENDLESS = """
import { test, expect } from '@playwright/test';

test('quick one first', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('waits forever', async ({ page }) => {
  await page.goto(process.env.TARGET_URL + '/never');
});
"""


def test_endless_wait_times_out_with_partial_results(run_runner, site, s3):
    run = run_runner("playwright", ENDLESS, env={"TARGET_URL": site.url}, timeout_seconds=25,
                     playwrightWorkers=1, playwrightRetries=0)
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert run.result.failureClass == FailureClass.TIMEOUT
    # The test finished before the deadline counts; the one cut off does not pass.
    assert run.result.summary.total == 2 and run.result.summary.passed == 1, run.result
    keys = run.keys(s3)
    assert f"{run.config.prefix}/playwright-results.json" in keys
    assert f"{run.config.prefix}/console.log" in keys
    assert run.seconds < 25 + 15, run.seconds  # stopped by its own timer, uploaded within the margin


PAGE_CRASH = """
import { test, expect } from '@playwright/test';

test('renderer crashes', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  const cdp = await page.context().newCDPSession(page);
  cdp.send('Page.crash').catch(() => {});
  await page.getByRole('button', { name: 'Buy' }).click();
  await page.waitForTimeout(2000);
  await page.getByRole('button', { name: 'Buy' }).click();
});
"""

BROWSER_CRASH = """
import { test, expect } from '@playwright/test';

test('browser dies', async ({ page, browser }) => {
  await page.goto(process.env.TARGET_URL);
  const cdp = await browser.newBrowserCDPSession();
  cdp.send('Browser.crash').catch(() => {});
  await page.waitForTimeout(2000);
  await page.getByRole('button', { name: 'Buy' }).click();
});
"""


@pytest.mark.parametrize("script", [PAGE_CRASH, BROWSER_CRASH], ids=["page", "browser"])
def test_crash_is_browser_crash(run_runner, site, script):
    run = run_runner("playwright", script, env={"TARGET_URL": site.url}, playwrightRetries=0)
    assert run.exit_code == ExitCode.BROWSER_CRASH, run.output
    assert run.result.failureClass == FailureClass.BROWSER_CRASH
    assert run.result.summary.failed == 1


def test_a_spec_that_throws_while_loading_is_validation(run_runner):
    script = ("import { test } from '@playwright/test';\n"
              "const config = undefinedThing.value;\n"
              "test('x', async () => {});\n")
    run = run_runner("playwright", script)
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "undefinedThing is not defined" in run.result.message


def test_a_missing_browser_is_infrastructure(run_runner):
    script = ("import { test } from '@playwright/test';\n"
              "test('x', async ({ page }) => { await page.goto('about:blank'); });\n")
    run = run_runner("playwright", script, playwrightRetries=0,
                     settings_env={"SUPERCHECK_CHROMIUM_PATH": "/nonexistent/chromium"})
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert "Chromium is missing" in run.result.message
