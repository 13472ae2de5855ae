"""What a Playwright run leaves in S3: each artifact once, nothing temporary, the HTML report
browsable from its S3 URL with working screenshot, video and trace links, and result.json
listing exactly what is there. Real Chromium, real S3 (moto)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from supercheck_contract import ExitCode

from .conftest import FAILING, NODE_MODULES, make_runner, read_json

CHROMIUM = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "chromium"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def listing(s3, bucket: str, prefix: str) -> dict[str, dict]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:]: o for o in listed.get("Contents", [])}


@pytest.fixture(scope="module")
def one_failure(tmp_path_factory, s3_endpoint, site):
    run = make_runner(tmp_path_factory.mktemp("uploads"), s3_endpoint)
    return run("playwright", FAILING, env={"TARGET_URL": site.url}, playwrightRetries=0)


def test_each_artifact_is_uploaded_once_and_nothing_temporary(one_failure, s3):
    run = one_failure
    assert run.exit_code == ExitCode.TEST_FAILED, run.output
    objects = listing(s3, run.config.bucket, run.config.prefix)
    keys = sorted(objects)
    assert not [k for k in keys if "/.playwright-artifacts-" in k or k.endswith(".last-run.json")], keys
    # No content twice: the failed test's screenshot, trace, video and error context are in
    # report/data/ (where the report links them), not also under test-results/.
    etags = Counter(o["ETag"] for o in objects.values())
    assert [k for k in keys if etags[objects[k]["ETag"]] > 1] == []
    data = [k for k in keys if k.startswith("report/data/")]
    assert {os.path.splitext(k)[1] for k in data} >= {".png", ".zip", ".md"}, data
    assert [k for k in keys if k.startswith("test-results/")] == [], keys
    for name in ("report/index.html", "playwright-results.json", "junit.xml", "console.log", "result.json"):
        assert name in keys, name


def test_result_json_lists_exactly_what_was_uploaded(one_failure, s3):
    run = one_failure
    objects = listing(s3, run.config.bucket, run.config.prefix)
    result = read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")
    listed = {f["key"]: f["bytes"] for f in result["uploaded"]}
    assert listed == {k: o["Size"] for k, o in objects.items() if k != "result.json"}
    assert result["notUploaded"] == []
    # The termination message (4 KiB) does not carry the list.
    assert "uploaded" not in json.loads(run.termination_message)


REPORT_LINKS = """
import { chromium } from '@playwright/test';
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
const page = await browser.newPage();
await page.goto(process.env.REPORT_URL);
await page.getByRole('link', { name: 'checkout button exists' }).click();
await page.locator('img[src*="data/"]').first().waitFor({ timeout: 30000 });
const fetched = {};
const status = async (url) => (await page.request.get(new URL(url, page.url()).href)).status();
for (const img of await page.locator('img[src*="data/"]').all()) {
  const src = await img.getAttribute('src');
  fetched[src] = await status(src);
  fetched.imageWidth = await img.evaluate((i) => i.naturalWidth);
}
for (const video of await page.locator('video source, video[src]').all()) {
  const src = await video.getAttribute('src');
  fetched[src] = await status(src);
}
const traceLink = page.locator('a[href*="trace/index.html"]').first();
const href = await traceLink.getAttribute('href');
const traceUrl = new URL(href, page.url());
fetched.trace = await status(traceUrl.searchParams.get('trace'));
// The trace viewer itself, from the bucket: it loads the trace and lists the test's actions,
// among them the assertion that failed.
await page.goto(traceUrl.href);
await page.getByText('Expect "toBeVisible"').first().waitFor({ timeout: 60000 });
fetched.traceViewer = 'opened';
console.log(JSON.stringify(fetched));
await browser.close();
"""


def test_the_report_opens_from_s3_with_working_screenshot_video_and_trace(one_failure, s3, s3_endpoint, tmp_path):
    run = one_failure
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
    assert seen.pop("imageWidth") > 0
    assert seen.pop("trace") == 200
    assert seen and all(code == 200 for code in seen.values()), seen
    assert any(src.endswith(".webm") for src in seen) or "videos are off" in run.output, seen
