"""A stuck test must not cost the run its counts: each test has its own timeout (not the run's
budget), and when the run's deadline comes first the result names the tests that were still
running, keeps their traces, and counts what finished. Real Chromium, real S3 (moto)."""

from __future__ import annotations

import re

import pytest

from supercheck_contract import ExitCode, FailureClass

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Two tests wait for a button that never shows (as Playwright's todomvc suite did against a
# page whose element stayed hidden); three finish at once.
STUCK = """
import { test, expect } from '@playwright/test';

test.describe.configure({ mode: 'parallel' });

const page_html = `<h1>Shop</h1><button style="display: none">Checkout</button>`;

test('heading', async ({ page }) => {
  await page.setContent(page_html);
  await expect(page.locator('h1')).toHaveText('Shop');
});

test('title', async ({ page }) => {
  await page.setContent('<title>Shop</title>');
  await expect(page).toHaveTitle('Shop');
});

test('empty cart', async ({ page }) => {
  await page.setContent(page_html);
  await expect(page.locator('.cart-item')).toHaveCount(0);
});

test('stuck on a hidden checkout button', async ({ page }) => {
  await page.setContent(page_html);
  await page.locator('button', { hasText: 'Checkout' }).click();
});

test.describe('cart', () => {
  test('stuck on the same button', async ({ page }) => {
    await page.setContent(page_html);
    await page.locator('button', { hasText: 'Checkout' }).click();
  });
});

test('after the stuck ones', async ({ page }) => {
  await page.setContent(page_html);
  await expect(page.locator('h1')).toBeVisible();
});
"""

STUCK_TITLES = ("stuck on a hidden checkout button", "cart › stuck on the same button")


def traces_in(keys: list[str]) -> list[str]:
    return [k for k in keys if k.endswith(".zip")]


def test_a_stuck_test_fails_on_its_own_timeout_and_the_run_keeps_its_counts(run_runner, s3):
    run = run_runner("playwright", STUCK, timeout_seconds=60, playwrightWorkers=2, playwrightRetries=0,
                     playwrightTestTimeoutSeconds=3)
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    assert run.result.summary.model_dump() == {"total": 6, "passed": 4, "failed": 2, "flaky": 0, "skipped": 0}
    assert "Test timeout of 3000ms exceeded" in run.result.message
    assert "'stuck on a hidden checkout button'" in run.result.message
    assert run.seconds < 40, run.seconds  # two 3 s timeouts, not the run's minute
    assert len(traces_in(run.keys(s3))) == 2  # one trace per failed test, in the report


def test_at_the_deadline_the_result_names_the_running_tests_and_keeps_their_traces(run_runner, s3):
    # The per-test timeout (60 s) is longer than the run (20 s): the run's deadline stops Playwright.
    run = run_runner("playwright", STUCK, timeout_seconds=20, playwrightWorkers=2, playwrightRetries=0,
                     playwrightTestTimeoutSeconds=20)
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert run.result.failureClass == FailureClass.TIMEOUT
    summary = run.result.summary
    # What finished is counted; the two stuck tests held both workers, so the last never started.
    assert summary.model_dump() == {"total": 6, "passed": 3, "failed": 0, "flaky": 0, "skipped": 3}, run.result
    message = run.result.message
    assert message.startswith("timed out: 3 passed, 0 failed, 0 flaky, 3 skipped of 6; still running at the "
                              "deadline: "), message
    for title in STUCK_TITLES:
        assert f"'{title}' (test.spec.ts:" in message, message
    assert message.endswith("; 1 not started"), message
    keys = run.keys(s3)
    # Interrupted, not killed: Playwright saved both traces (and wrote its reports).
    assert len(traces_in(keys)) == 2, keys
    assert any(k.endswith("/report/index.html") for k in keys)
    assert not [k for k in keys if "/.playwright-artifacts-" in k or k.endswith("/.last-run.json")], keys
    assert run.seconds < 20 + 10, run.seconds


NEVER_YIELDS = """
import { test, expect } from '@playwright/test';

test('heading', async ({ page }) => {
  await page.setContent('<h1>Shop</h1>');
  await expect(page.locator('h1')).toHaveText('Shop');
});

test('spins forever', async ({ page }) => {
  await page.setContent('<h1>Shop</h1>');
  while (true) {}
});
"""


def test_a_test_that_never_yields_is_killed_and_still_named_and_counted(run_runner, s3):
    # The worker cannot even hear Playwright's stop request: Playwright would wait 5 minutes for it,
    # so the runner kills everything and writes no JSON report. The progress reporter's lines,
    # written as tests began and ended, still say what finished and what was running.
    run = run_runner("playwright", NEVER_YIELDS, timeout_seconds=20, playwrightWorkers=1, playwrightRetries=0)
    assert run.exit_code == ExitCode.TIMEOUT, run.output
    assert "Playwright ended: exit code -9" in run.output  # killed
    assert run.result.summary.model_dump() == {"total": 2, "passed": 1, "failed": 0, "flaky": 0, "skipped": 1}
    message = run.result.message
    assert message.startswith("timed out (Playwright was killed before writing its report): 1 passed"), message
    assert re.search(r"still running at the deadline: 'spins forever' \(test.spec.ts:9, ran (\d+\.\d) s\)$", message)
    assert float(re.search(r"ran (\d+\.\d) s", message).group(1)) > 5  # from its start to the kill
    assert f"{run.config.prefix}/playwright-results.json" not in run.keys(s3)
    assert run.seconds < 20 + 10, run.seconds
