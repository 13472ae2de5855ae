"""Fixtures for the runner's tests: a real S3 server (moto), a small site to test, and a way
to run ``supercheck-runner`` as the pod would (a subprocess with the pod's environment).

No cluster is needed: the runner's whole interface is its environment, its exit code, its
termination message and what it leaves in S3.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from supercheck_contract import (
    BUCKETS,
    UPLOAD_GRANT_ENV,
    RunnerConfig,
    RunnerResult,
    UploadGrant,
    artifact_prefix,
    decode_termination_message,
)

VENV_BIN = Path(sys.executable).parent
RUNNER = VENV_BIN / "supercheck-runner"
MOTO = VENV_BIN / "moto_server"
REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "runner-image" / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_moto(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "runner-test",
    "AWS_SECRET_ACCESS_KEY": "runner-test-secret",
    "AWS_REGION": "us-east-1",
}


def s3_client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@contextlib.contextmanager
def moto_with_buckets() -> Iterator[str]:
    """moto's S3 server on a free port, with the contract's BUCKETS: its endpoint URL."""
    port = free_port()
    proc = start_moto(port)
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        client = s3_client(endpoint)
        for bucket in BUCKETS.values():
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_with_buckets() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3(s3_endpoint):
    return s3_client(s3_endpoint)


# --- the site under test ----------------------------------------------------------------

PAGES = {
    "/": (
        "<!doctype html><html><head><title>Demo shop</title></head><body>"
        "<h1>Welcome</h1>"
        "<button id='buy' onclick=\"document.getElementById('status').textContent='Added to cart'\">Buy</button>"
        "<p id='status'></p><a href='/about'>About us</a></body></html>"
    ),
    "/about": "<!doctype html><html><head><title>About</title></head><body><h1>About us</h1></body></html>",
    "/files": (
        "<!doctype html><html><head><title>Files</title></head><body>"
        "<a href='/orders.csv'>Export orders</a>"
        "<input type='file' id='upload' onchange=\"this.files[0].text().then(t => "
        "document.getElementById('uploaded').textContent = this.files[0].name + ': ' + t)\">"
        "<p id='uploaded'></p></body></html>"
    ),
}
ORDERS_CSV = b"id,total\n1,9.99\n2,19.50\n"


class Site:
    def __init__(self, port: int = 0):
        self.release = threading.Event()  # lets the never-ending page go at teardown
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                if path in PAGES:
                    body = PAGES[path].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/never":
                    # Headers and the start of a page, then nothing: the load event never comes.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"<!doctype html><html><body><p>loading")
                    self.wfile.flush()
                    site.release.wait(300)
                elif path == "/orders.csv":  # a download
                    self.send_response(200)
                    self.send_header("Content-Type", "text/csv")
                    self.send_header("Content-Disposition", "attachment; filename=orders.csv")
                    self.send_header("Content-Length", str(len(ORDERS_CSV)))
                    self.end_headers()
                    self.wfile.write(ORDERS_CSV)
                elif path == "/echo":
                    # The request's headers as JSON (names in lower case), to see what the browser sent.
                    body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/slow":
                    time.sleep(0.25)
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # browsers drop connections; not news
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def site():
    with Site() as s:
        yield s


def site_in(ports: range) -> Site:
    """The site on the first free port of ``ports`` (a range kept for these tests)."""
    for port in ports:
        try:
            return Site(port)
        except OSError:
            continue
    raise AssertionError(f"no free port in {ports.start}-{ports.stop - 1}")


# --- running the runner -------------------------------------------------------------------


@dataclass
class RunOutcome:
    exit_code: int
    result: RunnerResult | None
    termination_message: str
    output: str
    config: RunnerConfig
    seconds: float
    stamped: list[tuple[float, str]] = field(default_factory=list)  # (epoch seconds it was read, line)

    def keys(self, s3) -> list[str]:
        listed = s3.list_objects_v2(Bucket=self.config.bucket, Prefix=self.config.prefix + "/")
        return [o["Key"] for o in listed.get("Contents", [])]


def configmap_volume(folder: Path, files: dict[str, str]) -> None:
    """Files as the kubelet lays out a ConfigMap volume with items: the data in a timestamped
    folder, ``..data`` linking to it, and each top-level entry a link through ``..data``; read-only."""
    data = folder / "..2030_01_01_12_00_00.000000001"
    for rel, text in files.items():
        target = data / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o444)
    (folder / "..data").symlink_to(data.name)
    for top in sorted({rel.split("/")[0] for rel in files}):
        (folder / top).symlink_to(f"..data/{top}")


@pytest.fixture
def run_runner(tmp_path, s3_endpoint):
    """Run supercheck-runner as a pod would: RunnerConfig.to_env() + S3 variables + the user's env,
    the script (and its files) in a ConfigMap volume's layout."""
    return make_runner(tmp_path, s3_endpoint)


def make_runner(tmp_path: Path, s3_endpoint: str):
    """``run(kind, script, ...)`` with its files under ``tmp_path`` (for fixtures of a wider scope)."""

    def run(kind: str, script: str | None, *, timeout_seconds: int = 60, env: dict | None = None,
            suffix: str | None = None, settings_env: dict | None = None, s3_endpoint_url: str | None = None,
            wall_timeout: float = 240, sigterm_after: float | None = None, files: dict[str, str] | None = None,
            script_name: str | None = None, grant: Callable[[str, str], UploadGrant] | None = None,
            **config_fields) -> RunOutcome:
        """``script_name``: the script's path in the folder, passed as scriptName (as the operator does);
        ``files``: the other files, by path; ``script=None``: the whole folder is the suite;
        ``grant(bucket, prefix)``: the upload grant the pod gets, in a file named by UPLOAD_GRANT_ENV,
        and then no S3 key nor endpoint in its environment (as the operator's pods)."""
        uid = uuid.uuid4().hex[:12]
        name = f"{kind}-{uid[:6]}"
        script_dir = tmp_path / f"script-{uid}"
        script_dir.mkdir()
        entry = script_name or suffix or ("test.spec.ts" if kind == "playwright" else "script.js")
        configmap_volume(script_dir, {**(files or {}), **({entry: script} if script is not None else {})})
        script_path = script_dir / entry if script is not None else script_dir
        if script_name is not None:
            config_fields.setdefault("scriptName", script_name)
        config = RunnerConfig(
            type=kind,
            scriptPath=str(script_path),
            timeoutSeconds=timeout_seconds,
            runName=name,
            namespace="runner-tests",
            attempt=1,
            bucket=BUCKETS["k6" if kind == "k6" else "playwright"],
            prefix=artifact_prefix("runner-tests", name, uid, 1),
            workDir=str(tmp_path / f"work-{uid}"),
            **config_fields,
        )
        termination = tmp_path / f"termination-{uid}"
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            **config.to_env(),
            **S3_CREDENTIALS,
            "S3_ENDPOINT_URL": s3_endpoint_url or s3_endpoint,
            "SUPERCHECK_TERMINATION_MESSAGE_PATH": str(termination),
            **(settings_env or {}),
            **(env or {}),
        }
        if grant is not None:
            for key in (*S3_CREDENTIALS, "S3_ENDPOINT_URL"):
                full_env.pop(key, None)
            grant_file = tmp_path / f"grant-{uid}.json"
            grant_file.write_text(grant(config.bucket, config.prefix).model_dump_json())
            full_env[UPLOAD_GRANT_ENV] = str(grant_file)
        started = time.monotonic()
        proc = subprocess.Popen([str(RUNNER)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        if sigterm_after is not None:  # as the kubelet does when the pod is deleted
            time.sleep(sigterm_after)
            proc.send_signal(signal.SIGTERM)
        # Read as it comes, each line with the time it arrived (the test-ended lines' promptness).
        stamped: list[tuple[float, str]] = []
        reader = threading.Thread(target=lambda: stamped.extend((time.time(), line) for line in proc.stdout),
                                  daemon=True)
        reader.start()
        try:
            proc.wait(timeout=wall_timeout)
            reader.join(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = "".join(line for _, line in stamped)
        seconds = time.monotonic() - started
        message = termination.read_text() if termination.exists() else ""
        return RunOutcome(proc.returncode, decode_termination_message(message), message, output, config, seconds,
                          stamped)

    return run


def grant_minter(endpoint: str, *, seconds: float = 900, max_object_bytes: int | None = None,
                 reads: Sequence[str] = ()) -> Callable[[str, str], UploadGrant]:
    """``mint(bucket, prefix)``: a grant as the operator mints one (supercheck.grants), signed with the
    test S3 server's key."""
    from supercheck.config import Settings
    from supercheck.grants import mint

    extra = {} if max_object_bytes is None else {"runner_max_artifact_object_bytes": max_object_bytes}
    settings = Settings(s3_endpoint_url=endpoint, aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], **extra)

    def minted(bucket: str, prefix: str) -> UploadGrant:
        return mint(settings, bucket, prefix, datetime.now(UTC) + timedelta(seconds=seconds), reads)

    return minted


def read_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# A spec with one passing and one failing test (the Checkout button is not on the demo site).
FAILING = """
import { test, expect } from '@playwright/test';

test('home page has a title', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Demo shop/);
});

test('checkout button exists', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page.getByRole('button', { name: 'Checkout' })).toBeVisible({ timeout: 1000 });
});
"""
