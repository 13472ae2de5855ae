"""Suites of more than one file through supercheck-runner: a spec importing its fixtures from
beside it (the layout of Playwright's own examples), a whole folder as the suite, a k6 script
importing a module, in real Chromium and k6 against a local site. The reports name the user's files."""

from __future__ import annotations

import functools
import threading
import xml.etree.ElementTree as ET
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from supercheck import scriptfiles
from supercheck.models import TestRunSpec
from supercheck_contract import ExitCode, FailureClass

from .conftest import REPO, read_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Playwright's examples/todomvc/tests/fixtures.ts, pointed at the local site.
FIXTURES = """
import { test as baseTest } from '@playwright/test';

export { expect } from '@playwright/test';

export const test = baseTest.extend<{ shopUrl: string }>({
  shopUrl: async ({}, use) => { await use(process.env.TARGET_URL ?? ''); },
  page: async ({ page, shopUrl }, use) => {
    await page.goto(shopUrl);
    await use(page);
  },
});
"""

SPEC = """
import { test, expect } from '{fixtures}';
import { buy } from '{helpers}';

test.describe('Shop', () => {
  test('home page has a title', async ({ page }) => {
    await expect(page).toHaveTitle(/Demo shop/);
  });

  test('buying adds to the cart', async ({ page }) => {
    await buy(page);
    await expect(page.locator('#status')).toHaveText('Added to cart');
  });
});
"""

HELPERS = """
import type { Page } from '@playwright/test';

export async function buy(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Buy' }).click();
}
"""


def junit_files(s3, run) -> list[str]:
    xml = s3.get_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/junit.xml")["Body"].read()
    return [suite.get("name") for suite in ET.fromstring(xml).iter("testsuite")]


def report_files(s3, run) -> list[str]:
    report = read_json(s3, run.config.bucket, f"{run.config.prefix}/playwright-results.json")
    return [suite["file"] for suite in report["suites"]]


def test_a_spec_importing_fixtures_beside_it_runs_and_the_reports_name_it(run_runner, site, s3):
    run = run_runner("playwright", SPEC.replace("{fixtures}", "./fixtures").replace("{helpers}", "./helpers"),
                     script_name="todo.spec.ts", files={"fixtures.ts": FIXTURES, "helpers.ts": HELPERS},
                     env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.model_dump() == {"total": 2, "passed": 2, "failed": 0, "flaky": 0, "skipped": 0}
    assert "validation passed: todo.spec.ts and 2 more files" in run.output
    assert junit_files(s3, run) == ["todo.spec.ts"]
    assert report_files(s3, run) == ["todo.spec.ts"]


def test_a_spec_in_a_folder_imports_its_fixtures_from_the_parent(run_runner, site, s3):
    run = run_runner("playwright", SPEC.replace("{fixtures}", "../fixtures").replace("{helpers}", "../lib/helpers"),
                     script_name="tests/todo.spec.ts",
                     files={"fixtures/index.ts": FIXTURES, "lib/helpers.ts": HELPERS,
                            # a helper that looks like a test runs only when it is the script
                            "tests/seed.spec.ts": "import { test } from '../fixtures';\ntest('seed', () => {});\n"},
                     env={"TARGET_URL": site.url}, playwrightTrace="on", playwrightRetries=0)
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.total == 2 and run.result.summary.passed == 2, run.result
    assert junit_files(s3, run) == ["tests/todo.spec.ts"]
    assert report_files(s3, run) == ["tests/todo.spec.ts"]
    # Trace folders are named after the user's file; S3 holds each trace once, as the HTML report's
    # copy (report/data/<sha1>.zip), which the JSON report's attachment paths lead to.
    report = read_json(s3, run.config.bucket, f"{run.config.prefix}/playwright-results.json")
    traces = [a["path"] for a in attachments(report["suites"]) if a["name"] == "trace"]
    assert len(traces) == 2 and all("/test-results/tests-todo-Shop-" in p for p in traces), traces
    copies = [k for k in run.keys(s3) if k.startswith(f"{run.config.prefix}/report/data/") and k.endswith(".zip")]
    assert len(copies) == 2, copies


def attachments(suites):
    for suite in suites:
        for spec in suite.get("specs", []):
            for test in spec["tests"]:
                for result in test["results"]:
                    yield from result["attachments"]
        yield from attachments(suite.get("suites", []))


INLINE = """
import { test, expect } from '@playwright/test';

test('home page has a title', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Demo shop/);
});
"""


def test_an_inline_script_is_named_after_its_run(run_runner, site, s3):
    # the operator mounts an inline script as <run name>.spec.ts and says so in scriptName
    run = run_runner("playwright", INLINE, script_name="shop-check.spec.ts", env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert junit_files(s3, run) == ["shop-check.spec.ts"]
    assert report_files(s3, run) == ["shop-check.spec.ts"]


def test_a_script_whose_name_is_not_a_test_file_s_still_runs(run_runner, site, s3):
    run = run_runner("playwright", "import { test, expect } from './fixtures';\n"
                                   "test('title', async ({ page }) => { await expect(page).toHaveTitle(/Demo/); });\n",
                     script_name="smoke", files={"fixtures.ts": FIXTURES}, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert report_files(s3, run) == ["smoke.ts"]


def test_a_whole_folder_is_the_suite_and_every_test_file_runs(run_runner, site, s3):
    about = ("import { test, expect } from '../fixtures';\n"
             "test('about page', async ({ page }) => {\n"
             "  await page.getByRole('link', { name: 'About us' }).click();\n"
             "  await expect(page.getByRole('heading')).toHaveText('About us');\n"
             "});\n")
    shop = SPEC.replace("{fixtures}", "../fixtures").replace("{helpers}", "../helpers")
    run = run_runner("playwright", None, files={
        "fixtures.ts": FIXTURES, "helpers.ts": HELPERS, "tests/shop.spec.ts": shop, "tests/about.test.ts": about,
        "README.md": "not code"}, env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.summary.model_dump() == {"total": 3, "passed": 3, "failed": 0, "flaky": 0, "skipped": 0}
    assert sorted(junit_files(s3, run)) == ["tests/about.test.ts", "tests/shop.spec.ts"]


def test_a_forbidden_import_in_a_fixture_is_validation_naming_the_file(run_runner):
    fixtures = FIXTURES + "import { execSync } from 'node:child_process';\n"
    line = fixtures.splitlines().index("import { execSync } from 'node:child_process';") + 1
    run = run_runner("playwright", SPEC.replace("{fixtures}", "../fixtures").replace("{helpers}", "../helpers"),
                     script_name="tests/todo.spec.ts", files={"fixtures.ts": fixtures, "helpers.ts": HELPERS})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert run.result.message.startswith(f"invalid script: fixtures.ts: line {line}, column 1: import of "
                                         "'node:child_process' is not allowed"), run.result.message
    assert "running Playwright" not in run.output


def test_a_missing_helper_is_validation_naming_it(run_runner):
    run = run_runner("playwright", SPEC.replace("{fixtures}", "../fixtures").replace("{helpers}", "../helpers"),
                     script_name="tests/todo.spec.ts", files={"fixtures.ts": FIXTURES})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "line 3, column 1: import of '../helpers' names no file of the suite" in run.result.message


def test_the_size_limit_holds_for_the_script_and_its_files_together(run_runner):
    run = run_runner("playwright", "import { test } from './fixtures';\n", script_name="a.spec.ts",
                     files={"fixtures.ts": FIXTURES}, settings_env={"SUPERCHECK_MAX_SCRIPT_BYTES": "200"})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "the script and its files are" in run.result.message and "over the limit of 200 bytes" in run.result.message


K6_MAIN = """
import http from 'k6/http';
import { check } from 'k6';
import { target, isOk } from './lib/site.js';

export const options = { vus: 1, iterations: 3 };

export default function () {
  check(http.get(target()), { 'status is 200': isOk });
}
"""

K6_LIB = """
export function target() { return __ENV.TARGET_URL; }
export function isOk(res) { return res.status === 200; }
"""


def test_a_k6_script_imports_its_modules_from_beside_it(run_runner, site, s3):
    run = run_runner("k6", K6_MAIN, script_name="load/main.js", files={"load/lib/site.js": K6_LIB},
                     env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.k6.checksPassed == 3 and run.result.k6.checksFailed == 0
    assert "script: load/main.js" in s3.get_object(
        Bucket=run.config.bucket, Key=f"{run.config.prefix}/console.log")["Body"].read().decode()


def test_a_k6_module_that_is_not_there_is_validation_naming_it(run_runner):
    run = run_runner("k6", K6_MAIN, script_name="main.js", files={"lib/other.js": K6_LIB})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert run.result.message == ("invalid script: import of './lib/site.js' names no file beside the script; add "
                                  "the file to spec.script.configMapRef.files, or fix the path"), run.result.message


EXAMPLE = REPO / "examples" / "playwright-suite-with-helpers.yaml"


@pytest.fixture(scope="module")
def demo_site():
    """examples/site, as make demo serves it (on a free port here)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(REPO / "examples" / "site"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("run_name, counts, reported", [
    ("playwright-basket", (1, 1), ["tests/basket.spec.ts"]),
    ("playwright-shop-suite", (2, 2), ["tests/about.spec.ts", "tests/basket.spec.ts"]),
])
def test_the_example_suite_runs_as_written(run_runner, demo_site, s3, run_name, counts, reported):
    """The example's ConfigMap and TestRun, laid out by the operator's own rules (supercheck.scriptfiles)."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    run = next(d for d in docs if d["kind"] == "TestRun" and d["metadata"]["name"] == run_name)
    spec = TestRunSpec.model_validate(run["spec"])
    lay = scriptfiles.layout(spec, run_name, data if scriptfiles.whole_configmap(spec) else None)
    files = {f.path: data[f.key] for f in lay.files}
    script = files.pop(lay.entry) if lay.entry else None
    outcome = run_runner("playwright", script, script_name=scriptfiles.script_name(spec, run_name) or None,
                         files=files, env={"TARGET_URL": demo_site})
    assert outcome.exit_code == ExitCode.PASSED, outcome.output
    assert (outcome.result.summary.total, outcome.result.summary.passed) == counts
    assert sorted(junit_files(s3, outcome)) == reported
