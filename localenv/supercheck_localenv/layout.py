"""Where the local environment keeps things: one folder (.dev/) and fixed loopback ports.

Every part of the local environment (control plane, node agent, services, operator)
reads its paths and ports from here, so `make dev-up`, the tests and the docs agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_NAME = "supercheck-node"


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 16443
    controller_manager: int = 20257
    scheduler: int = 20259
    node_agent: int = 20250  # the kubelet endpoint the API server proxies `kubectl logs` to
    redis: int = 16379
    postgres: int = 15432
    s3: int = 19000  # SeaweedFS: S3 here; its master, volume server and filer on the seven ports after it
    operator_metrics: int = 18080
    operator_health: int = 18081
    operator_api: int = 18082  # the live run streams (SUPERCHECK_API_URL)
    otlp_grpc: int = 14317  # the OpenTelemetry Collector when tracing is on (supercheck_localenv.otelcol)
    otlp_http: int = 14318
    # The chart's operator Deployment when installed here (`supercheck-dev chart-values`): pods share the
    # host's network in the local environment, so its ports must not be the process operator's.
    chart_operator_metrics: int = 18180
    chart_operator_health: int = 18181
    chart_operator_api: int = 18182


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def dev(self) -> Path:
        return self.root / ".dev"

    @property
    def logs(self) -> Path:
        return self.dev / "logs"

    @property
    def pids(self) -> Path:
        return self.dev / "pids"

    @property
    def pki(self) -> Path:
        return self.dev / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.dev / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.dev / "env"

    def data(self, name: str) -> Path:
        return self.dev / "data" / name


def default_layout() -> Layout:
    return Layout(Path(os.environ.get("SUPERCHECK_DEV_ROOT", REPO_ROOT)))


PORTS = Ports()
