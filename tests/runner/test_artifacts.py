"""Uploads to a real S3 server: key layout, content types, multipart, waiting for S3 to come back,
result.json last; the preflight's verdict. Content types and the key plan are pure; the rest runs
moto's S3 server (marked ``integration``). The runner through S3 outages: test_storage_outage.py."""

from __future__ import annotations

import os
import threading
import time

import pytest

from supercheck_contract import BUCKETS, artifact_prefix
from supercheck_runner import artifacts
from supercheck_runner.artifacts import Backoff, MiB, Uploader, content_type, make_client, plan
from supercheck_runner.storage import Kind

from .conftest import S3_CREDENTIALS, free_port, s3_client, start_moto, stop, wait_for_port

BUCKET = BUCKETS["playwright"]


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def make_tree(root):
    files = {
        "report/index.html": b"<html></html>",
        "report/data/abc.png": b"\x89PNG",
        "report/data/trace.zip": b"PK",
        "report/trace/sw.bundle.js": b"self.x=1",
        "report/trace/index.css": b"a{}",
        "test-results/t/video.webm": b"webm",
        "junit.xml": b"<testsuites/>",
        "playwright-results.json": b"{}",
        "console.log": b"hello\n",
        "k6-metrics.json.gz": b"\x1f\x8b",
        "result.json": b"{}",  # a stale one is never uploaded with the rest
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "link-out").symlink_to("/etc/passwd")
    return files


def test_content_types_make_the_report_browsable():
    assert content_type("report/index.html") == "text/html; charset=utf-8"
    assert content_type("report/trace/sw.bundle.js").startswith("text/javascript")
    assert content_type("x/y.css").startswith("text/css")
    assert content_type("shot.png") == "image/png" and content_type("video.webm") == "video/webm"
    assert content_type("trace.zip") == "application/zip" and content_type("junit.xml") == "application/xml"
    assert content_type("console.log").startswith("text/plain")
    assert content_type("no-extension") == "application/octet-stream"


def test_plan_keys_every_file_under_the_attempt_prefix(tmp_path):
    make_tree(tmp_path)
    prefix = artifact_prefix("team-a", "checkout", "uid-1", 2)
    items = plan(tmp_path, prefix)
    keys = {i.key for i in items}
    assert f"{prefix}/report/index.html" in keys and f"{prefix}/test-results/t/video.webm" in keys
    assert f"{prefix}/result.json" not in keys  # written last, separately
    assert not any("link-out" in k for k in keys)  # symlinks could point anywhere
    # A later attempt (or a later run of the same name, another uid) never shares a key.
    other = {i.key for i in plan(tmp_path, artifact_prefix("team-a", "checkout", "uid-1", 3))}
    assert keys.isdisjoint(other)


@pytest.mark.integration
def test_upload_all_with_content_types_and_result_last(tmp_path, s3_endpoint, s3):
    files = make_tree(tmp_path)
    prefix = artifact_prefix("uploads", "run", "uid-order", 1)
    client = make_client(s3_endpoint, "us-east-1")
    calls: list[str] = []
    original = client.put_object

    def recording_put_object(**kwargs):  # observes the real client's calls, in order
        calls.append(kwargs["Key"])
        return original(**kwargs)

    client.put_object = recording_put_object
    uploader = Uploader(client, BUCKET, concurrency=8)
    report = uploader.upload_all(plan(tmp_path, prefix))
    uploader.put_result(prefix, '{"exitCode": 0}')
    assert report.ok and len(report.uploaded) == len(files) - 1
    assert calls[-1] == f"{prefix}/result.json" and calls.count(f"{prefix}/result.json") == 1
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/report/index.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    bundle = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/report/trace/sw.bundle.js")
    assert bundle["ContentType"].startswith("text/javascript")
    body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/report/data/abc.png")["Body"].read()
    assert body == files["report/data/abc.png"]


@pytest.mark.integration
def test_large_files_go_multipart(tmp_path, s3_endpoint, s3):
    big = tmp_path / "test-results" / "video.webm"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(12 * MiB))
    prefix = artifact_prefix("uploads", "run", "uid-multipart", 1)
    uploader = Uploader(make_client(s3_endpoint, "us-east-1"), BUCKET,
                        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    assert uploader.upload_all(plan(tmp_path, prefix)).ok
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/test-results/video.webm")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # three parts: an S3 multipart upload's ETag
    assert head["ContentType"] == "video/webm"


@pytest.mark.integration
def test_uploads_wait_for_s3_to_come_back_and_say_so(tmp_path):
    """The S3 server is down when the upload starts and up two seconds later: the uploader waits
    (announcing each wait), tries the smallest file first, then the rest."""
    make_tree(tmp_path)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = {}

    def start_late():
        time.sleep(2)
        server["proc"] = start_moto(port)
        wait_for_port(port)
        s3_client(endpoint).create_bucket(Bucket=BUCKET)

    starter = threading.Thread(target=start_late)
    starter.start()
    waits: list[artifacts.Waiting] = []
    backs: list[tuple[int, int]] = []
    try:
        client = make_client(endpoint, "us-east-1", connect_timeout=1, attempts=1)
        started = time.monotonic()
        uploader = Uploader(client, BUCKET, endpoint=endpoint, concurrency=4, give_up_at=started + 30,
                            backoff=Backoff(0.25, 1.0), on_wait=waits.append,
                            on_back=lambda left, total: backs.append((left, total)))
        items = plan(tmp_path, "late/start/uid/attempt-1")
        report = uploader.upload_all(items)
        starter.join()
        assert report.ok, report.failed
        assert time.monotonic() - started > 2 and report.waited > 1.5  # it really waited for the server
        listed = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix="late/")["KeyCount"]
        assert listed == len(report.uploaded) == len(items)
        assert waits and all(w.problem.text == f"S3 at {endpoint}: connection refused" for w in waits[:1])
        assert waits[0].what == f"{len(items)} of {len(items)} files"
        assert [w.retry_in for w in waits[:4]] == [0.25, 0.5, 1.0, 1.0]
        assert backs[-1] == (len(items) - 1, len(items))  # the probe landed; the rest followed
    finally:
        starter.join()
        if "proc" in server:
            stop(server["proc"])


@pytest.mark.integration
def test_result_json_is_retried_within_the_window_and_not_after(tmp_path):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    client = make_client(endpoint, "us-east-1", connect_timeout=1, attempts=1)
    # The window is over: one try, and the error says what happened.
    over = Uploader(client, BUCKET, endpoint=endpoint, give_up_at=time.monotonic())
    with pytest.raises(Exception, match="Could not connect"):
        over.put_result("p/attempt-1", "{}")
    proc = None

    def start_soon():
        nonlocal proc
        time.sleep(1.5)
        proc = start_moto(port)
        wait_for_port(port)
        s3_client(endpoint).create_bucket(Bucket=BUCKET)

    starter = threading.Thread(target=start_soon)
    starter.start()
    try:
        waits: list[artifacts.Waiting] = []
        uploader = Uploader(client, BUCKET, endpoint=endpoint, give_up_at=time.monotonic() + 30,
                            backoff=Backoff(0.25, 0.5), on_wait=waits.append)
        key = uploader.put_result("p/attempt-1", '{"exitCode": 0}')
        starter.join()
        assert key == "p/attempt-1/result.json" and {w.what for w in waits} == {"result.json"}
        assert s3_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read() == b'{"exitCode": 0}'
    finally:
        starter.join()
        if proc is not None:
            stop(proc)


@pytest.mark.integration
def test_preflight_tells_an_outage_from_a_misconfiguration(s3_endpoint):
    assert artifacts.preflight(make_client(s3_endpoint, "us-east-1"), BUCKET, s3_endpoint) is None
    with pytest.raises(artifacts.S3Unavailable, match="has no bucket 'no-such-bucket'") as missing:
        artifacts.preflight(make_client(s3_endpoint, "us-east-1"), "no-such-bucket", s3_endpoint)
    assert missing.value.problem.kind == Kind.MISCONFIGURED
    closed = f"http://127.0.0.1:{free_port()}"
    outage = artifacts.preflight(make_client(closed, "us-east-1", attempts=1), BUCKET, closed)
    assert outage is not None and outage.kind == Kind.OUTAGE and outage.text == f"S3 at {closed}: connection refused"
