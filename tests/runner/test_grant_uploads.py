"""supercheck-runner with an upload grant (supercheck_contract.UploadGrant) instead of an S3 key:
every object goes up as a presigned POST under the attempt's prefix, a merge reads through the
grant's presigned GETs, and a refusal ends the uploads at once instead of being retried.

moto accepts presigned POSTs but checks neither their policy nor their expiry; a refusal is
therefore played by a small HTTP server answering as S3 does (403 with an S3 error document).
The policy itself is checked by the local environment's S3 server (tests/security)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from supercheck_contract import BUCKETS, ExitCode, FailureClass, RunnerResult, UploadGrant
from supercheck_runner.grant import GrantClient
from supercheck_runner.storage import Kind, classify

from .conftest import grant_minter, read_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

K6_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';

export const options = { vus: 1, iterations: 2 };

export default function () {
  const res = http.get(__ENV.TARGET_URL);
  check(res, {
    'status is 200': (r) => r.status === 200,
    'no S3 key in the pod': () => __ENV.AWS_SECRET_ACCESS_KEY === undefined && __ENV.AWS_ACCESS_KEY_ID === undefined,
  });
}
"""

BUCKET = BUCKETS["playwright"]


def test_a_run_with_a_grant_stores_everything_under_its_prefix_and_result_json(run_runner, s3, s3_endpoint, site):
    run = run_runner("k6", K6_SCRIPT, env={"TARGET_URL": site.url}, grant=grant_minter(s3_endpoint))
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result is not None and run.result.failureClass == FailureClass.NONE
    keys = run.keys(s3)
    assert keys and all(k.startswith(run.config.prefix + "/") for k in keys)
    stored = read_json(s3, run.config.bucket, f"{run.config.prefix}/result.json")
    result = RunnerResult.model_validate(stored)
    assert result.notUploaded == []
    assert {f.key for f in result.uploaded} >= {"console.log", "k6-summary.json"}
    assert {f"{run.config.prefix}/{f.key}" for f in result.uploaded} | {f"{run.config.prefix}/result.json"} == set(keys)
    head = s3.head_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/k6-summary.json")
    assert head["ContentType"] == "application/json"
    # The preflight POSTed the log's first lines; the whole log replaced them after the test.
    log = s3.get_object(Bucket=run.config.bucket, Key=f"{run.config.prefix}/console.log")["Body"].read().decode()
    assert "k6 ended" in log and "uploaded" not in log.split("k6 ended")[0].split("\n")[-1]


class RefusingS3:
    """Answers as S3 does to a grant it refuses: 403 AccessDenied (an expired or violated policy).
    ``accept_first``: POSTs accepted before refusing (the preflight passes, the uploads do not)."""

    def __init__(self, accept_first: int = 0):
        self.posts = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts += 1
                    accepted = outer.posts <= accept_first
                if accepted:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                        b"<Message>Invalid according to Policy: Policy expired.</Message></Error>")
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{BUCKET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def grant(self, bucket: str, prefix: str) -> UploadGrant:
        return UploadGrant(bucket=bucket, prefix=prefix, url=self.url, fields={"policy": "x"},
                           expires="2000-01-01T00:00:00Z", maxObjectBytes=10**8)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_refused_grant_fails_the_attempt_before_the_test_runs(run_runner, site):
    with RefusingS3() as s3:
        run = run_runner("k6", K6_SCRIPT, env={"TARGET_URL": site.url}, grant=s3.grant)
    assert run.exit_code == ExitCode.INFRASTRUCTURE, run.output
    assert run.result is not None
    assert run.result.message.startswith("before running:")
    assert "refused the upload grant (403 AccessDenied: Invalid according to Policy: Policy expired." \
        in run.result.message
    assert "running k6" not in run.output
    assert s3.posts == 1  # a refusal is not retried


def test_uploads_the_grant_refuses_are_not_retried_through_the_window(run_runner, site):
    with RefusingS3(accept_first=1) as s3:
        run = run_runner("k6", K6_SCRIPT, env={"TARGET_URL": site.url}, grant=s3.grant, uploadWindowSeconds=120,
                         settings_env={"SUPERCHECK_UPLOAD_BACKOFF_SECONDS": "5"})
    assert run.exit_code == ExitCode.PASSED, run.output  # the test's verdict stands
    assert run.result is not None
    assert "refused the upload grant" in run.result.message
    assert "result.json not uploaded" in run.result.message
    assert "StorageUnavailable" not in run.output  # no waiting for an S3 that said no
    assert run.seconds < 60
    (lost,) = [ln for ln in run.output.splitlines() if ln.startswith("[supercheck] not uploaded: ")]
    files = len(lost.split(": ", 1)[1].split(", "))
    assert files >= 2
    assert s3.posts == 1 + files + 1  # the preflight, one try per file, one for result.json: no backoff rounds


def test_a_grant_client_posts_under_its_prefix_and_refuses_other_keys_without_asking(s3, s3_endpoint, tmp_path):
    grant = grant_minter(s3_endpoint)(BUCKET, "ns-a/run/uid/attempt-1")
    client = GrantClient(grant)
    body = tmp_path / "trace.zip"
    body.write_bytes(b"PK" + bytes(3 * 1024 * 1024))
    client.upload_file(str(body), BUCKET, "ns-a/run/uid/attempt-1/trace.zip", ExtraArgs={"ContentType": "x/y"})
    got = s3.get_object(Bucket=BUCKET, Key="ns-a/run/uid/attempt-1/trace.zip")
    assert got["Body"].read() == body.read_bytes() and got["ContentType"] == "x/y"
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=BUCKET, Key="ns-b/run/uid/attempt-1/result.json", Body=b"{}",
                          ContentType="application/json")
    assert classify(refused.value, bucket=BUCKET, endpoint=s3_endpoint).kind == Kind.REFUSED
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="ns-b/run/uid/attempt-1/result.json")


def test_a_file_larger_than_the_grant_allows_is_refused_before_it_is_sent(s3_endpoint, tmp_path):
    grant = grant_minter(s3_endpoint, max_object_bytes=1024)(BUCKET, "ns-a/big/uid/attempt-1")
    with pytest.raises(ClientError) as refused:
        GrantClient(grant).put_object(Bucket=BUCKET, Key="ns-a/big/uid/attempt-1/a.bin", Body=bytes(2048),
                                      ContentType="application/octet-stream")
    problem = classify(refused.value, bucket=BUCKET, endpoint=s3_endpoint)
    assert problem.kind == Kind.REFUSED and "EntityTooLarge" in problem.text


def test_a_merge_reads_exactly_the_objects_its_grant_names(s3, s3_endpoint, tmp_path):
    shard = "ns/job/uid/shard-1/attempt-1"
    s3.put_object(Bucket=BUCKET, Key=f"{shard}/blob/shard-1.zip", Body=b"blob-1")
    s3.put_object(Bucket=BUCKET, Key=f"{shard}/result.json", Body=b"{}")
    reads = [f"{shard}/blob/shard-1.zip", "ns/job/uid/shard-2/attempt-1/blob/shard-2.zip"]  # shard 2 wrote none
    client = GrantClient(grant_minter(s3_endpoint, reads=reads)(BUCKET, "ns/job/uid"))
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{shard}/blob/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{shard}/blob/shard-1.zip"]
    client.download_file(BUCKET, f"{shard}/blob/shard-1.zip", str(tmp_path / "b.zip"))
    assert (tmp_path / "b.zip").read_bytes() == b"blob-1"
    with pytest.raises(ClientError) as missing:
        client.download_file(BUCKET, reads[1], str(tmp_path / "c.zip"))
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as denied:
        client.download_file(BUCKET, f"{shard}/result.json", str(tmp_path / "r.json"))
    assert classify(denied.value, bucket=BUCKET, endpoint=s3_endpoint).kind == Kind.REFUSED


def test_an_s3_that_is_away_is_an_outage_to_wait_out_not_a_refusal(tmp_path):
    grant = UploadGrant(bucket=BUCKET, prefix="p", url="http://127.0.0.1:9/b", fields={},
                        expires="2100-01-01T00:00:00Z", maxObjectBytes=100)
    started = time.monotonic()
    with pytest.raises(Exception) as away:
        GrantClient(grant, attempts=2, sleep=lambda s: None).put_object(Bucket=BUCKET, Key="p/x", Body=b"x",
                                                                        ContentType="text/plain")
    problem = classify(away.value, bucket=BUCKET, endpoint="http://127.0.0.1:9")
    assert problem.kind == Kind.OUTAGE and "connection refused" in problem.text
    assert time.monotonic() - started < 10
    assert not Path(tmp_path / "x").exists()
