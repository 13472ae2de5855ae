"""spec.playwright's `use` options (baseURL, viewport, locale, timezoneId, extraHTTPHeaders):
checked by the runner (pure), carried into the generated config, and seen by the page in real
Chromium."""

from __future__ import annotations

import pytest

from supercheck_contract import ExitCode, FailureClass
from supercheck_runner.playwright import PlaywrightOptions, build_config, classify, summarize
from supercheck_runner.use_options import use_options

USE = {"baseURL": "http://127.0.0.1:8080/app/", "viewport": {"width": 390, "height": 844}, "locale": "de-DE",
       "timezoneId": "Pacific/Auckland", "extraHTTPHeaders": {"X-Test-Run": "nightly"}}


def test_the_use_options_go_into_the_configs_use_beside_the_runners_own():
    kept, notes = use_options(USE)
    assert kept == USE and notes == []
    cfg = build_config(PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests", use=kept))
    for name, value in USE.items():
        assert cfg["use"][name] == value
    assert cfg["use"]["headless"] is True and "launchOptions" in cfg["use"]  # the runner's own stay


@pytest.mark.parametrize("raw, note", [
    ({"launchOptions": {"executablePath": "/bin/sh"}}, "use option 'launchOptions' ignored: the runner sets only"),
    ({"baseURL": "file:///etc/passwd"}, "use option 'baseURL' ignored: expected an http(s) URL"),
    ({"viewport": {"width": 0, "height": 600}}, "use option 'viewport' ignored: expected {width, height}"),
    ({"viewport": {"width": 800, "height": 600, "deviceScaleFactor": 3}}, "use option 'viewport' ignored"),
    ({"extraHTTPHeaders": {"X-Count": 3}}, "use option 'extraHTTPHeaders' ignored: expected a map"),
    ({"locale": ""}, "use option 'locale' ignored: expected a string"),
])
def test_anything_else_is_left_out_with_a_note(raw, note):
    kept, notes = use_options(raw)
    assert kept == {} and len(notes) == 1 and notes[0].startswith(note), notes


def test_the_config_never_carries_an_option_that_was_not_checked():
    cfg = build_config(PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests",
                                         use={"launchOptions": {"executablePath": "/bin/sh"}, "locale": "fr-FR"}))
    assert cfg["use"]["locale"] == "fr-FR"
    assert cfg["use"]["launchOptions"].get("executablePath") is None


def test_every_test_refused_for_an_unknown_time_zone_is_validation_but_one_passing_is_not():
    def facts(*statuses):
        error = "Error: browserContext.newPage: Invalid timezone ID: Mars/Olympus"
        return summarize({"suites": [{"title": "test.spec.ts", "specs": [
            {"title": f"t{i}", "tests": [{"status": st, "results": [{"status": "failed" if st == "unexpected"
                                          else "passed", "error": {"message": error}}]}]}
            for i, st in enumerate(statuses)]}]})
    refused = classify(facts("unexpected", "unexpected"), exit_code=1, timed_out=False)
    assert refused.failure == FailureClass.VALIDATION and "'Mars/Olympus'" in refused.message
    assert classify(facts("unexpected", "expected"), exit_code=1, timed_out=False).failure == FailureClass.TEST_FAILURE


SEES_THE_OPTIONS = """
import { test, expect } from '@playwright/test';

test('the page is reached through baseURL and sees the locale, time zone and viewport', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveTitle(/Demo shop/);
  const seen = await page.evaluate(() => ({
    language: navigator.language,
    timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    width: window.innerWidth,
    height: window.innerHeight,
  }));
  expect(seen).toEqual({ language: 'de-DE', timeZone: 'Pacific/Auckland', width: 390, height: 844 });
});

test('every request carries the extra headers and the locale', async ({ page }) => {
  const response = await page.goto('/echo');
  const headers = await response.json();
  expect(headers['x-test-run']).toBe('nightly');
  expect(headers['accept-language']).toMatch(/^de-DE/);
});

test('the request fixture uses baseURL and the headers too', async ({ request }) => {
  const headers = await (await request.get('echo')).json();
  expect(headers['x-test-run']).toBe('nightly');
});
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_use_options_reach_the_page_in_chromium(run_runner, site):
    use = {**USE, "baseURL": site.url + "/"}
    run = run_runner("playwright", SEES_THE_OPTIONS, playwrightRetries=0, playwrightUse=use)
    assert run.exit_code == ExitCode.PASSED, run.result.message if run.result else run.output
    assert run.result.summary.passed == 3
    assert "use baseURL, extraHTTPHeaders, locale, timezoneId, viewport" in run.output


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_without_base_url_a_relative_goto_fails_with_playwrights_own_words(run_runner, site):
    script = ("import { test } from '@playwright/test';\n"
              "test('relative', async ({ page }) => { await page.goto('/'); });\n")
    run = run_runner("playwright", script, playwrightRetries=0)
    assert run.exit_code == ExitCode.TEST_FAILED
    assert "Cannot navigate to invalid URL" in run.result.message or "invalid URL" in run.result.message, \
        run.result.message


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_time_zone_chromium_does_not_know_is_a_validation_error_that_names_the_field(run_runner, site):
    script = ("import { test } from '@playwright/test';\n"
              "test('home', async ({ page }) => { await page.goto('/'); });\n")
    run = run_runner("playwright", script, playwrightRetries=0,
                     playwrightUse={"baseURL": site.url, "timezoneId": "Mars/Olympus"})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.message.startswith(
        "spec.playwright.timezoneId: Chromium does not know the time zone 'Mars/Olympus'; use an IANA name"), \
        run.result.message
