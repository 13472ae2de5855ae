"""The Kubernetes control plane as local processes: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, wired like envtest wires them
(generated PKI, service-account signing keys, RBAC, client-certificate kubeconfigs),
plus the controllers and scheduler that envtest leaves out, so that owner
references, namespaces, Jobs and scheduling behave as in a cluster.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from supercheck_localenv.certs import Pki
from supercheck_localenv.layout import PORTS, Layout
from supercheck_localenv.procs import Proc

SERVICE_CIDR = "10.0.0.0/24"
API_URL = f"https://127.0.0.1:{PORTS.apiserver}"


def build_binaries(layout: Layout) -> Path:
    """Directory holding kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd."""
    out = subprocess.run(
        [str(layout.root / "hack" / "build-kube.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def write_kubeconfig(path: Path, pki: Pki, identity: str) -> Path:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "supercheck-local", "cluster": {"server": API_URL, "certificate-authority-data": b64(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": identity,
                "user": {
                    "client-certificate-data": b64(pki.cert(identity)),
                    "client-key-data": b64(pki.key(identity)),
                },
            }
        ],
        "contexts": [{"name": "supercheck-local", "context": {"cluster": "supercheck-local", "user": identity}}],
        "current-context": "supercheck-local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def kubeconfig_for(layout: Layout, identity: str) -> Path:
    return layout.pki / f"{identity}.kubeconfig"


def _tls_context(pki: Pki, identity: str = "admin") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.cert(identity)), str(pki.key(identity)))
    return ctx


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_for(what: str, check, timeout: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.running():
            raise RuntimeError(f"{what} exited while starting; see {proc.log_file}")
        time.sleep(0.2)
    hint = f"; see {proc.log_file}" if proc else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{hint}")


def start_etcd(layout: Layout, bin_dir: Path) -> Proc:
    proc = Proc(layout, "etcd")
    if not proc.running():
        data = layout.data("etcd")
        data.mkdir(parents=True, exist_ok=True)
        client = f"http://127.0.0.1:{PORTS.etcd_client}"
        peer = f"http://127.0.0.1:{PORTS.etcd_peer}"
        proc.start(
            [
                str(bin_dir / "etcd"),
                "--name=local",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                # A throwaway development store: durability per write is not worth the latency.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ]
        )
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{PORTS.etcd_client}/health"), 60, proc)
    return proc


def start_apiserver(layout: Layout, bin_dir: Path, pki: Pki) -> Proc:
    proc = Proc(layout, "kube-apiserver")
    if not proc.running():
        proc.start(
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{PORTS.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={PORTS.apiserver}",
                f"--cert-dir={layout.data('apiserver')}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--requestheader-client-ca-file={pki.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.cert('front-proxy-client')}",
                f"--proxy-client-key-file={pki.key('front-proxy-client')}",
                # 127.0.0.1 may not be published as the `kubernetes` Service endpoint.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ]
        )
    ctx = _tls_context(pki)
    wait_for("kube-apiserver", lambda: http_ok(f"{API_URL}/readyz", ctx), 120, proc)
    return proc


def _component_flags(layout: Layout, identity: str, port: int) -> list[str]:
    kc = str(kubeconfig_for(layout, identity))
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.data(identity)}",
        "--leader-elect=false",
        "--v=1",
    ]


def start_controller_manager(layout: Layout, bin_dir: Path, pki: Pki) -> Proc:
    proc = Proc(layout, "kube-controller-manager")
    if not proc.running():
        write_kubeconfig(kubeconfig_for(layout, "controller-manager"), pki, "controller-manager")
        proc.start(
            [str(bin_dir / "kube-controller-manager")]
            + _component_flags(layout, "controller-manager", PORTS.controller_manager)
            + [
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.key('ca')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ]
        )
    wait_for(
        "kube-controller-manager",
        lambda: http_ok(f"https://127.0.0.1:{PORTS.controller_manager}/healthz", _insecure()),
        90,
        proc,
    )
    return proc


def start_scheduler(layout: Layout, bin_dir: Path, pki: Pki) -> Proc:
    proc = Proc(layout, "kube-scheduler")
    if not proc.running():
        write_kubeconfig(kubeconfig_for(layout, "scheduler"), pki, "scheduler")
        proc.start([str(bin_dir / "kube-scheduler")] + _component_flags(layout, "scheduler", PORTS.scheduler))
    wait_for(
        "kube-scheduler",
        lambda: http_ok(f"https://127.0.0.1:{PORTS.scheduler}/healthz", _insecure()),
        90,
        proc,
    )
    return proc


def _insecure() -> ssl.SSLContext:
    # The components serve /healthz with a self-signed certificate of their own making.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
