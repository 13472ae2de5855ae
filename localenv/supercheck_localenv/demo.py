"""`make demo`: run the examples on the local environment and print their results.

Serves `examples/site/` on 127.0.0.1:18090 as the system under test (the examples need
no internet), applies every manifest in `examples/` to the namespace `supercheck-demo`,
follows the runs, monitors and schedules with a line per transition until every run has ended,
every monitor has a state (Up, once its first checks pass) and every schedule has run once, and ends
with result tables. The site stops with the demo, so the demo suspends its monitors and schedules
last (a monitor of a stopped site would only go Down).
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from supercheck.models import TERMINAL_PHASES, VERSION
from supercheck.vocabulary import GROUP
from supercheck_localenv.layout import default_layout

NAMESPACE = "supercheck-demo"
SITE_PORT = 18090
TIMEOUT_S = 600


def serve_site(root: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", SITE_PORT), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the load test would drown the progress lines
        pass


def _kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    layout = default_layout()
    return subprocess.run(
        [str(layout.dev / "bin" / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        input=input, text=True, capture_output=True,
    )


def result_text(status: dict) -> str:
    if status.get("progress"):  # a JobRun: its one-line result says it all
        return status.get("result") or status.get("progressText") or ""
    if status.get("summary"):
        s = status["summary"]
        return (f"{s.get('passed', 0)}/{s.get('total', 0)} passed, {s.get('failed', 0)} failed, "
                f"{s.get('flaky', 0)} flaky")
    if status.get("k6"):
        k = status["k6"]
        verdict = "thresholds ok" if k.get("thresholdsPassed") else "thresholds crossed"
        p95 = k.get("httpReqDurationP95Ms")
        p95_text = f", p95 {p95:.1f} ms" if isinstance(p95, (int, float)) else ""
        checks = f"{k.get('checksPassed', 0)}/{k.get('checksPassed', 0) + k.get('checksFailed', 0)}"
        return f"{verdict}, checks {checks}{p95_text}"
    return status.get("reason") or ""


def duration_text(status: dict) -> str:
    try:
        start = datetime.fromisoformat(status["startedAt"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(status["completedAt"].replace("Z", "+00:00"))
        return f"{(end - start).total_seconds():.1f}s"
    except (KeyError, AttributeError, ValueError):
        return "-"


def artifacts_text(status: dict) -> str:
    a = status.get("artifacts") or {}
    if not a:
        return "-"
    return f"s3://{a['bucket']}/{a.get('report') or a['prefix'] + '/'}"


def print_table(runs: list[dict]) -> None:
    rows = [("NAME", "TYPE", "PHASE", "ATTEMPTS", "RESULT", "DURATION", "ARTIFACTS")]
    for run in sorted(runs, key=lambda r: r["metadata"]["name"]):
        st = run.get("status") or {}
        rows.append(
            (
                run["metadata"]["name"], run["spec"]["type"], st.get("phase", "-"),
                str(st.get("attempts", 0)) if run.get("kind") != "JobRun" else
                f"{len(st.get('shards') or [])} shards",
                result_text(st), duration_text(st), artifacts_text(st),
            )
        )
    _print_rows(rows)


def print_monitors(monitors: list[dict]) -> None:
    rows = [("MONITOR", "CHECK", "STATE", "LATENCY", "UPTIME 24H", "LAST RESULT")]
    for mon in sorted(monitors, key=lambda m: m["metadata"]["name"]):
        st, spec = mon.get("status") or {}, mon["spec"]
        check = next((k for k in ("http", "tcp", "playwright", "k6") if k in spec), "-")
        uptime = (st.get("uptime") or {}).get("last24h")
        rows.append((mon["metadata"]["name"], check, st.get("state", "-"),
                     f"{st['lastLatencyMs']} ms" if st.get("lastLatencyMs") is not None else "-",
                     f"{uptime:g}%" if isinstance(uptime, (int, float)) else "-", st.get("lastResult") or "-"))
    _print_rows(rows)


def print_schedules(schedules: list[dict]) -> None:
    rows = [("SCHEDULE", "SCHEDULE SPEC", "LAST RUN", "PHASE", "PASSED", "FAILED", "NEXT")]
    for sched in sorted(schedules, key=lambda m: m["metadata"]["name"]):
        st = sched.get("status") or {}
        last = st.get("lastRun") or {}
        rows.append((sched["metadata"]["name"], sched["spec"]["schedule"], last.get("name", "-"),
                     last.get("phase", "-"), str(st.get("passedRuns", 0)), str(st.get("failedRuns", 0)),
                     st.get("nextScheduleTime") or "-"))
    _print_rows(rows)


def _print_rows(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _list(api, plural: str) -> list[dict]:
    return api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)["items"]


def _settled(runs: list[dict], monitors: list[dict], schedules: list[dict]) -> bool:
    ended = {p.value for p in TERMINAL_PHASES}
    return (bool(runs) and all((r.get("status") or {}).get("phase") in ended for r in runs)
            and all((m.get("status") or {}).get("state") in ("Up", "Down") for m in monitors)
            and all((s.get("status") or {}).get("lastRun") for s in schedules))


def main() -> int:
    from kubernetes import client, config

    layout = default_layout()
    server = serve_site(layout.root / "examples" / "site")
    print(f"serving examples/site on http://127.0.0.1:{SITE_PORT}")

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(layout.kubeconfig)))
    _kubectl("create", "namespace", NAMESPACE)
    # A demo is repeatable: earlier runs, schedules and monitors of the examples make way for new ones.
    _kubectl("delete", "runschedules,monitors,testruns,jobruns", "--all", "-n", NAMESPACE, "--wait=true",
             "--timeout=60s")
    manifests = sorted((layout.root / "examples").glob("*.yaml"))
    for manifest in manifests:
        res = _kubectl("apply", "-n", NAMESPACE, "-f", str(manifest))
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        print(res.stdout.strip())

    seen: dict[str, tuple] = {}
    deadline = time.monotonic() + TIMEOUT_S
    runs: list[dict] = []
    monitors: list[dict] = []
    schedules: list[dict] = []
    while time.monotonic() < deadline:
        runs = [{**r, "kind": kind} for plural, kind in (("testruns", "TestRun"), ("jobruns", "JobRun"))
                for r in _list(api, plural)]
        monitors, schedules = _list(api, "monitors"), _list(api, "runschedules")
        for mon in monitors:
            st = mon.get("status") or {}
            state = (st.get("state") or "Unknown", None)
            if seen.get("monitor/" + mon["metadata"]["name"]) != state:
                seen["monitor/" + mon["metadata"]["name"]] = state
                print(f"{time.strftime('%H:%M:%S')}  monitor {mon['metadata']['name']:14} {state[0]:10} "
                      f"{st.get('lastResult') or ''}")
        for run in runs:
            st = run.get("status") or {}
            state = (st.get("phase"), st.get("attempts") or st.get("progressText"))
            if seen.get(run["metadata"]["name"]) != state:
                seen[run["metadata"]["name"]] = state
                detail = f" ({st['message']})" if st.get("message") and st.get("phase") != "Running" else ""
                step = (f"attempt {st.get('attempts', 0)}" if run["kind"] == "TestRun" else
                        f"tests {st.get('progressText', '-')}")
                print(f"{time.strftime('%H:%M:%S')}  {run['metadata']['name']:22} "
                      f"{st.get('phase', 'Pending'):10} {step}{detail}")
        if _settled(runs, monitors, schedules):
            break
        time.sleep(1)
    # The site stops now: suspend what would otherwise go on checking it and starting runs against it.
    for plural, items in (("monitors", monitors), ("runschedules", schedules)):
        for item in items:
            api.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, item["metadata"]["name"],
                                               {"spec": {"suspend": True}})
    server.shutdown()
    print()
    print_table(runs)
    if monitors:
        print()
        print_monitors(monitors)
    if schedules:
        print()
        print_schedules(schedules)
    print(f"\nInspect: source .dev/env && kubectl get supercheck -n {NAMESPACE}; "
          f"kubectl describe testrun <name> -n {NAMESPACE}")
    if monitors or schedules:
        print("The demo's monitors and schedules are suspended (its site is gone); resume one with "
              f"kubectl patch monitor <name> -n {NAMESPACE} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'")
    return 0 if _settled(runs, monitors, schedules) else 1


if __name__ == "__main__":
    sys.exit(main())
