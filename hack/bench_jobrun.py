#!/usr/bin/env python3
"""Benchmark a Playwright suite run as a JobRun against raw `npx playwright test` of the same files.

    source .dev/env && .venv/bin/python hack/bench_jobrun.py [--tests 40] [--workers 2] [--rounds 2]

Needs the local environment with the operator running (make dev-up). For each round it times:

* raw: `npx playwright test` of the suite's files (same Chromium, same workers, list reporter),
  once bare and once recording what a JobRun records by default (traces kept on failure, screenshots
  of failures, no videos);
* JobRun at parallelism 1 (also with `playwright.video: retain-on-failure`, and with the trace off:
  what raw records) and 4: created -> terminal
  (admission, pods, validation, the tests, uploads, the merged report), on the same files with
  the same workers per pod;

and prints the medians and each JobRun's ratio to raw. Not a test: it asserts nothing, it measures.
Each spec opens a page and checks it (about 0.3 s of work per test), against a local site.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "runner-image" / "node_modules"
CHROMIUM = os.environ.get("SUPERCHECK_CHROMIUM_PATH", "/usr/bin/chromium")
GROUP, VERSION = "supercheck.io", "v1alpha1"
SITE = "<!doctype html><title>Bench</title><h1>Bench</h1><button onclick=\"out.textContent='clicked'\">Go</button>" \
       "<p id=out></p>"

SPEC = """import { test, expect } from '@playwright/test';

test('%(name)s: the page works', async ({ page }) => {
  await page.goto(process.env.TARGET_URL);
  await expect(page).toHaveTitle('Bench');
  await page.getByRole('button', { name: 'Go' }).click();
  await expect(page.locator('#out')).toHaveText('clicked');
});
"""


def suite(n: int) -> dict[str, str]:
    return {f"t{i:03d}.spec.ts": SPEC % {"name": f"t{i:03d}"} for i in range(n)}


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    (root / "index.html").write_text(SITE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# What a JobRun records by default (PLAYWRIGHT_TRACE and screenshots of failures; no videos):
# Playwright records every test's trace, and keeps it only for those that fail.
ARTIFACTS = "trace: 'retain-on-failure', screenshot: 'only-on-failure', "


def raw(work: Path, files: dict[str, str], workers: int, site: str, artifacts: bool = False) -> float:
    shutil.rmtree(work, ignore_errors=True)
    (work / "tests").mkdir(parents=True)
    for name, text in files.items():
        (work / "tests" / name).write_text(text)
    (work / "node_modules").symlink_to(NODE_MODULES)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    (work / "playwright.config.mjs").write_text(
        f"export default {{ testDir: 'tests', workers: {workers}, retries: 0, reporter: 'list', "
        f"use: {{ {ARTIFACTS if artifacts else ''}launchOptions: {{ executablePath: '{CHROMIUM}', "
        f"args: {args!r} }} }} }};\n")
    env = {**os.environ, "TARGET_URL": site, "PLAYWRIGHT_HTML_OPEN": "never"}
    started = time.monotonic()
    proc = subprocess.run(["npx", "--no-install", "playwright", "test"], cwd=work, capture_output=True, text=True,
                          env=env)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"raw playwright failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def jobrun(api: client.CustomObjectsApi, namespace: str, parallelism: int, workers: int, site: str,
           video: str | None = None, trace: str | None = None) -> float:
    name = f"bench-p{parallelism}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "jobruns", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "JobRun", "metadata": {"name": name},
        "spec": {"type": "playwright", "parallelism": parallelism, "testsFrom": {"configMapRef": {"name": "bench"}},
                 "playwright": {"workers": workers, "retries": 0, **({"video": video} if video else {}),
                                **({"trace": trace} if trace else {})},
                 "env": [{"name": "TARGET_URL", "value": site}]}})
    while True:
        st = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "jobruns", name).get("status") or {}
        if st.get("phase") in {"Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"}:
            elapsed = time.monotonic() - started
            if st["phase"] != "Passed":
                raise SystemExit(f"{name} ended {st['phase']}: {st.get('message')}")
            return elapsed
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config.load_kube_config()
    core, api = client.CoreV1Api(), client.CustomObjectsApi()
    namespace = f"bench-jobrun-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    files = suite(args.tests)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bench"),
                                                                    data=files))
    times: dict[str, list[float]] = {"raw": [], "raw+artifacts": [], "p1": [], "p1-video": [], "p1-bare": [],
                                     "p4": []}
    with tempfile.TemporaryDirectory() as tmp:
        server, site = serve(Path(tmp))
        try:
            for r in range(args.rounds):
                times["raw"].append(raw(Path(tmp) / "raw", files, args.workers, site))
                times["raw+artifacts"].append(raw(Path(tmp) / "raw", files, args.workers, site, artifacts=True))
                times["p1"].append(jobrun(api, namespace, 1, args.workers, site))
                times["p1-video"].append(jobrun(api, namespace, 1, args.workers, site, video="retain-on-failure"))
                times["p1-bare"].append(jobrun(api, namespace, 1, args.workers, site, video="off", trace="off"))
                times["p4"].append(jobrun(api, namespace, 4, args.workers, site))
                print(f"round {r + 1}: raw {times['raw'][-1]:.1f} s, raw with traces "
                      f"{times['raw+artifacts'][-1]:.1f} s, JobRun p1 {times['p1'][-1]:.1f} s "
                      f"(videos on {times['p1-video'][-1]:.1f} s, trace and video off "
                      f"{times['p1-bare'][-1]:.1f} s), "
                      f"p4 {times['p4'][-1]:.1f} s", flush=True)
        finally:
            server.shutdown()
            core.delete_namespace(namespace)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{args.tests} tests, {args.workers} workers per pod, {args.rounds} rounds (medians):")
    ra = med["raw+artifacts"]
    print(f"  raw npx playwright test                 {med['raw']:6.1f} s")
    print(f"  raw, recording traces as a JobRun does  {ra:6.1f} s   x{ra / med['raw']:.2f} of raw")
    for key, label in (("p1", "JobRun parallelism 1"), ("p1-video", "JobRun parallelism 1, videos on"),
                       ("p1-bare", "JobRun parallelism 1, trace+video off"), ("p4", "JobRun parallelism 4")):
        print(f"  {label:39} {med[key]:6.1f} s   x{med[key] / med['raw']:.2f} of raw, "
              f"x{med[key] / ra:.2f} of raw with the same artifacts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
