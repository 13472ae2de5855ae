"""Artifacts survive a storage blip: supercheck-runner against a real S3 server (moto) that goes
away during the upload, or before the run starts, and comes back; and one that never comes back.

Each test asserts on the final S3 listing: every file the runner planned to upload (its own
plan of out/) and result.json are there. The windows and backoffs are short so the suite stays
quick; one test waits out a real 60-second outage (marked ``slow``, about 70 s)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from supercheck_contract import STORAGE_BACK, ExitCode, FailureClass, last_progress

from .conftest import free_port, grant_minter, s3_client
from .outage_kit import QUICK_BACKOFF, Front, RunnerProcess, S3Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# k6 sleeps long enough for the test to take S3 away after the runner's preflight passed.
SLEEPY_K6 = """import { sleep } from 'k6';
export const options = { vus: 1, iterations: 1 };
export default function () { sleep(Number(__ENV.SLEEP || 3)); }
"""
QUICK_K6 = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"
PASSING = """
import { test, expect } from '@playwright/test';

test('home page has a title', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('buying adds to the cart', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await page.getByRole('button', { name: 'Buy' }).click();
  await expect(page.locator('#status')).toHaveText('Added to cart');
});
"""


def result_json(server: S3Server, run) -> dict:
    obj = s3_client(server.endpoint).get_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/result.json")
    return json.loads(obj["Body"].read())


def assert_every_artifact_landed(server: S3Server, runner: RunnerProcess, run) -> None:
    assert run.exit_code == ExitCode.PASSED, run.output
    assert "not uploaded" not in run.result.message
    landed = server.keys(run.config.bucket, run.config.prefix)
    planned = runner.planned_keys()
    assert len(planned) >= 3 and landed == planned, (sorted(planned - landed), run.output)
    assert result_json(server, run)["notUploaded"] == []


def test_s3_stopped_while_the_test_runs_and_back_later_loses_nothing(tmp_path):
    """The real S3 server process is stopped after the preflight; the upload meets the outage and
    waits; the server comes back (empty, as moto does: the bucket is created again)."""
    with S3Server() as server:
        server.start()
        runner = RunnerProcess(tmp_path, "k6", SLEEPY_K6, s3_endpoint=server.endpoint, settings_env=QUICK_BACKOFF,
                               uploadWindowSeconds=60)
        runner.wait_for_line("running k6")
        server.stop()
        waiting = runner.wait_for_line("phase=Uploading reason=StorageUnavailable")
        progress = last_progress(waiting)
        assert progress is not None and f"S3 at {server.endpoint}: connection refused" in progress.message
        assert "files not uploaded yet, retrying until 20" in progress.message
        time.sleep(2)
        server.start()
        run = runner.finish()
        assert_every_artifact_landed(server, runner, run)
        assert f"reason={STORAGE_BACK}" in run.output
        assert "waited" in run.output and "for S3" in run.output


def test_with_a_grant_s3_stopped_while_the_test_runs_and_back_later_loses_nothing(tmp_path):
    """The same outage for a runner with an upload grant (every operator pod): its POSTs meet the
    outage, it waits within the window and says so, and every file lands once S3 is back."""
    with S3Server() as server:
        server.start()
        runner = RunnerProcess(tmp_path, "k6", SLEEPY_K6, s3_endpoint=server.endpoint, settings_env=QUICK_BACKOFF,
                               uploadWindowSeconds=60, grant=grant_minter(server.endpoint))
        runner.wait_for_line("running k6")
        server.stop()
        waiting = runner.wait_for_line("phase=Uploading reason=StorageUnavailable")
        progress = last_progress(waiting)
        assert progress is not None and f"S3 at {server.endpoint}: connection refused" in progress.message
        time.sleep(2)
        server.start()
        run = runner.finish()
        assert_every_artifact_landed(server, runner, run)
        assert f"reason={STORAGE_BACK}" in run.output


def test_s3_cut_off_in_the_middle_of_the_upload_loses_nothing(tmp_path, site):
    """A Playwright run (report, JSON, JUnit, console log), uploading one file at a time: the
    connections to S3 are cut at the third PUT (new ones are refused) and restored 3 s later; the
    server behind keeps the two files that landed before, and the final listing has them all."""
    with S3Server() as server:
        server.start()
        front = Front(server.port, down_at_put=3).up()
        runner = RunnerProcess(tmp_path, "playwright", PASSING, s3_endpoint=front.endpoint,
                               settings_env={**QUICK_BACKOFF, "SUPERCHECK_UPLOAD_CONCURRENCY": "1"},
                               uploadWindowSeconds=60, env={"TARGET_URL": site.url})
        try:
            assert front.went_down.wait(120), "".join(runner.lines)
            landed_before = server.keys(runner.config.bucket, runner.config.prefix)
            time.sleep(3)
            front.up()
            run = runner.finish()
        finally:
            front.down()
        assert front.puts_passed == 2 and len(landed_before) == 2
        assert_every_artifact_landed(server, runner, run)
        assert landed_before < server.keys(run.config.bucket, run.config.prefix)
        assert run.result.summary.passed == 2
        assert run.result.artifacts.report == f"{run.config.prefix}/report/index.html"
        assert "phase=Uploading reason=StorageUnavailable" in run.output


def test_s3_down_before_the_run_the_test_runs_anyway_and_uploads_when_it_is_back(tmp_path):
    port = free_port()
    with S3Server(port=port) as server:
        runner = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint=server.endpoint, settings_env=QUICK_BACKOFF,
                               uploadWindowSeconds=60)
        said = runner.wait_for_line("the test runs anyway")
        assert "connection refused" in said and "up to 60 s" in said
        runner.wait_for_line("running k6")  # not failed before running, as a misconfiguration would be
        runner.wait_for_line("phase=Uploading reason=StorageUnavailable")
        server.start()
        run = runner.finish()
        assert_every_artifact_landed(server, runner, run)


def test_a_window_that_runs_out_keeps_the_verdict_and_names_the_lost_artifacts(tmp_path, site):
    nowhere = f"http://127.0.0.1:{free_port()}"
    runner = RunnerProcess(tmp_path, "playwright", PASSING, s3_endpoint=nowhere, settings_env=QUICK_BACKOFF,
                           uploadWindowSeconds=3, env={"TARGET_URL": site.url})
    run = runner.finish()
    assert run.exit_code == ExitCode.PASSED, run.output  # the test's verdict is known: it stands
    assert run.result.summary.passed == 2
    planned = sorted(k.split(run.config.prefix + "/", 1)[1] for k in runner.planned_keys() if
                     not k.endswith("/result.json"))
    message = run.result.message
    assert f"{len(planned)} of {len(planned)} artifacts not uploaded" in message, message
    assert f"S3 at {nowhere}: connection refused, gave up after the 3 s upload window" in message
    assert all(name in message for name in planned), (planned, message)
    assert "[result.json not uploaded]" in message
    assert "report/index.html" in planned and run.result.artifacts.report is None  # the report is among the lost
    lost_line = next(line for line in run.output.splitlines() if "] not uploaded: " in line)
    assert sorted(lost_line.split("not uploaded: ", 1)[1].split(", ")) == planned
    assert 3 <= run.seconds < 40, run.seconds  # waited the window, not much more


def test_sigterm_while_waiting_for_s3_ends_the_wait_at_once(tmp_path):
    """The pod is being deleted (the kubelet's SIGTERM, 10 s before its SIGKILL): the runner stops
    waiting and writes its result while it still can."""
    runner = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint=f"http://127.0.0.1:{free_port()}",
                           uploadWindowSeconds=120)
    runner.wait_for_line("phase=Uploading reason=StorageUnavailable")
    signalled = time.monotonic()
    runner.proc.send_signal(signal.SIGTERM)
    run = runner.finish()
    assert time.monotonic() - signalled < 5, run.output
    assert run.exit_code == ExitCode.PASSED, run.output  # the test had ended: its verdict stands
    assert "gave up: the runner was stopped by a signal" in run.result.message


def test_a_missing_bucket_fails_before_the_test_with_what_to_fix(tmp_path, s3_endpoint):
    runner = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint=s3_endpoint, bucket="no-such-bucket")
    run = runner.finish()
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert run.result.message.startswith(f"before running: S3 at {s3_endpoint} has no bucket 'no-such-bucket' (404)")
    assert "create it" in run.result.message
    assert "running k6" not in run.output and run.seconds < 30


def test_s3_that_denies_access_fails_before_the_test_naming_the_credentials(tmp_path):
    with S3Server(auth=True) as server:
        server.start()
        run = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint=server.endpoint).finish()
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert run.result.failureClass == FailureClass.INFRASTRUCTURE
    assert "denied access to bucket 'k6-performance-artifacts' (403)" in run.result.message
    assert "AWS_ACCESS_KEY_ID" in run.result.message
    assert "running k6" not in run.output


def test_an_s3_host_that_does_not_exist_fails_before_the_test(tmp_path):
    run = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint="http://s3.does-not-exist.invalid:9000").finish()
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert "the S3 host 's3.does-not-exist.invalid' does not resolve" in run.result.message
    assert "fix the operator's S3_ENDPOINT_URL" in run.result.message
    assert "running k6" not in run.output and run.seconds < 30


def test_an_endpoint_that_is_not_a_url_fails_before_the_test(tmp_path):
    run = RunnerProcess(tmp_path, "k6", QUICK_K6, s3_endpoint="not a url").finish()
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert "Invalid endpoint: not a url" in run.result.message and "S3_ENDPOINT_URL" in run.result.message


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_real_60_second_outage_during_the_upload_loses_nothing(tmp_path):
    """About 70 s: the S3 server is stopped for a full minute while the runner waits to upload,
    with the default backoff (1 s doubling to 15 s)."""
    with S3Server() as server:
        server.start()
        runner = RunnerProcess(tmp_path, "k6", SLEEPY_K6, s3_endpoint=server.endpoint, uploadWindowSeconds=120)
        runner.wait_for_line("running k6")
        server.stop()
        stopped = time.monotonic()
        runner.wait_for_line("phase=Uploading reason=StorageUnavailable")
        time.sleep(max(0.0, 60 - (time.monotonic() - stopped)))
        server.start()
        run = runner.finish(timeout=120)
        assert_every_artifact_landed(server, runner, run)
        waits = [line for line in run.output.splitlines() if "reason=StorageUnavailable" in line]
        assert len(waits) >= 5  # announced at every round, so the operator's log tail always has one
