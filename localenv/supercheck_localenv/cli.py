"""`supercheck-dev`: start, inspect and stop the local environment.

    supercheck-dev up [NAME=VALUE ...]   start everything (idempotent), write .dev/env
    supercheck-dev down                  stop exactly what `up` started
    supercheck-dev status                one line per component
    supercheck-dev restart COMPONENT     restart one component (e.g. node-agent, operator)
    supercheck-dev stop COMPONENT        stop one component (`up` starts it again)
    supercheck-dev chart-values          Helm values for installing charts/supercheck here
                                         (README, "Deploying to a cluster")

`make dev-up` and `make dev-down` call this. Operator configuration variables
(RUNNING_CAPACITY=3 ...) come from the command line or the environment; when they
differ from those of the running operator, only the operator is restarted.

    supercheck-dev up SUPERCHECK_TRACING=1   tracing on (docs/tracing.md): an OpenTelemetry
                                             Collector on 14317/14318 writing .dev/data/otel/traces.json,
                                             and the operator exporting to it
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from supercheck_localenv import controlplane, services
from supercheck_localenv.certs import Pki, ensure_pki
from supercheck_localenv.chartvalues import chart_values
from supercheck_localenv.layout import NODE_NAME, PORTS, REPO_ROOT, Layout, default_layout
from supercheck_localenv.procs import Proc

# The operator's configuration variables (docs/operator.md), passed through when set.
OPERATOR_CONFIG_VARS = (
    "RUNNING_CAPACITY",
    "QUEUED_CAPACITY",
    "MAX_CONCURRENT_EXECUTIONS",
    "TEST_EXECUTION_TIMEOUT_MS",
    "JOB_EXECUTION_TIMEOUT_MS",
    "PLAYWRIGHT_HEADLESS",
    "PLAYWRIGHT_RETRIES",
    "PLAYWRIGHT_TRACE",
    "WORKER_MEMORY_LIMIT",
    "CLEANUP_INTERVAL_MS",
)
OPERATOR_CONFIG_PREFIXES = ("SUPERCHECK_", "RUNNER_", "OTEL_")
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "node-agent",
    "redis",
    "postgres",
    "s3",
    "operator",
)
NODE_RESOURCES = {"cpu": "16", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"}
# Started only with tracing on (SUPERCHECK_TRACING=1), so not among COMPONENTS (which `status` requires).
OPTIONAL_COMPONENTS = ("otelcol",)
TRACING_SWITCH = "SUPERCHECK_TRACING"


def tracing_on(config: dict[str, str]) -> bool:
    return config.get(TRACING_SWITCH, "").strip().lower() in ("1", "true", "yes", "on")


def log(msg: str) -> None:
    print(f"[dev-up] {msg}", file=sys.stderr, flush=True)


def service_env(layout: Layout) -> dict[str, str]:
    """The contract's .dev/env variables (plus a couple of conveniences)."""
    return {
        "KUBECONFIG": str(layout.kubeconfig),
        "REDIS_URL": services.REDIS_URL,
        "DATABASE_URL": services.DATABASE_URL,
        "S3_ENDPOINT_URL": services.S3_ENDPOINT_URL,
        "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "SUPERCHECK_METRICS_URL": f"http://127.0.0.1:{PORTS.operator_metrics}/metrics",
        "SUPERCHECK_API_URL": f"http://127.0.0.1:{PORTS.operator_api}",
    }


def write_env_file(layout: Layout) -> None:
    lines = [f"export {k}={json.dumps(v)}" for k, v in service_env(layout).items()]
    lines.append(f'export PATH="{layout.dev / "bin"}:$PATH"')
    layout.env_file.write_text("# Written by `make dev-up`. Use: source .dev/env\n" + "\n".join(lines) + "\n")


def kubectl(layout: Layout, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(layout.dev / "bin" / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        text=True,
        capture_output=True,
        **kw,
    )


def _node_ready(layout: Layout) -> bool:
    res = kubectl(
        layout, "get", "node", NODE_NAME, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    )
    return res.returncode == 0 and res.stdout.strip() == "True"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _process_env(layout: Layout, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, str(layout.dev / "bin"), env.get("PATH", "/usr/bin:/bin")])
    env.update(service_env(layout))
    env.update(extra or {})
    return env


def start_node_agent(layout: Layout, pki: Pki) -> Proc | None:
    proc = Proc(layout, "node-agent")
    if not _module_exists("supercheck_localenv.nodeagent"):
        log("node agent not available yet; skipping")
        return None
    if not proc.running():
        kc = controlplane.write_kubeconfig(controlplane.kubeconfig_for(layout, "node-agent"), pki, "node-agent")
        proc.start(
            [
                sys.executable, "-m", "supercheck_localenv.nodeagent",
                f"--kubeconfig={kc}",
                f"--node-name={NODE_NAME}",
                f"--port={PORTS.node_agent}",
                f"--tls-cert={pki.cert('node-agent-serving')}",
                f"--tls-key={pki.key('node-agent-serving')}",
                f"--state-dir={layout.data('node-agent')}",
                f"--hide={layout.dev}",  # keys, passwords and other pods' files: no pod's business
                *(f"--{k}={v}" for k, v in NODE_RESOURCES.items()),
            ],
            env=_process_env(layout),
            cwd=layout.root,
        )
    controlplane.wait_for("node Ready", lambda: _node_ready(layout), 90, proc)
    return proc


def operator_config(overrides: dict[str, str]) -> dict[str, str]:
    config = {
        k: v
        for k, v in os.environ.items()
        if k in OPERATOR_CONFIG_VARS or (k.startswith(OPERATOR_CONFIG_PREFIXES) and k != "SUPERCHECK_DEV_ROOT")
    }
    config.pop("SUPERCHECK_METRICS_URL", None)
    config.pop("SUPERCHECK_API_URL", None)  # .dev/env's, for clients: not the operator's configuration
    config.update(overrides)
    return config


def _operator_healthy() -> bool:
    return controlplane.http_ok(f"http://127.0.0.1:{PORTS.operator_health}/healthz")


def start_operator(layout: Layout, config: dict[str, str], force: bool = False) -> Proc | None:
    proc = Proc(layout, "operator")
    if not _module_exists("supercheck.operator_main"):
        log("operator not available yet; skipping")
        return None
    running = proc.running()
    if running and not force and (proc.record() or {}).get("meta", {}).get("config") == config:
        return proc
    if running:
        log("operator configuration changed; restarting the operator")
        proc.stop()
    extra = {
        "SUPERCHECK_METRICS_PORT": str(PORTS.operator_metrics),
        "SUPERCHECK_HEALTH_PORT": str(PORTS.operator_health),
        "SUPERCHECK_API_PORT": str(PORTS.operator_api),
        **config,
    }
    if tracing_on(config):
        services.start_otelcol(layout)
        extra.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", services.collector(layout).endpoint)
    proc.start(
        [sys.executable, "-m", "supercheck.operator_main"],
        env=_process_env(layout, extra),
        cwd=layout.root,
        meta={"config": config},
    )
    controlplane.wait_for("operator", _operator_healthy, 60, proc)
    return proc


def apply_crds(layout: Layout) -> None:
    crds = sorted((layout.root / "crds").glob("*.yaml"))
    if not crds:
        return
    args = ["apply", "--server-side", "--force-conflicts"]
    for f in crds:
        args += ["-f", str(f)]
    res = kubectl(layout, *args)
    if res.returncode != 0:
        raise RuntimeError(f"applying CRDs failed: {res.stderr}")
    res = kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s",
                  *sum((["-f", str(f)] for f in crds), []))
    if res.returncode != 0:
        raise RuntimeError(f"CRDs not established: {res.stderr}")


def _link_helm(layout: Layout) -> None:
    """helm (hack/build-helm.sh, built by `make deps`) on .dev/env's PATH, for installing the chart here."""
    res = subprocess.run([str(REPO_ROOT / "hack" / "build-helm.sh"), "--cached"], capture_output=True, text=True)
    helm = Path(res.stdout.strip())
    if res.returncode != 0 or not helm.is_file():
        return
    link = layout.dev / "bin" / "helm"
    if not link.is_symlink() or os.readlink(link) != str(helm):
        link.unlink(missing_ok=True)
        link.symlink_to(helm)


def compile_checkout(root: Path) -> None:
    """Byte-compile the checkout's Python once, as the images' ``pip install`` does: the pods import
    it from here, as a user that may not write ``__pycache__`` (and PYTHONDONTWRITEBYTECODE may be
    set), so each runner pod would compile its modules again (~50 ms of CPU per run). Up-to-date
    files are skipped."""
    import compileall
    import re

    for folder in ("operator", "runner-image", "localenv"):
        compileall.compile_dir(root / folder, quiet=1, rx=re.compile(r"node_modules|/\.cache/"))


def up(layout: Layout, overrides: dict[str, str], keep_operator: bool = False) -> None:
    t0 = time.monotonic()
    layout.dev.mkdir(parents=True, exist_ok=True)
    bin_dir = controlplane.build_binaries(layout)
    (layout.dev / "bin").mkdir(exist_ok=True)
    for name in ("kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        link = layout.dev / "bin" / name
        if not link.exists() or os.readlink(link) != str(bin_dir / name):
            link.unlink(missing_ok=True)
            link.symlink_to(bin_dir / name)
    _link_helm(layout)
    compile_checkout(layout.root)
    pki = ensure_pki(Pki(layout.pki))
    controlplane.write_kubeconfig(layout.kubeconfig, pki, "admin")
    write_env_file(layout)

    controlplane.start_etcd(layout, bin_dir)
    controlplane.start_apiserver(layout, bin_dir, pki)
    log(f"kube-apiserver ready ({time.monotonic() - t0:.1f}s)")
    controlplane.start_controller_manager(layout, bin_dir, pki)
    controlplane.start_scheduler(layout, bin_dir, pki)
    services.start_redis(layout)
    services.start_postgres(layout)
    services.start_s3(layout)
    log(f"redis, postgres, s3 ready ({time.monotonic() - t0:.1f}s)")
    start_node_agent(layout, pki)
    apply_crds(layout)
    from supercheck_contract import BUCKETS

    services.create_buckets(BUCKETS.values())
    if not (keep_operator and Proc(layout, "operator").running()):
        start_operator(layout, operator_config(overrides))
    log(f"environment ready in {time.monotonic() - t0:.1f}s; run: source {layout.env_file}")


def down(layout: Layout) -> None:
    # Reverse order: the operator and node agent first, so no pod is started as we go.
    for name in (*reversed(COMPONENTS), *OPTIONAL_COMPONENTS):
        proc = Proc(layout, name)
        if proc.pid_file.exists():
            log(f"stopping {name}")
            if name == "s3":
                services.stop_s3(layout)
            else:
                proc.stop()


def status(layout: Layout) -> int:
    code = 0
    for name in COMPONENTS:
        proc = Proc(layout, name)
        pid = proc.pid
        print(f"{name:26} {'running pid ' + str(pid) if pid else 'stopped'}")
        code |= pid is None
    for name in OPTIONAL_COMPONENTS:
        pid = Proc(layout, name).pid
        if pid:
            print(f"{name:26} running pid {pid}")
    return code


def restart(layout: Layout, component: str, overrides: dict[str, str]) -> None:
    if component not in COMPONENTS:
        raise SystemExit(f"unknown component {component!r}; one of: {', '.join(COMPONENTS)}")
    Proc(layout, component).stop()
    # Restarting another component leaves the operator and its configuration alone.
    up(layout, overrides, keep_operator=component != "operator")


def stop(layout: Layout, component: str) -> None:
    if component not in COMPONENTS + OPTIONAL_COMPONENTS:
        raise SystemExit(f"unknown component {component!r}; one of: {', '.join(COMPONENTS)}")
    Proc(layout, component).stop()


def _parse_overrides(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if "=" not in arg:
            raise SystemExit(f"expected NAME=VALUE, got {arg!r}")
        k, v = arg.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    layout = default_layout()
    cmd, rest = argv[0], argv[1:]
    if cmd == "up":
        up(layout, _parse_overrides(rest))
    elif cmd == "down":
        down(layout)
    elif cmd == "status":
        return status(layout)
    elif cmd == "restart" and rest:
        restart(layout, rest[0], _parse_overrides(rest[1:]))
    elif cmd == "stop" and len(rest) == 1:
        stop(layout, rest[0])
    elif cmd == "chart-values":
        print(yaml.safe_dump(chart_values(), sort_keys=False), end="")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
